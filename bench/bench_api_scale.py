#!/usr/bin/env python3
"""Print what the Kubernetes API part of podpath costs against a cluster of 5,000 nodes and 150,000 pods.

A synthetic cluster (5,000 nodes, 30 pods each, 10,000 Services of two endpoints each, in 100
namespaces; tracer/lab/apiserver/scale.py) is turned into objects by the stand-in API server's own
generator and served by it, in a process of its own inside a throwaway network namespace (loopback
only: nothing reaches the root namespace or a machine interface). From a thread in that namespace,
with the official client through tracer/kube, the bench measures: resolving two pods and a Service
(target, issue 14: < 200 ms), a pod by IP (fieldSelector status.podIP), one node's pods
(spec.nodeName), every Node, and the whole read_inventory of a node command. It prints the object
generation and load times and the server's RSS. Printed, never asserted. The namespace and the
server go, also on failure or Ctrl-C.

    sudo .venv/bin/python bench/bench_api_scale.py [--nodes 5000 --pods-per-node 30 --services 10000]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time


def measure(srv, runs: int) -> dict:
    from podpath.tracer.kube import connect, read_inventory
    from podpath.tracer.lab.apiserver import scale

    nodes, per, services = srv.size
    here = nodes // 2
    ns1, name1, _ = scale.pod_ref(nodes, per, (nodes // 3) * per + 1)
    ns2, name2, _ = scale.pod_ref(nodes, per, (2 * nodes // 3) * per + 2)
    _, _, pod_ip = scale.pod_ref(nodes, per, (nodes // 4) * per + 3)
    svc_ns, svc_name = scale.service_ref(services // 2, per, nodes)
    targets = [f"{ns1}/{name1}", f"{ns2}/{name2}", f"svc/{svc_ns}/{svc_name}", pod_ip]

    kube = connect(str(srv.kubeconfig))
    out: dict = {}
    t = time.perf_counter()
    kube.core.list_node(limit=1)
    out["first_call_ms"] = (time.perf_counter() - t) * 1000

    def timed(fn) -> list[float]:
        ts = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t) * 1000)
        return ts

    def resolve() -> None:
        assert kube.core.read_namespaced_pod(name1, ns1).status.pod_ip
        assert kube.core.read_namespaced_pod(name2, ns2).status.pod_ip
        assert kube.core.read_namespaced_service(svc_name, svc_ns).spec.cluster_ip
    out["resolve_ms"] = timed(resolve)

    def by_ip() -> None:
        assert len(kube.paged_json("list", "pods", kube.core.list_pod_for_all_namespaces,
                                   field_selector=f"status.podIP={pod_ip}")) == 1
    out["pod_by_ip_ms"] = timed(by_ip)

    def on_node() -> None:
        assert len(kube.paged_json("list", "pods", kube.core.list_pod_for_all_namespaces,
                                   field_selector=f"spec.nodeName={scale.node_name(here)}")) >= per
    out["node_pods_ms"] = timed(on_node)

    def all_nodes() -> None:
        assert len(kube.paged_json("list", "nodes", kube.core.list_node, limit=500)) == nodes
    out["nodes_json_ms"] = timed(all_nodes)
    t = time.perf_counter()  # once: what the client's typed models would cost instead
    assert len(kube.paged("list", "nodes", kube.core.list_node, limit=500)) == nodes
    out["nodes_typed_ms"] = (time.perf_counter() - t) * 1000

    inv = None

    def whole() -> None:
        nonlocal inv
        inv = read_inventory(kube, node_addrs=[scale.node_ip(here)], targets=targets)
    out["inventory_ms"] = timed(whole)
    out["inventory"] = {"nodes": len(inv.nodes), "pods": len(inv.pods), "services": len(inv.services),
                        "local_node": inv.local_node, "gaps": inv.gaps,
                        "endpoints": sum(len(s.endpoints) for s in inv.services)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--pods-per-node", type=int, default=30)
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (makes a throwaway network namespace)", file=sys.stderr)
        return 4
    from podpath.tracer.errors import PodpathError
    from podpath.tracer.lab.apiserver.scale import ScaleServer, rss_kib
    from podpath.tracer.netns import run_in

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the same way out as an error: teardown
    try:
        with ScaleServer("ppbench-api", nodes=args.nodes, pods_per_node=args.pods_per_node,
                         services=args.services) as srv:
            m = run_in(srv.netns, lambda: measure(srv, args.runs))
            rss_after = rss_kib(srv.pid)
            srv_t, up_s = srv.timings, srv.ready_after
    except PodpathError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1

    def row(label: str, ts: list[float]) -> str:
        return f"{label:<64} {statistics.median(ts):10.1f} {max(ts):8.1f}"
    inv = m["inventory"]
    print(f"cluster: {args.nodes} nodes, {args.nodes * args.pods_per_node + 1} pods, {args.services + 1} Services "
          f"({srv_t['objects']} objects)")
    print(f"server: inventory {srv_t['inventory_s']:.2f} s, objects {srv_t['objects_s']:.2f} s, load and index "
          f"{srv_t['load_s']:.2f} s (indexes {srv_t['indexes_s']:.2f} s), ready after {up_s:.1f} s")
    print(f"server RSS: {srv_t['rss_kib'] / 1024:.0f} MiB loaded, {rss_after / 1024:.0f} MiB after the runs")
    print(f"{'step (official client through tracer/kube)':<64} {'median ms':>10} {'max ms':>8}")
    print(f"{'first call (TLS handshake included)':<64} {m['first_call_ms']:10.1f}")
    print(row("two pods and a Service (3 GETs; target < 200 ms)", m["resolve_ms"]))
    print(row("a pod by IP (fieldSelector status.podIP)", m["pod_by_ip_ms"]))
    print(row(f"one node's pods (fieldSelector spec.nodeName, {args.pods_per_node})", m["node_pods_ms"]))
    print(row(f"every Node ({args.nodes}), paged by 500, as JSON", m["nodes_json_ms"]))
    print(f"{'every Node, paged by 500, into the typed models (once)':<64} {m['nodes_typed_ms']:10.1f}")
    print(row("read_inventory of a node command (2 pods, a Service, a pod IP)", m["inventory_ms"]))
    print(f"  it read: {inv['nodes']} nodes, {inv['pods']} pods, {inv['services']} Services with "
          f"{inv['endpoints']} endpoints; local node {inv['local_node']}; gaps {inv['gaps'] or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
