"""This machine as a node: the namespace podpath runs in is the node, its pods are discovered.

Names come from the Kubernetes API when one is configured and reachable (pod IP → namespace/name,
this node by its InternalIP or flannel public-ip), else from kubelet's /etc/hostname in each pod's
holder, else from the pod's IP. A namespace nobody accounts for keeps a name that says what it is
(its /run/netns name, or netns-<inode>) and `identified_by="unknown"`, so checks can name it.
"""

from __future__ import annotations

import datetime
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from ..bundle import Bundle, Host, Inventory
from ..targets import HostRef
from . import Source, read_resolv_conf, require_root
from .discovery import Namespace, discover


class NodeSource(Source):
    def __init__(self, kube=None, *, netns: str | None = None, warn=None, kube_error: str | None = None,
                 node_name: str | None = None, names_only: bool = False):
        """kube: a tracer.kube.Kube, or None (no cluster config found: node-only names).
        netns: the node's namespace (None: the one podpath runs in). node_name: what to call this
        node (an agent's --node-name); else the API's view, else the hostname. names_only (with
        node_name): read of the API only what names the hosts (kube.read_names), for a caller
        that reads the cluster's facts itself (an agent's coordinator)."""
        self.kube = kube
        self.node_name = node_name
        self.names_only = names_only and node_name is not None
        self.netns = netns
        self.warn = warn or (lambda _m: None)
        self.label = "this node"
        self.timings: dict[str, float] = {}
        self._resolv: dict[str, str] = {}
        self._inventory: Inventory | None = None
        if kube is None and kube_error is None:
            self.warn("no kubeconfig or in-cluster service account found: pods are named from this node alone "
                      "(kubelet's hostnames); give --kubeconfig FILE for the cluster's names")

    def inventory(self) -> Inventory | None:
        return self._inventory

    def snapshot(self, targets: tuple[str, ...] = (), flow=None) -> Bundle:
        from ..snapshot.live import collect

        require_root("a live snapshot of this node")
        t0 = time.perf_counter()
        spaces = discover(self.netns)
        self.timings["discover_ms"] = (time.perf_counter() - t0) * 1000
        refs = [HostRef("node", "node", None, self.netns, identified_by="node")]
        refs += [HostRef(ns.name or f"netns-{ns.inode}", "pod", None, ns.name or ns.path, identified_by="unknown",
                         pids=tuple(ns.pids), host_veth=ns.host_veth) for ns in spaces]
        with ThreadPoolExecutor(1, thread_name_prefix="podpath-api") as ex:
            api = ex.submit(self._read_api, targets) if self.kube is not None else None
            t1 = time.perf_counter()
            bundle = collect(refs, flow=flow)
            self.timings["snapshot_ms"] = (time.perf_counter() - t1) * 1000
            inv = api.result() if api is not None else None
        node = bundle.hosts[0]
        addrs = {a.address for a in node.addrs}
        if inv is not None and self.kube is not None:
            local = next((n for n in inv.nodes if addrs & {n.internal_ip, n.underlay_ip}), None)
            inv.local_node = local.name if local else None
        node_name = self.node_name or (inv.local_node if inv is not None and inv.local_node else None) or \
            socket.gethostname()
        if inv is not None and self.node_name:
            inv.local_node = self.node_name
        name_hosts(bundle, node_name, spaces, inv)
        for ns, host in zip(spaces, bundle.hosts[1:]):
            if ns.resolv_conf:
                self._resolv[host.name] = ns.resolv_conf
        if inv is None:
            inv = Inventory(cluster_cidr=None, service_cidr=None, source="node", local_node=node_name,
                            nodes=flannel_peers(node))
        bundle.inventory = self._inventory = inv
        bundle.created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.label = f"node {node_name}"
        self.timings["total_ms"] = (time.perf_counter() - t0) * 1000
        return bundle

    def _read_api(self, targets) -> Inventory | None:
        from ..kube import ApiUnreachable, read_inventory

        try:
            if self.names_only:
                from ..kube.facts import read_names
                return read_names(self.kube, self.node_name, targets)
            # This node's addresses, read here too, so the API can name the node without waiting
            inv = read_inventory(self.kube, node_addrs=_own_addresses(self.netns), targets=targets)
            for what, why in inv.gaps.items():
                self.warn(f"{why}; {what} not read, what depends on them is not checked")
            return inv
        except ApiUnreachable as e:
            self.warn(f"{e}; naming pods from this node alone (kubelet's hostnames)")
            return None

    def resolv_conf(self, host: Host) -> str:
        path = self._resolv.get(host.name)
        if path is None:
            return super().resolv_conf(host)
        return read_resolv_conf(path, host.name)

    def not_found_hint(self) -> str:
        if self.kube is None:
            return "; pods on other nodes need the API: give --kubeconfig FILE (or --lab NAME for the netns lab)"
        return ""


