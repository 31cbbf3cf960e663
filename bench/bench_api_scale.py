#!/usr/bin/env python3
"""Print what the Kubernetes API part of podpath costs against a cluster of 5,000 nodes and 150,000 pods.

A synthetic Inventory (5,000 nodes, 30 pods each, 10,000 Services of two endpoints each, in 100
namespaces) is turned into objects by the stand-in API server's own generator and served by it, in a
process of its own inside a throwaway network namespace (loopback only: nothing reaches the root
namespace or a machine interface). From a thread in that namespace, with the official client
through tracer/kube, the bench measures: resolving two pods and a Service (target, issue 14: < 200 ms),
a pod by IP (fieldSelector status.podIP), one node's pods (spec.nodeName), and the whole
read_inventory of a node command. It prints the object generation and load times and the server's
RSS. Printed, never asserted. The namespace and the server go, also on failure or Ctrl-C.

    sudo .venv/bin/python bench/bench_api_scale.py [--nodes 5000 --pods-per-node 30 --services 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ADDRESS = "192.168.56.10"  # the address the stand-in's certificate names; here only on the bench's loopback
PORT = 6443
NAMESPACES = 100


def synthetic_inventory(nodes: int, pods_per_node: int, services: int):
    """A cluster of this size: node i has podCIDR 100.64.0.0/10's i-th /24, underlay 172.16.0.0/12."""
    import ipaddress

    from podpath.tracer.bundle import Inventory, NodeInfo, PodInfo, ServiceInfo, ServicePort

    if nodes > 16384 or pods_per_node > 250 or services > 60000:
        raise SystemExit("bench: at most 16384 nodes, 250 pods per node and 60000 Services")
    pod_net = int(ipaddress.IPv4Address("100.64.0.0"))
    under = int(ipaddress.IPv4Address("172.16.0.10"))
    svc_net = int(ipaddress.IPv4Address("10.96.0.10"))
    ip = lambda n: str(ipaddress.IPv4Address(n))  # noqa: E731
    inv = Inventory(cluster_cidr="100.64.0.0/10", service_cidr="10.96.0.0/12", source="bench")
    for i in range(nodes):
        base = pod_net + i * 256
        name = f"node-{i:05d}"
        inv.nodes.append(NodeInfo(name=name, underlay_ip=ip(under + i), internal_ip=ip(under + i),
                                  pod_cidr=f"{ip(base)}/24",
                                  vtep_mac="0a:58:%02x:%02x:%02x:%02x" % (i >> 8 & 255, i & 255, 0, 1)))
        for j in range(pods_per_node):
            k = i * pods_per_node + j
            inv.pods.append(PodInfo(name=f"pod-{k:06d}", namespace=f"ns-{k % NAMESPACES:03d}", node=name,
                                    ip=ip(base + 2 + j), phase="Running"))
    inv.pods.append(PodInfo(name="coredns-0", namespace="kube-system", node=inv.nodes[0].name,
                            ip=ip(pod_net + 2 + pods_per_node), phase="Running"))
    inv.services.append(ServiceInfo(name="kube-dns", namespace="kube-system", cluster_ip="10.96.0.10",
                                    ports=[ServicePort("dns", 53, "UDP", 53), ServicePort("dns-tcp", 53, "TCP", 53)],
                                    endpoints=[inv.pods[-1].ip]))
    for s in range(services):
        a, b = inv.pods[(s * 2) % (len(inv.pods) - 1)], inv.pods[(s * 2 + 1) % (len(inv.pods) - 1)]
        inv.services.append(ServiceInfo(name=f"svc-{s:05d}", namespace=a.namespace, cluster_ip=ip(svc_net + 1 + s),
                                        ports=[ServicePort("http", 80, "TCP", 8080)], endpoints=[a.ip, b.ip]))
    return inv


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ------------------------------------------------------------------ the server process (--serve DIR)

def serve(d: Path, nodes: int, pods_per_node: int, services: int) -> None:
    import asyncio

    from podpath.tracer.lab.apiserver import certs, selectors
    from podpath.tracer.lab.apiserver.objects import objects
    from podpath.tracer.lab.apiserver.server import ApiServer, serve as run

    t = time.perf_counter()
    inv = synthetic_inventory(nodes, pods_per_node, services)
    t_inv = time.perf_counter() - t
    t = time.perf_counter()
    objs = objects(inv, "bench", "2026-01-01T00:00:00Z")
    t_obj = time.perf_counter() - t
    del inv
    server = ApiServer(certs.tokens(d), lambda: objs, ADDRESS, PORT)
    timings: dict = {"inventory_s": t_inv, "objects_s": t_obj, "objects": len(objs)}

    def ready() -> None:
        t = time.perf_counter()
        st = server.store  # the indexes the real server's watch cache keeps, built before the first client
        for kind in ("Node", "Pod", "Service", "EndpointSlice"):
            st.listing(kind)
        for f in ("spec.nodeName", "status.podIP", "metadata.name"):
            st.indexed("Pod", "field:" + f, selectors.FIELDS["Pod"][f], "")
        st.indexed("EndpointSlice", "label:kubernetes.io/service-name",
                   lambda o: selectors.labels_of(o).get("kubernetes.io/service-name"), "")
        timings["indexes_s"] = time.perf_counter() - t
        timings["load_s"] = time.perf_counter() - t_load
        timings["rss_kib"] = rss_kib(os.getpid())
        (d / "ready.json").write_text(json.dumps(timings))

    t_load = time.perf_counter()
    p = certs.paths(d)
    asyncio.run(run(server, str(p["cert"]), str(p["key"]), lambda: False, ready, interval=3600))


