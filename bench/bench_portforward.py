#!/usr/bin/env python3
"""Print what reaching an agent through the API server costs: pods/portforward over WebSocket.

Brings up a throwaway lab (its agents: tests/lab/standin_agent.py, which says its node's name then
echoes, so the transport alone is measured), and from a thread inside node-a's namespace, as
ServiceAccount podpath-coordinator with the official client (tracer/agent/transport.py):
- find_agents for both nodes (two label + field selector lists);
- open_agent to first byte (WebSocket handshake, TLS, the relay's connect in the node's namespace,
  the agent's greeting);
- a ping-pong round trip of 100 bytes on an open stream;
- throughput of 64 MiB each way at once through one stream;
- the same round trip straight to the agent (transport.direct), for comparison.
Printed, never asserted. The lab goes, also on failure or Ctrl-C.

    sudo .venv/bin/python bench/bench_portforward.py [--runs 50]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def ms(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"median {statistics.median(xs) * 1000:7.2f} ms  p90 {xs[int(len(xs) * 0.9) - 1] * 1000:7.2f} ms"


def recv_exactly(s, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            raise EOFError(f"stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def measure(lab, runs: int) -> None:
    from podpath.tracer.agent.transport import direct, find_agents, open_agent
    from podpath.tracer.kube.client import connect

    kube = connect(str(lab.kubeconfig_coordinator))
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        pods = find_agents(kube, {"node-a", "node-b"})
        t.append(time.perf_counter() - t0)
    print(f"find_agents (2 nodes)           {ms(t)}")

    opened = []
    for _ in range(runs):
        t0 = time.perf_counter()
        s = open_agent(kube, pods["node-b"])
        s.recv(7)  # "node-b\n": the relay reached the agent
        opened.append(time.perf_counter() - t0)
        s.close()
    print(f"open_agent to first byte        {ms(opened)}")

    def pingpong(s) -> list[float]:
        rt = []
        for _ in range(runs * 4):
            t0 = time.perf_counter()
            s.sendall(b"x" * 100)
            recv_exactly(s, 100)
            rt.append(time.perf_counter() - t0)
        return rt

    with open_agent(kube, pods["node-b"]) as s:
        s.recv(7)
        print(f"round trip 100 B, port-forward  {ms(pingpong(s))}")
        size = 64 << 20
        payload = os.urandom(1 << 20)
        t0 = time.perf_counter()

        def send() -> None:
            for _ in range(size >> 20):
                s.sendall(payload)
        w = threading.Thread(target=send)
        w.start()
        recv_exactly(s, size)
        w.join()
        dt = time.perf_counter() - t0
        print(f"echo 64 MiB each way, 1 stream  {size / dt / (1 << 20):7.1f} MiB/s each way ({dt:.2f} s)")
    with direct(lab.netns("node-b")) as s:
        s.recv(7)
        print(f"round trip 100 B, direct        {ms(pingpong(s))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_portforward: needs root (it builds a lab); run it with sudo")
    from podpath.tracer.lab import Lab, agents
    from podpath.tracer.netns import run_in

    standin = HERE / "tests" / "lab" / "standin_agent.py"
    agents.agent_command = lambda: [sys.executable, "-I", str(standin)]
    lab = Lab("bpf" + secrets.token_hex(2))
    try:
        lab.up()
        run_in(lab.netns("node-a"), lambda: measure(lab, args.runs))
    finally:
        lab.down()


if __name__ == "__main__":
    main()
