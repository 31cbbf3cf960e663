"""Indexes over a bundle that the walk needs: who owns an IP, where a veth leads, L2 segments.

Built once per diagnose run; all lookups are dictionary reads afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bundle import Bundle, Fdb, Host, Link, Neigh
from .ipvs import SHARED_VIP_DEVICES

BROADCAST = "ff:ff:ff:ff:ff:ff"
BAD_NEIGH_STATES = {"FAILED", "INCOMPLETE"}


@dataclass(frozen=True)
class Port:
    """One interface in one namespace."""

    host: str
    link: str


def place(host: Host) -> tuple[str | None, str]:
    """(node, location) a finding or a hop names for a namespace: a pod's node and its name; any
    other namespace (a node, the lab's underlay switch) by its own name, location "host". The one
    rule diagnose and trace share."""
    if host.kind == "pod":
        return host.node, host.name
    return host.node or (host.name if host.kind != "unknown" else None), "host"


class Topology:
    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.hosts: dict[str, Host] = {h.name: h for h in bundle.hosts}
        self.owners: dict[str, list[Port]] = {}  # ip -> every interface that holds it
        for h in bundle.hosts:
            for a in h.addrs:
                if not a.address.startswith("127.") and a.ifname not in SHARED_VIP_DEVICES:
                    self.owners.setdefault(a.address, []).append(Port(h.name, a.ifname))
        self.macs: dict[str, list[Port]] = {}
        for h in bundle.hosts:
            for l in h.links:
                if l.mac and l.kind != "loopback":
                    self.macs.setdefault(l.mac, []).append(Port(h.name, l.name))
        self._peers = self._resolve_peers()

    # -- hosts and labels -------------------------------------------------------------------
    def host(self, name: str) -> Host:
        return self.hosts[name]

    def location(self, host: Host) -> str:
        return place(host)[1]

    def node_of(self, host: Host) -> str | None:
        return place(host)[0]

    # -- veth peers -------------------------------------------------------------------------
    def _resolve_peers(self) -> dict[Port, Port]:
        peers: dict[Port, Port] = {}
        for h in self.bundle.hosts:
            for l in h.links:
                if l.kind != "veth":
                    continue
                if l.peer_host and l.peer_name and l.peer_host in self.hosts:
                    peers[Port(h.name, l.name)] = Port(l.peer_host, l.peer_name)
        # Fallback for collectors that did not resolve: a pair whose indexes point at each other.
        for h in self.bundle.hosts:
            for l in h.links:
                here = Port(h.name, l.name)
                if l.kind != "veth" or here in peers or l.peer_index is None:
                    continue
                for other in self.bundle.hosts:
                    if h.node and other.node and h.node != other.node:
                        continue  # ifindexes of two nodes' kernels (a bundle merged from agents) say nothing
                    cand = other.link_by_index(l.peer_index)
                    if other is h and cand is not None and (l.peer_netnsid is not None or cand.peer_netnsid is not None):
                        continue  # its peer is in another namespace: an equal ifindex here is a coincidence
                    if (cand and cand.kind == "veth" and cand.peer_index == l.index
                            and Port(other.name, cand.name) != here):
                        peers[here] = Port(other.name, cand.name)
                        peers.setdefault(Port(other.name, cand.name), here)
                        break
        return peers

    def peer(self, port: Port) -> Port | None:
        return self._peers.get(port)

    def peer_host_of(self, host: Host, link: Link) -> Host | None:
        peer = self.peer(Port(host.name, link.name))
        return self.hosts[peer.host] if peer else None

    def link(self, port: Port) -> Link | None:
        return self.hosts[port.host].link(port.link)

    # -- layer 2 ----------------------------------------------------------------------------
    def bridge_ports(self, host: Host, bridge: str) -> list[Link]:
        return [l for l in host.links if l.master == bridge]

    def segment(self, start: Port) -> list[Port]:
        """Every interface on the same L2 broadcast domain as `start` (across veths and bridges).

        An interface that is a bridge port does not take part at L3 itself: the bridge does.
        """
        seen: set[Port] = set()
        todo = [start]
        members: list[Port] = []
        while todo:
            p = todo.pop()
            if p in seen:
                continue
            seen.add(p)
            link = self.link(p)
            if link is None:
                continue
            if not link.up:  # a down interface is on the segment but passes and answers nothing
                members.append(p)
                continue
            host = self.hosts[p.host]
            if link.kind == "bridge":
                members.append(p)
                todo += [Port(p.host, l.name) for l in self.bridge_ports(host, link.name)]
                continue
            if link.master:
                todo.append(Port(p.host, link.master))
            else:
                members.append(p)
            peer = self.peer(p)
            if peer:
                todo.append(peer)
        return members

    def arp_answerers(self, start: Port, ip: str) -> list[tuple[Port, str | None]]:
        """Who answers an ARP request for `ip` sent out of `start`: (interface, its MAC).

        Linux answers for any of its local addresses on the interface the request came in on
        (arp_ignore=0, the default); a host with arp_ignore>=1 answers only for addresses on it.
        """
        answers = []
        for p in self.segment(start):
            if p == start:
                continue
            host = self.hosts[p.host]
            link = host.link(p.link)
            if not link.up or not link.carrier:
                continue
            arp_ignore = host.sysctl(f"net.ipv4.conf.{p.link}.arp_ignore") or host.sysctl("net.ipv4.conf.all.arp_ignore") or "0"
            holds = [a for a in host.addrs if a.address == ip]
            if not holds:
                continue
            if arp_ignore != "0" and not any(a.ifname == p.link for a in holds):
                continue
            answers.append((p, link.mac if link else None))
        return answers

    def neighbour(self, host: Host, dev: str, ip: str) -> Neigh | None:
        return next((n for n in host.neigh if n.ifname == dev and n.dst == ip), None)

    def fdb_entries(self, host: Host, dev: str, mac: str) -> list[Fdb]:
        return [f for f in host.fdb if f.ifname == dev and f.mac == mac]

    def bridge_fdb(self, host: Host, bridge: str, mac: str) -> Fdb | None:
        ports = {l.name for l in self.bridge_ports(host, bridge)}
        return next((f for f in host.fdb if f.mac == mac and f.ifname in ports and "self" not in f.flags), None)

    def port_towards_mac(self, host: Host, bridge: str, mac: str, exclude: str | None = None) -> Link | None:
        """Flooding: the bridge port whose far side owns `mac` (what the learned FDB would say)."""
        for port in self.bridge_ports(host, bridge):
            if port.name != exclude and mac in self.macs_beyond(Port(host.name, port.name), set()):
                return port
        return None

    def macs_beyond(self, port: Port, seen: set[Port]) -> set[str]:
        """MACs reachable through `port`'s veth peer, never coming back through `port`."""
        peer = self.peer(port)
        link = self.link(peer) if peer else None
        if link is None or peer in seen or not link.up:
            return set()
        seen.add(peer)
        macs = {link.mac} if link.mac else set()
        if link.master:  # the peer is itself a bridge port: the far bridge and its other ports
            far = self.hosts[peer.host]
            bridge = far.link(link.master)
            if bridge and bridge.mac:
                macs.add(bridge.mac)
            for other in self.bridge_ports(far, link.master):
                if other.name != link.name:
                    macs |= self.macs_beyond(Port(peer.host, other.name), seen)
        return macs

    def vxlan_devices(self, host: Host) -> list[Link]:
        return [l for l in host.links if l.kind == "vxlan" and l.vxlan]

    def vtep_for_mac(self, mac: str) -> tuple[Host, Link] | None:
        """The node whose VXLAN device has `mac`: the VTEP an FDB entry for it should point to."""
        for port in self.macs.get(mac, []):
            host = self.hosts[port.host]
            link = host.link(port.link)
            if link and link.kind == "vxlan":
                return host, link
        return None
