#!/usr/bin/env python3
"""Print what a warm `podpath trace` through per-node agents costs on this machine.

On a throwaway lab (ba<hex>, torn down at the end) with its agents (`lab up` starts one per node):
  - `podpath trace default/pod-a default/pod-b` run inside node-a's namespace (the coordinator),
    reaching the agents directly and through the stand-in API server's port-forward: median
    seconds from spawn to the verdict line and to exit (targets: < 0.6 s to the verdict, < 1 s whole);
  - where a CLI trace's time goes: start-up, API reads, agents, bundles, diagnose, attach, send,
    correlate, exit (its -o json timings against this process's clock);
  - the coordinator in process: median milliseconds of each stage;
  - each agent's RSS before and after --rss-traces traces (target: growth < 10 %), the BPF links
    an agent keeps between traces (lingering behind the closed gate, for the next trace to reuse)
    and once idle past the linger period (--linger, the agents' PODPATH_LINGER_S; target: none, idle
    cost on traffic zero; its programs stay loaded, attached to nothing, so no trace pays the verifier);
  - iperf3 pod-a → pod-b without agents, with them idle between traces (links lingering, gate
    closed: target ≥ 99 %), during a trace (its probes attached on both nodes, gates open, while
    the trace waits to send: target ≥ 97 %), and while traces run back to back through them (the
    traces' own CPU too, on the same 2 cores).
Printed, never asserted. Run as root: `.venv/bin/python bench/bench_agent.py [--runs N] [--rss-traces N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

EXE = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "podpath")
NODES = ("node-a", "node-b")
STAGES = ("inventory_ms", "hello_ms", "connect_ms", "agent_snapshot_ms", "bundles_ms", "snapshot_ms", "diagnose_ms",
          "armed_ms", "attach_wait_ms", "arm_ms", "source_result_ms", "others_stop_ms", "send_ms", "correlate_ms",
          "verdict_ms")
# Where a CLI trace's time goes (its -o json timings; durations unless "since"): see cli_stages()
CLI_STAGES = (("startup_ms", "process start → the first API read (Python, imports, kubeconfig)"),
              ("inventory_ms", "API reads: nodes, targets, Services, ConfigMaps (at once)"),
              ("agents_ms", "API: the agent pods of the flow's nodes"),
              ("hello_ms", "agents connected and greeted (port-forward or direct)"),
              ("bundle_wait_ms", "snapshot asked → every node's bundle in"),
              ("agent_snapshot_ms", "  of which the slowest agent's own snapshot"),
              ("bundles_ms", "bundles decoded and merged"),
              ("diagnose_ms", "diagnose + plan per node"),
              ("attach_wait_ms", "attach asked → every node attached (probes loaded)"),
              ("source_result_ms", "send → the source's result"),
              ("others_stop_ms", "the other nodes stopped, their events in"),
              ("correlate_ms", "join + correlate"),
              ("verdict_line_ms", "process start → the verdict on stdout"),
              ("exit_ms", "verdict on stdout → process gone"))


def hold(seconds: float, kubeconfig: str) -> None:
    """(Inside node-a's namespace.) One coordinator trace that, attached on both nodes (gates open,
    the flow's filter set), waits `seconds` before it sends: prints "attached" then, and the
    verdict's status at the end. What iperf3 meets during a trace, without the traces' own CPU."""
    from podpath.tracer.agent import agent_finder
    from podpath.tracer.agent.client import AgentClient
    from podpath.tracer.agent.coordinator import Coordinator
    from podpath.tracer.kube import connect

    request = AgentClient.request

    def delayed(self, msg):
        if msg.get("type") == "send":
            print("attached", flush=True)
            time.sleep(seconds)
        return request(self, msg)

    AgentClient.request = delayed
    kube = connect(kubeconfig)
    t = Coordinator(kube, agent_finder(kube)).trace("default/pod-a", "default/pod-b")
    print(json.dumps({"status": t.verdict.status}), flush=True)


def loop(n: int, kubeconfig: str) -> None:
    """(Inside node-a's namespace.) n coordinator traces in this process; one JSON line of timings."""
    from podpath.tracer.agent import agent_finder
    from podpath.tracer.agent.coordinator import Coordinator
    from podpath.tracer.kube import connect

    kube = connect(kubeconfig)
    find = agent_finder(kube)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        t = Coordinator(kube, find).trace("default/pod-a", "default/pod-b")
        out.append({"status": t.verdict.status, "wall_ms": (time.perf_counter() - t0) * 1000,
                    **{k: t.timings.get(k) for k in STAGES}})
    print(json.dumps(out))


def cli_runs(cli: list[str], env: dict, n: int) -> tuple[list[float], list[float], list[str]]:
    """n CLI traces: seconds to the verdict line and to exit, and the verdicts."""
    to_verdict, whole, statuses = [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        at = None
        for line in proc.stdout:
            if at is None and line.startswith("verdict:"):
                at = time.perf_counter() - t0
                statuses.append(line.split()[1])
        proc.wait()
        whole.append(time.perf_counter() - t0)
        to_verdict.append(at if at is not None else float("inf"))
    return to_verdict, whole, statuses


def cli_stages(cli: list[str], env: dict, n: int) -> None:
    """n CLI traces with -o json: where the time goes, from their timings and this clock. Both
    processes read the same CLOCK_MONOTONIC (time.monotonic), so the trace's start is placed
    against the spawn, and the JSON's arrival against the exit."""
    rows: list[dict] = []
    for _ in range(n):
        spawned = time.monotonic()
        proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        first = proc.stdout.read(1)
        t_out = time.monotonic()
        data = json.loads(first + proc.stdout.read())
        proc.wait()
        t_end = time.monotonic()
        tm = data.get("timings") or {}
        if "started_monotonic_s" not in tm:
            continue  # traced in process (no agent found): not this table's
        row = {k: tm.get(k) for k, _ in CLI_STAGES}
        row["startup_ms"] = (tm["started_monotonic_s"] - spawned) * 1000
        row["bundle_wait_ms"] = tm["snapshot_ms"] - tm["connect_ms"] - tm.get("bundles_ms", 0)
        row["verdict_line_ms"] = (t_out - spawned) * 1000
        row["exit_ms"] = (t_end - t_out) * 1000
        rows.append(row)
    print(f"where a CLI trace through the API server goes (median of {len(rows)} -o json runs, ms; load average "
          f"{os.getloadavg()[0]:.1f}):")
    for key, what in CLI_STAGES:
        vals = [r[key] for r in rows if r.get(key) is not None]
        if vals:
            print(f"  {key:<18} {statistics.median(vals):7.0f}  {what}")


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def bpf_links(pid: int, settle: float = 3.0) -> int:
    """The BPF links the agent holds, once it has detached them (its sets idle past the linger
    period), or after `settle` seconds."""
    deadline = time.monotonic() + settle
    while (n := _bpf_fds(pid, "bpf_link")) and time.monotonic() < deadline:
        time.sleep(0.1)
    return n


def _bpf_fds(pid: int, kind: str) -> int:
    """How many BPF fds of this kind ("bpf_link", "bpf-prog") a process holds."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") == f"anon_inode:{kind}"
        except OSError:
            pass
    return n


def idle_line(pids: dict[str, int], settle: float = 3.0) -> str:
    return (", ".join(f"{n} {bpf_links(p, settle)} links ({_bpf_fds(p, 'bpf-prog')} programs loaded)"
                      for n, p in pids.items()) + " (target 0 links: nothing attached once idle)")


def lingering_line(pids: dict[str, int]) -> str:
    return ", ".join(f"{n} {_bpf_fds(p, 'bpf_link')} links" for n, p in pids.items()) + " (gate closed)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10, help="CLI traces for the medians")
    ap.add_argument("--stage-runs", type=int, default=10, help="in-process traces for the stage medians")
    ap.add_argument("--rss-traces", type=int, default=1000, help="traces between the RSS readings")
    ap.add_argument("--iperf-seconds", type=int, default=5, help="iperf3 -t for the throughput figures (0: skip)")
    ap.add_argument("--iperf-rounds", type=int, default=3, help="rounds of without/idle/during (medians)")
    ap.add_argument("--linger", type=float, default=10.0,
                    help="the agents' linger period, s (PODPATH_LINGER_S; an agent's default: 30)")
    ap.add_argument("--loop", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--hold", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.loop is not None:
        loop(a.loop, a.kubeconfig)
        return
    if a.hold is not None:
        hold(a.hold, a.kubeconfig)
        return

    from podpath.tracer.agent import DIRECT_ENV
    from podpath.tracer.lab import Lab, agents

    # podpath's own modules as an installed wheel has them, compiled (an editable checkout under
    # PYTHONDONTWRITEBYTECODE recompiles them in every process: a quarter of a second)
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(root / d) for d in ("tracer", "cli", "bpf"))],
                   stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})

    from podpath.tracer.probes import LINGER_ENV
    os.environ[LINGER_ENV] = str(a.linger)  # the lab's agents inherit it
    lab = Lab("ba" + secrets.token_hex(2))
    pids: dict[str, int] = {}
    try:
        lab.up()  # starts one agent per node (tracer/lab/agents.py), as the DaemonSet would
        for n in NODES:
            pid = agents.pid(lab.names, n)
            if pid is None:
                sys.exit(f"bench: lab {lab.name} has no running agent on {n}; see {lab.names.agent_log_file(n)}")
            pids[n] = pid
        env = {**os.environ, DIRECT_ENV: ",".join(f"{n}={lab.netns(n)}" for n in NODES)}
        in_a = ["ip", "netns", "exec", lab.netns("node-a")]
        cli = in_a + [EXE, "trace", "default/pod-a", "default/pod-b", "--kubeconfig", str(lab.kubeconfig)]

        def helper(n: int) -> list[dict]:
            r = subprocess.run(in_a + [sys.executable, __file__, "--loop", str(n), "--kubeconfig",
                                       str(lab.kubeconfig)], capture_output=True, text=True, env=env)
            if r.returncode != 0:
                sys.exit(f"bench: the coordinator loop failed: {r.stderr.strip().splitlines()[-1:]}")
            return json.loads(r.stdout.strip().splitlines()[-1])

        helper(2)  # warm: the agents' first snapshot fills their caches
        print(f"lab {lab.name}, two agents warm; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")
        print("between traces the agents hold: " + lingering_line(pids))

        through_api = {k: v for k, v in env.items() if k != DIRECT_ENV}  # agents found and reached via the API
        for label, e in (("agents direct", env), ("agents through the API server's port-forward", through_api)):
            to_verdict, whole, statuses = cli_runs(cli, e, a.runs)
            print(f"podpath trace, {label} (CLI, median of {a.runs}, load average {os.getloadavg()[0]:.1f}): "
                  f"to the verdict {statistics.median(to_verdict):.2f} s (target < 0.6 s), whole "
                  f"{statistics.median(whole):.2f} s (target < 1 s); verdicts {sorted(set(statuses))}")
        cli_stages(cli + ["-o", "json"], through_api, a.runs)

        stages = helper(a.stage_runs)
        print(f"coordinator in process (median of {a.stage_runs}), ms since the trace started:")
        for k in STAGES + ("wall_ms",):
            vals = [s[k] for s in stages if s.get(k) is not None]
            if vals:
                print(f"  {k:<12} {statistics.median(vals):7.0f}")

        before = {n: rss_kb(p) for n, p in pids.items()}
        t0 = time.perf_counter()
        done, series = 0, {n: [before[n]] for n in pids}
        while done < a.rss_traces:
            batch = min(100, a.rss_traces - done)
            got = helper(batch)
            done += batch
            bad = [g["status"] for g in got if g["status"] != "delivered"]
            if bad:
                print(f"  (traces {done - batch}..{done}: {len(bad)} not delivered: {sorted(set(bad))})")
            for n, p in pids.items():
                series[n].append(rss_kb(p))
        after = {n: rss_kb(p) for n, p in pids.items()}
        if a.rss_traces:  # the curve: a step while the pool loads its second set, then flat (or a leak)
            for n in NODES:
                print(f"  agent {n} RSS every 100 traces, MiB: " + " ".join(f"{x / 1024:.0f}" for x in series[n]))
        for n in NODES:
            growth = (after[n] - before[n]) / before[n] * 100
            print(f"agent {n} RSS: {before[n] / 1024:.1f} MiB before, {after[n] / 1024:.1f} MiB after "
                  f"{a.rss_traces} traces ({growth:+.1f} %, target < 10 %)")
        print(f"  ({a.rss_traces} traces in {time.perf_counter() - t0:.0f} s; between traces: {lingering_line(pids)})")
        if a.iperf_seconds:
            iperf_figures(lab, a, pids, helper, in_a + [sys.executable, __file__, "--kubeconfig", str(lab.kubeconfig)],
                          env)
        print(f"idle past the linger period ({a.linger:g} s), the agents hold: {idle_line(pids, a.linger + 5)}")
    finally:
        lab.down()  # stops the agents too


def iperf_figures(lab, a, pids: dict[str, int], helper, bench_in_a: list[str], env: dict) -> None:
    """iperf3 pod-a → pod-b without agents, with them idle, with one trace's probes attached on
    both nodes (the trace waits to send while iperf3 runs: the probes' cost on other traffic),
    and while traces run back to back through them (the probes plus the traces' own CPU: the
    coordinator's and both agents', on the cores iperf3 uses too) (rounds alternate, medians):
    targets ≥ 99 % idle, ≥ 97 % during a trace."""
    import threading

    from bench_trace import iperf
    from podpath.tracer.lab import agents

    def stopped() -> float:
        agents.stop(lab.names)
        try:
            return iperf(lab, a.iperf_seconds)[0]
        finally:
            for n in NODES:
                pids[n] = agents.start(lab.names, n)
            helper(2)  # warm again

    def during() -> float:
        stop = threading.Event()
        count = []

        def traces() -> None:
            while not stop.is_set():
                count.extend(helper(5))

        t = threading.Thread(target=traces, daemon=True)
        t.start()
        try:
            return iperf(lab, a.iperf_seconds)[0]
        finally:
            stop.set()
            t.join()
            print(f"  ({len(count)} traces ran during {a.iperf_seconds} s of iperf3)")

    def attached() -> float:
        p = subprocess.Popen(bench_in_a + ["--hold", str(a.iperf_seconds + 1)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
        try:
            if p.stdout.readline().strip() != "attached":
                sys.exit(f"bench: the holding trace did not attach: {p.stderr.read().strip()[-300:]}")
            return iperf(lab, a.iperf_seconds)[0]
        finally:
            out, _ = p.communicate(timeout=60)
            status = json.loads(out.strip().splitlines()[-1])["status"] if out.strip() else "?"
            if status != "delivered":
                print(f"  (the holding trace's verdict: {status})")

    idle = f"agents idle, links lingering ({a.linger:g} s)"
    if a.iperf_seconds > a.linger:
        print(f"  (iperf3 runs {a.iperf_seconds} s: longer than the linger period, so the idle figure is part gated, part detached)")
    armed = "one trace's probes attached"
    runs: dict[str, list[float]] = {"without agents": [], idle: [], armed: [], "traces through agents": []}
    for _ in range(a.iperf_rounds):
        runs["without agents"].append(stopped())
        runs[idle].append(iperf(lab, a.iperf_seconds)[0])
        runs[armed].append(attached())
        runs["traces through agents"].append(during())
    base = statistics.median(runs["without agents"])
    print(f"iperf3 pod-a → pod-b, median of {a.iperf_rounds} × {a.iperf_seconds} s (load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus; the coordinator, both agents and iperf3 share them):")
    for label, vals in runs.items():
        m = statistics.median(vals)
        target = {idle: " (target ≥ 99 %)", armed: " (target ≥ 97 %)",
                  "traces through agents": " (back to back: the traces' CPU too)"}.get(label, "")
        print(f"  {label:<34} {m / 1e9:6.2f} Gb/s  {m / base * 100 if base else 0:5.1f} %{target}")


if __name__ == "__main__":
    main()
