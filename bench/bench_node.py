#!/usr/bin/env python3
"""Print how long a node's discovery and snapshot take with kubelet's maximum of 110 pods.

Builds a throwaway "node" namespace with a cni0 bridge and 110 pod namespaces (CNI-named, each a
veth on cni0 with its own address and a holder process), then times, inside the node:
discovery alone, and discovery + snapshot of every namespace (NodeSource.snapshot, no API).
Target (issue 8): < 1 s. Printed, never asserted. Run as root: `.venv/bin/python bench/bench_node.py`.
Everything it builds is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def build(tag: str, pods: int) -> tuple[str, list[str], list[subprocess.Popen]]:
    node = f"bn{tag}-node"
    sh("ip", "netns", "add", node)
    sh("ip", "-n", node, "link", "add", "cni0", "type", "bridge")
    sh("ip", "-n", node, "addr", "add", "10.250.0.1/16", "dev", "cni0")
    sh("ip", "-n", node, "link", "set", "cni0", "up")
    names, holders = [], []
    batch = []
    for i in range(pods):
        ns = f"cni-{uuid.uuid5(uuid.NAMESPACE_URL, f'podpath-bench/{tag}/{i}')}"
        names.append(ns)
        sh("ip", "netns", "add", ns)
        veth = f"veth{tag}{i:03d}"
        batch += [f"link add {veth} type veth peer name eth0 netns {ns}", f"link set {veth} master cni0 up"]
    subprocess.run(["ip", "-n", node, "-batch", "-"], input="\n".join(batch) + "\n", text=True, check=True,
                   capture_output=True)
    for i, ns in enumerate(names):
        ip = f"10.250.{1 + i // 250}.{1 + i % 250}"
        subprocess.run(["ip", "-n", ns, "-batch", "-"], input=f"addr add {ip}/16 dev eth0\nlink set eth0 up\n"
                       "link set lo up\n", text=True, check=True, capture_output=True)
        holders.append(subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "600"]))
    return node, names, holders


def teardown(node: str, names: list[str], holders: list[subprocess.Popen]) -> None:
    for p in holders:
        p.kill()
    for p in holders:
        p.wait()
    for ns in names + [node]:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=110)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (builds network namespaces)", file=sys.stderr)
        return 4
    from podpath.tracer.sources.discovery import discover
    from podpath.tracer.sources.node import NodeSource

    tag = uuid.uuid4().hex[:4]
    t0 = time.perf_counter()
    node, names, holders = build(tag, args.pods)
    print(f"built a node with {args.pods} pod namespaces in {time.perf_counter() - t0:.1f} s")
    try:
        found = discover(node)
        assert len(found) == args.pods, f"discovered {len(found)} of {args.pods}"
        d, s = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            discover(node)
            d.append(time.perf_counter() - t)
            src = NodeSource(None, netns=node, kube_error="bench: no API")
            t = time.perf_counter()
            bundle = src.snapshot()
            s.append(time.perf_counter() - t)
        print(f"{'step':<46} {'median s':>9} {'min s':>7}  (target < 1 s)")
        print(f"{'discovery of ' + str(args.pods) + ' pod namespaces':<46} {statistics.median(d):9.3f} {min(d):7.3f}")
        print(f"{'discovery + snapshot (' + str(len(bundle.hosts)) + ' namespaces)':<46} "
              f"{statistics.median(s):9.3f} {min(s):7.3f}")
        print(f"processes on this machine: {len([p for p in os.listdir('/proc') if p.isdigit()])}")
    finally:
        teardown(node, names, holders)
    return 0


if __name__ == "__main__":
    sys.exit(main())