def _own_addresses(netns: str | None) -> list[str]:
    from pyroute2 import IPRoute

    from ..netns import run_in

    def read() -> list[str]:
        with IPRoute() as ipr:
            return [m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
                    for m in ipr.addr("dump", family=socket.AF_INET)]
    return run_in(netns, read)


def flannel_peers(node: Host) -> list:
    """Without the API, the other nodes as this node's flannel triples describe them (route, neighbour,
    FDB): named by their underlay IP. Their VtepMACs are not taken from here (that is what a check
    would compare), only where they are."""
    from ..bundle import NodeInfo

    out = []
    for r in node.routes:
        if r.dev is None or not r.gateway or r.dst == "default":
            continue
        link = node.link(r.dev)
        if link is None or link.kind != "vxlan":
            continue
        mac = next((n.lladdr for n in node.neigh if n.ifname == r.dev and n.dst == r.gateway), None)
        dst = next((f.dst for f in node.fdb if f.ifname == r.dev and f.mac == mac and f.dst), None) if mac else None
        if dst:
            out.append(NodeInfo(name=dst, underlay_ip=dst, pod_cidr=r.dst))
    return out


def name_hosts(bundle: Bundle, node_name: str, spaces: list[Namespace], inv: Inventory | None) -> None:
    """Give every host of a node snapshot its name: the node, then each pod namespace by the API
    (pod IP), kubelet's hostname, or its IP. Two namespaces claiming one pod: the one whose hostname
    is the pod's keeps it, the other is `unknown` (the ip_conflict check names it)."""
    from ..targets.resolve import primary_ip

    node, pods = bundle.hosts[0], bundle.hosts[1:]
    renames = {node.name: node_name}
    node.name, node.node = node_name, node_name
    api = {p.ip: p for p in (inv.pods if inv else []) if p.ip and not p.host_network}
    claims: dict[str, list[tuple[Host, Namespace]]] = {}
    for host, ns in zip(pods, spaces):
        host.node = node_name
        ip = primary_ip(host)
        pod = api.get(ip) if ip else None
        if pod is not None:
            key = f"{pod.namespace}/{pod.name}"
        else:
            key = ns.hostname or ip or host.name
        claims.setdefault(key, []).append((host, ns))
    taken = {node_name}
    for key, hosts in claims.items():
        pod = None
        if "/" in key:
            ip = primary_ip(hosts[0][0])
            pod = api.get(ip) if ip else None
        want = pod.name if pod is not None else key
        # kubelet's hostname decides; else a namespace a process holds (every pod has its pause) over
        # one only a bind mount keeps alive
        owner = next((h for h, ns in hosts if ns.hostname == want), None) or \
            next((h for h, ns in hosts if ns.pids), None) or hosts[0][0]
        for host, ns in hosts:
            if host is not owner or want in taken:
                host.identified_by = "unknown"  # keeps its netns-… name
                continue
            renames[host.name] = want
            host.name = want
            taken.add(want)
            if pod is not None:
                host.namespace, host.identified_by = pod.namespace, "api"
            else:
                host.identified_by = "hostname" if ns.hostname == want else "ip"
    # a namespace named only by its IP that holds the IP of a pod kubelet or the API names: nobody's
    named = {primary_ip(h) for h in pods if h.identified_by in ("api", "hostname")}
    for host, ns in zip(pods, spaces):
        if host.identified_by == "ip" and primary_ip(host) in named:
            host.identified_by = "unknown"
            old = host.name
            host.name = ns.name or f"netns-{ns.inode}"
            renames = {k: (host.name if v == old else v) for k, v in renames.items()}
    for h in bundle.hosts:
        for link in h.links:
            if link.peer_host in renames:
                link.peer_host = renames[link.peer_host]


def connect_source(kubeconfig: str | None, context: str | None, warn) -> NodeSource:
    """A NodeSource with the API if configured (an unreachable one is said and done without)."""
    from ..kube import connect

    return NodeSource(connect(kubeconfig, context), warn=warn)


__all__ = ["NodeSource", "connect_source", "name_hosts"]