# ------------------------------------------------------------------ the bench (parent)

def kubeconfig(d: Path) -> Path:
    import base64

    import yaml

    from podpath.tracer.lab.apiserver import certs

    ca = base64.b64encode(certs.paths(d)["ca"].read_bytes()).decode()
    cfg = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": "bench", "cluster": {"server": f"https://{ADDRESS}:{PORT}",
                                                      "certificate-authority-data": ca}}],
           "users": [{"name": "admin", "user": {"token": certs.tokens(d)["admin"]}}],
           "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "admin"}}],
           "current-context": "bench"}
    path = d / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path


def measure(kubeconfig_path: str, runs: int, nodes: int, pods_per_node: int, services: int) -> dict:
    from podpath.tracer.kube import connect, read_inventory

    node = f"node-{nodes // 2:05d}"
    k1, k2 = (nodes // 3) * pods_per_node + 1, (2 * nodes // 3) * pods_per_node + 2
    pod1, pod2 = f"ns-{k1 % NAMESPACES:03d}/pod-{k1:06d}", f"ns-{k2 % NAMESPACES:03d}/pod-{k2:06d}"
    s = services // 2
    svc_ns = f"ns-{(s * 2) % NAMESPACES:03d}"
    svc = f"svc/{svc_ns}/svc-{s:05d}"
    import ipaddress
    pod_ip = str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("100.64.0.0")) + (nodes // 4) * 256 + 5))
    node_ip = str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("172.16.0.10")) + nodes // 2))

    kube = connect(kubeconfig_path)
    out: dict = {"targets": [pod1, pod2, svc, pod_ip], "node": node}
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
        for target in (pod1, pod2):
            ns, name = target.split("/")
            assert kube.core.read_namespaced_pod(name, ns).status.pod_ip
        ns, name = svc[4:].split("/")
        assert kube.core.read_namespaced_service(name, ns).spec.cluster_ip
    out["resolve_ms"] = timed(resolve)

    def by_ip() -> None:
        assert len(kube.paged("list", "pods", kube.core.list_pod_for_all_namespaces,
                              field_selector=f"status.podIP={pod_ip}")) == 1
    out["pod_by_ip_ms"] = timed(by_ip)

    def on_node() -> None:
        assert len(kube.paged("list", "pods", kube.core.list_pod_for_all_namespaces,
                              field_selector=f"spec.nodeName={node}")) >= pods_per_node
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
        inv = read_inventory(kube, node_addrs=[node_ip], targets=[pod1, pod2, svc, pod_ip])
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
    ap.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)  # the server process
    args = ap.parse_args()
    if args.serve:
        serve(Path(args.serve), args.nodes, args.pods_per_node, args.services)
        return 0
    if os.geteuid() != 0:
        print("bench: needs root (makes a throwaway network namespace)", file=sys.stderr)
        return 4
    from podpath.tracer.lab.apiserver import certs
    from podpath.tracer.netns import run_in

    ns = "ppbench-api-" + secrets.token_hex(3)
    d = Path(tempfile.mkdtemp(prefix="ppbench-api-"))
    server = None
    # Ctrl-C and SIGTERM take the same way out as an error: the finally below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{ADDRESS}/32", "dev", "lo"], check=True)
        certs.make(d, "bench")
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__),
                                   "--serve", str(d), "--nodes", str(args.nodes), "--pods-per-node",
                                   str(args.pods_per_node), "--services", str(args.services)],
                                  stdout=subprocess.DEVNULL, stderr=open(d / "server.log", "w"))
        t = time.perf_counter()
        while not (d / "ready.json").exists():
            if server.poll() is not None:
                raise SystemExit(f"bench: the API server exited: {(d / 'server.log').read_text()[-2000:]}")
            time.sleep(0.1)
        up_s = time.perf_counter() - t
        srv = json.loads((d / "ready.json").read_text())
        m = run_in(ns, lambda: measure(str(kubeconfig(d)), args.runs, args.nodes, args.pods_per_node,
                                       args.services))
        rss_after = _child_rss(server.pid)
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        shutil.rmtree(d, ignore_errors=True)

    def row(label: str, ts: list[float]) -> str:
        return f"{label:<64} {statistics.median(ts):10.1f} {max(ts):8.1f}"
    inv = m["inventory"]
    print(f"cluster: {args.nodes} nodes, {args.nodes * args.pods_per_node + 1} pods, {args.services + 1} Services "
          f"({srv['objects']} objects)")
    print(f"server: inventory {srv['inventory_s']:.2f} s, objects {srv['objects_s']:.2f} s, load and index "
          f"{srv['load_s']:.2f} s (indexes {srv['indexes_s']:.2f} s), up after {up_s:.1f} s")
    print(f"server RSS: {srv['rss_kib'] / 1024:.0f} MiB loaded, {rss_after / 1024:.0f} MiB after the runs")
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


def _child_rss(pid: int) -> int:
    """RSS of the Python server under `ip netns exec` (which execs it: same pid)."""
    try:
        return rss_kib(pid)
    except OSError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
