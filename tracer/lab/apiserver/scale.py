"""A synthetic cluster of any size, served by the stand-in API server from a throwaway namespace.

    with ScaleServer("ppbench", nodes=5000, pods_per_node=30, services=10000) as srv:
        run_in(srv.netns, lambda: read_inventory(connect(str(srv.kubeconfig)), ...))
        srv.requests()   # every request the server answered: "GET /api/v1/pods?fieldSelector=..."

The server runs in a process of its own (`python -m podpath.tracer.lab.apiserver.scale DIR ...`,
so its RSS is its own) inside a new network namespace with only loopback up: nothing reaches the
root namespace or a machine interface. Leaving the block, also on an error, stops the process and
deletes the namespace and the directory. Used by bench/bench_api_scale.py and tests/lab.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ...bundle import Inventory, NodeInfo, PodInfo, ServiceInfo, ServicePort
from ...errors import LabError
from ..topology import CONTROL_PLANE_IP

PORT = 6443
NAMESPACES = 100
POD_NET = int(ipaddress.IPv4Address("100.64.0.0"))  # node i holds the i-th /24 of 100.64.0.0/10
UNDERLAY = int(ipaddress.IPv4Address("172.16.0.10"))
SERVICE_NET = int(ipaddress.IPv4Address("10.96.0.10"))


def _ip(n: int) -> str:
    return str(ipaddress.IPv4Address(n))


def node_name(i: int) -> str:
    return f"node-{i:05d}"


def node_ip(i: int) -> str:
    return _ip(UNDERLAY + i)


def pod_ref(nodes: int, pods_per_node: int, k: int) -> tuple[str, str, str]:
    """(namespace, name, ip) of the k-th pod."""
    del nodes
    i, j = divmod(k, pods_per_node)
    return f"ns-{k % NAMESPACES:03d}", f"pod-{k:06d}", _ip(POD_NET + i * 256 + 2 + j)


def service_ref(s: int, pods_per_node: int, nodes: int) -> tuple[str, str]:
    """(namespace, name) of the s-th Service: in the namespace of its first endpoint."""
    ns, _, _ = pod_ref(nodes, pods_per_node, (s * 2) % (nodes * pods_per_node))
    return ns, f"svc-{s:05d}"


def synthetic_inventory(nodes: int, pods_per_node: int, services: int) -> Inventory:
    """A flannel cluster of this size: pods in 100 namespaces, each Service with two endpoints,
    and CoreDNS behind kube-system/kube-dns."""
    if not (1 <= nodes <= 16384 and 1 <= pods_per_node <= 250 and 0 <= services <= 60000):
        raise LabError("a synthetic cluster holds 1-16384 nodes, 1-250 pods per node and 0-60000 Services")
    inv = Inventory(cluster_cidr="100.64.0.0/10", service_cidr="10.96.0.0/12", source="synthetic")
    for i in range(nodes):
        base = POD_NET + i * 256
        inv.nodes.append(NodeInfo(name=node_name(i), underlay_ip=node_ip(i), internal_ip=node_ip(i),
                                  pod_cidr=f"{_ip(base)}/24",
                                  vtep_mac="0a:58:%02x:%02x:00:01" % (i >> 8 & 255, i & 255)))
        for j in range(pods_per_node):
            ns, name, ip = pod_ref(nodes, pods_per_node, i * pods_per_node + j)
            inv.pods.append(PodInfo(name=name, namespace=ns, node=node_name(i), ip=ip, phase="Running"))
    total = len(inv.pods)
    inv.pods.append(PodInfo(name="coredns-0", namespace="kube-system", node=node_name(0),
                            ip=_ip(POD_NET + 2 + pods_per_node), phase="Running"))
    inv.services.append(ServiceInfo(name="kube-dns", namespace="kube-system", cluster_ip=_ip(SERVICE_NET),
                                    ports=[ServicePort("dns", 53, "UDP", 53), ServicePort("dns-tcp", 53, "TCP", 53)],
                                    endpoints=[inv.pods[-1].ip]))
    for s in range(services):
        a, b = inv.pods[(s * 2) % total], inv.pods[(s * 2 + 1) % total]
        ns, name = service_ref(s, pods_per_node, nodes)
        inv.services.append(ServiceInfo(name=name, namespace=ns, cluster_ip=_ip(SERVICE_NET + 1 + s),
                                        ports=[ServicePort("http", 80, "TCP", 8080)], endpoints=[a.ip, b.ip]))
    return inv


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class ScaleServer:
    """The stand-in API server serving a synthetic cluster from a throwaway namespace (a context manager)."""

    def __init__(self, prefix: str, *, nodes: int, pods_per_node: int, services: int, timeout: float = 300):
        self.netns = f"{prefix}-{secrets.token_hex(3)}"
        self.size = (nodes, pods_per_node, services)
        self.timeout = timeout
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.timings: dict = {}
        self.ready_after = 0.0

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def requests(self) -> list[str]:
        path = self.dir / "requests.log"
        return path.read_text().splitlines() if path.exists() else []

    def __enter__(self) -> "ScaleServer":
        from . import certs

        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f"{self.netns}-"))
            for argv in (["ip", "netns", "add", self.netns], ["ip", "-n", self.netns, "link", "set", "lo", "up"],
                         # the address the stand-in's certificate names, here only on this loopback
                         ["ip", "-n", self.netns, "addr", "add", f"{CONTROL_PLANE_IP}/32", "dev", "lo"]):
                subprocess.run(argv, check=True, capture_output=True)
            certs.make(self.dir, self.netns)
            self._write_kubeconfig()
            nodes, per, services = self.size
            # `ip netns exec` execs the server: self.proc.pid is the server's own pid
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, sys.executable, "-m", "podpath.tracer.lab.apiserver.scale",
                 str(self.dir), "--nodes", str(nodes), "--pods-per-node", str(per), "--services", str(services)],
                stdout=subprocess.DEVNULL, stderr=open(self.dir / "server.log", "w"))
            t = time.perf_counter()
            while not (self.dir / "ready.json").exists():
                if self.proc.poll() is not None:
                    raise LabError(f"the API server exited: {(self.dir / 'server.log').read_text()[-2000:]}")
                if time.perf_counter() - t > self.timeout:
                    raise LabError(f"the API server was not ready after {self.timeout:.0f} s")
                time.sleep(0.05)
            self.ready_after = time.perf_counter() - t
            self.timings = json.loads((self.dir / "ready.json").read_text())
            return self
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _write_kubeconfig(self) -> None:
        import yaml

        from . import certs

        ca = base64.b64encode(certs.paths(self.dir)["ca"].read_bytes()).decode()
        cfg = {"apiVersion": "v1", "kind": "Config",
               "clusters": [{"name": "scale", "cluster": {"server": f"https://{CONTROL_PLANE_IP}:{PORT}",
                                                          "certificate-authority-data": ca}}],
               "users": [{"name": "admin", "user": {"token": certs.tokens(self.dir)["admin"]}}],
               "contexts": [{"name": "scale", "context": {"cluster": "scale", "user": "admin"}}],
               "current-context": "scale"}
        self.kubeconfig.write_text(yaml.safe_dump(cfg))


def serve(d: Path, nodes: int, pods_per_node: int, services: int) -> None:
    """The server process: generate, load, build the indexes, say ready (ready.json), serve."""
    import asyncio

    from aiohttp import web

    from . import certs, selectors
    from .objects import objects
    from .server import ApiServer, serve as run

    t = time.perf_counter()
    inv = synthetic_inventory(nodes, pods_per_node, services)
    t_inv = time.perf_counter() - t
    t = time.perf_counter()
    objs = objects(inv, "scale", "2026-01-01T00:00:00Z")
    timings: dict = {"inventory_s": t_inv, "objects_s": time.perf_counter() - t, "objects": len(objs)}
    del inv
    server = ApiServer(certs.tokens(d), lambda: objs, CONTROL_PLANE_IP, PORT)
    log = open(d / "requests.log", "a", buffering=1)

    @web.middleware
    async def record(request: web.Request, handler):
        log.write(f"{request.method} {request.path_qs}\n")
        return await handler(request)
    server.middlewares.append(record)

    def ready() -> None:
        t = time.perf_counter()
        st = server.store  # the indexes the real server's watch cache keeps, built before the first client
        for kind in ("Node", "Pod", "Service", "EndpointSlice"):
            st.listing(kind)
        for f in ("spec.nodeName", "status.podIP", "metadata.name"):
            st.indexed("Pod", "field:" + f, selectors.FIELDS["Pod"][f], "")
        st.indexed("EndpointSlice", "label:" + "kubernetes.io/service-name",
                   lambda o: selectors.labels_of(o).get("kubernetes.io/service-name"), "")
        timings["indexes_s"] = time.perf_counter() - t
        timings["load_s"] = time.perf_counter() - t_load
        timings["rss_kib"] = rss_kib(os.getpid())
        tmp = d / "ready.tmp"
        tmp.write_text(json.dumps(timings))
        tmp.replace(d / "ready.json")

    t_load = time.perf_counter()
    p = certs.paths(d)
    asyncio.run(run(server, str(p["cert"]), str(p["key"]), lambda: False, ready, interval=3600))


def main() -> None:
    ap = argparse.ArgumentParser(prog="podpath-scale-apiserver")
    ap.add_argument("dir")
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--pods-per-node", type=int, required=True)
    ap.add_argument("--services", type=int, required=True)
    args = ap.parse_args()
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(Path(args.dir), args.nodes, args.pods_per_node, args.services)


if __name__ == "__main__":
    main()
