"""The netns lab as a Source: every lab namespace (one kernel holds every node), the lab's
inventory as the cluster's facts, and any namespace attached to a lab node that the lab did not
build (a hand-made break), so the lab is seen as a node agent would see it."""

from __future__ import annotations

import datetime

from ..bundle import Addr, Bundle, Host, Inventory
from ..sources import Source, read_resolv_conf, require_root
from ..targets import HostRef
from .core import Lab
from .topology import NETNS_ETC, NODES


class LabSource(Source):
    def __init__(self, name: str):
        self.lab = Lab.load(name)
        self.label = f"lab '{name}'"

    def inventory(self) -> Inventory:
        inv = self.lab.inventory()
        inv.source = "lab"
        return inv

    def hosts(self) -> list[HostRef]:
        """The lab's namespaces, then every other namespace attached to a lab node (unknown)."""
        from ..netns import inode
        from ..sources.discovery import discover

        refs = [HostRef(r.name, r.kind, r.node, r.netns, r.namespace, identified_by="inventory")
                for r in self.lab.hosts()]
        known = {inode(r.netns) for r in refs} - {None}
        for n in NODES:
            for ns in discover(self.lab.netns(n.name), likely=known):
                if ns.inode in known:
                    continue
                known.add(ns.inode)
                refs.append(HostRef(ns.name or f"netns-{ns.inode}", "pod", n.name, ns.name or ns.path,
                                    identified_by="unknown", pids=tuple(ns.pids), host_veth=ns.host_veth))
        return refs

    def snapshot(self, targets: tuple[str, ...] = (), flow=None) -> Bundle:
        from ..snapshot.live import collect

        require_root("a live snapshot")
        bundle = collect(self.hosts(), flow=flow)
        bundle.inventory = self.inventory()
        bundle.created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return bundle

    def resolv_conf(self, host: Host) -> str:
        if not host.netns or "/" in host.netns:
            return super().resolv_conf(host)
        return read_resolv_conf(str(NETNS_ETC / host.netns / "resolv.conf"), host.name)

    def skeleton_bundle(self) -> Bundle:
        """Just enough of a bundle to resolve SRC and DST: the lab's hosts with their addresses."""
        inv = self.inventory()
        pods = {p.name: p for p in inv.pods}
        nodes = {n.name: n for n in inv.nodes}
        hosts = []
        for ref in self.lab.hosts():
            h = Host(name=ref.name, kind=ref.kind, node=ref.node, netns=ref.netns, namespace=ref.namespace)
            if ref.name in pods and pods[ref.name].ip:
                h.addrs.append(Addr("eth0", pods[ref.name].ip, 24))
            if ref.name in nodes and nodes[ref.name].underlay_ip:
                h.addrs.append(Addr(nodes[ref.name].underlay_dev or "eth0", nodes[ref.name].underlay_ip, 24))
            hosts.append(h)
        return Bundle(hosts=hosts, inventory=inv)

    def preplan(self, src: str, dst: str, *, proto, port, size, count: int, timeout: float,
                sport: int | None = None):
        """The session request from the lab's inventory alone: the flannel path between the pods
        involved (the source, the destination pod or every endpoint of the Service)."""
        from ..diagnose import build_flow
        from ..targets.resolve import resolve
        from ..trace.plan import request_for

        skel = self.skeleton_bundle()
        s, d = resolve(skel, src), resolve(skel, dst)
        flow = build_flow(s, d, proto, port, size, sport)
        by_ip = {p.ip: p.name for p in skel.inventory.pods}
        pods = [s.host.name] if s.host is not None else []
        if d.host is not None and d.host.kind == "pod":
            pods.append(d.host.name)
        if d.service is not None:
            pods += [by_ip[ip] for ip in d.service.endpoints if ip in by_ip]
        return request_for(flow, s.host, d.host, self.lab.path_devices(pods), count=count, timeout=timeout,
                           neigh_addrs=self.lab.path_nexthops(pods))


def lab_snapshot(name: str) -> Bundle:
    """A snapshot of the running lab `name` (tests and benches)."""
    return LabSource(name).snapshot()
