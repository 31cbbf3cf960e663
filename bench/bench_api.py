#!/usr/bin/env python3
"""Print how long the API part of a node command takes against the lab's stand-in API server.

Inside a lab node's namespace (the only place the server is reachable from), with the official
client: resolving two pods and a Service (three GETs), and the whole inventory a node command reads
(nodes, this node's pods, the targets, Services, EndpointSlices, two ConfigMaps). Target (issue 8):
< 100 ms for the resolution. Printed, never asserted. Run as root: `.venv/bin/python bench/bench_api.py`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (builds the netns lab)", file=sys.stderr)
        return 4
    from podpath.tracer.kube import connect, read_inventory
    from podpath.tracer.lab import Lab
    from podpath.tracer.netns import run_in

    lab = Lab("a" + uuid.uuid4().hex[:4])
    lab.up()
    try:
        def measure():
            kube = connect(str(lab.kubeconfig))
            t = time.perf_counter()
            kube.core.list_node(limit=1)  # the TLS connection, as the first call of a command makes it
            first = time.perf_counter() - t
            resolve, whole = [], []
            for _ in range(args.runs):
                t = time.perf_counter()
                kube.core.read_namespaced_pod("pod-a", "default")
                kube.core.read_namespaced_pod("pod-b", "default")
                kube.core.read_namespaced_service("web", "default")
                resolve.append(time.perf_counter() - t)
                t = time.perf_counter()
                read_inventory(kube, node_name="node-a", targets=["default/pod-a", "default/pod-b", "svc/default/web"])
                whole.append(time.perf_counter() - t)
            return first, resolve, whole

        first, resolve, whole = run_in(lab.netns("node-a"), measure)
        print(f"{'step':<58} {'median ms':>10} {'max ms':>8}")
        print(f"{'first call (TLS handshake included)':<58} {first * 1000:10.1f}")
        print(f"{'two pods and a Service (3 GETs; target < 100 ms)':<58} {statistics.median(resolve) * 1000:10.1f} "
              f"{max(resolve) * 1000:8.1f}")
        print(f"{'the whole inventory of a node command':<58} {statistics.median(whole) * 1000:10.1f} "
              f"{max(whole) * 1000:8.1f}")
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
