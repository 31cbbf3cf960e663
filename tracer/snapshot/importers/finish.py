"""After all files of a host are read: kinds guessed, defaults noted, gaps collected."""

from __future__ import annotations

import re

from ...bundle import Host, Link, Vxlan
from .iptables import join_tables
from .state import HostState


# --- after all files of a host are read -------------------------------------------------------

_FLANNEL = re.compile(r"^flannel\.([0-9]+)$")
BRIDGE_NAMES = re.compile(r"^(cni[0-9]+|docker[0-9]+|cbr[0-9]+|br-.*|virbr[0-9]+|br[0-9]+)$")


def finish(state: HostState) -> Host:
    host = state.host
    for backend, chunks in state.iptables.items():
        host.iptables_save[backend] = join_tables(chunks, state.note)
    state.iptables.clear()
    for bridge, ports in state.bridge_ports.items():  # `brctl show`: enslave what `ip a` listed
        unknown = []
        for port in ports:
            link = state.link(port)
            if link is not None and link.master is None:
                link.master = bridge
            elif link is None:
                unknown.append(port)
        if unknown:
            state.note("brctl", f"brctl shows {', '.join(unknown)} in {bridge}, but no `ip a` lists them")
    masters = {l.master for l in host.links if l.master} | set(state.bridge_ports)
    by_name = {l.name: l for l in host.links}
    for link in host.links:
        if link.peer_name and link.peer_index is None and link.peer_name in by_name:
            link.peer_index = by_name[link.peer_name].index
        if link.kind is None:
            link.kind = guess_kind(link, state.link_types.get(link.name), masters)
        m = _FLANNEL.match(link.name)
        if link.kind == "vxlan" and link.vxlan is None and m:
            link.vxlan = Vxlan(vni=int(m.group(1)), port=8472, learning=False)
            state.note("vxlan", f"{link.name}: VNI {m.group(1)}, port 8472, learning off assumed (flannel "
                                f"defaults); paste `ip -d link show {link.name}` for the real values")
        fwd = host.sysctls.get(f"net.ipv4.conf.{link.name}.forwarding")
        if fwd is not None:
            link.forwarding = fwd == "1"
    # arp cannot tell REACHABLE from STALE: an `ip neigh` entry for the same (dev, ip) wins
    seen = {(n.ifname, n.dst) for n in host.neigh if id(n) not in state.from_arp}
    host.neigh = [n for n in host.neigh if id(n) not in state.from_arp or (n.ifname, n.dst) not in seen]
    if state.legacy_warning and "legacy" not in host.iptables_save:
        state.note("iptables-legacy", "iptables-nft-save warns that legacy tables exist; paste "
                                      "`iptables-legacy-save -c` too")
    if host.kind == "unknown":
        why = node_evidence(host)
        if why or (host.sysctls and not pod_evidence(host)):
            host.kind, host.node = "node", host.name
    if state.v6_skipped:
        state.note("ipv6", f"{state.v6_skipped} IPv6 entries skipped (podpath reads IPv4)")
    host.gaps.update({k: "; ".join(v) for k, v in state.notes.items()})
    return host


def guess_kind(link: Link, link_type: str | None, masters: set[str]) -> str | None:
    """Without `ip -d` details: the kind the name, the peer and the link type point to."""
    if link_type == "loopback" or link.name == "lo":
        return "loopback"
    if _FLANNEL.match(link.name) or link.name.startswith(("vxlan", "flannel.")):
        return "vxlan"
    if link.name in masters or BRIDGE_NAMES.match(link.name):
        return "bridge"
    if link.name in ("kube-ipvs0", "nodelocaldns"):
        return "dummy"
    if link.peer_name and "." in link.name and link.name.split(".")[0] == link.peer_name:
        return "vlan"  # eth0.100@eth0
    if link.peer_index is not None or link.peer_name or link.name.startswith("veth"):
        return "veth"
    return link_type  # "ether" for link/ether, as the live collector's ARPHRD fallback


# Devices, chains and routes only a Kubernetes node has (flannel, the CNI bridge, kube-proxy).
NODE_DEVICES = re.compile(r"^(flannel\.[0-9]+|cni[0-9]+|kube-ipvs0|nodelocaldns|kube-bridge|cbr0|docker0)$")
NODE_CHAINS = re.compile(r"^[:-]A? ?(KUBE-[A-Z-]+|FLANNEL-[A-Z-]+)", re.M)


def node_evidence(host: Host) -> str | None:
    """Why a pasted host is a node: flannel.1, cni0, kube-ipvs0, KUBE-* chains, flannel routes, IPVS."""
    link = next((l.name for l in host.links if NODE_DEVICES.match(l.name)), None)
    if link:
        return link
    for text in host.iptables_save.values():
        m = NODE_CHAINS.search(text)
        if m:
            return m.group(1)
    route = next((r for r in host.routes + host.route_lookups if r.dev and NODE_DEVICES.match(r.dev)), None)
    if route:
        return f"route {route.dst} dev {route.dev}"
    entry = next((e for e in host.neigh + host.fdb if NODE_DEVICES.match(e.ifname)), None)
    if entry:
        return f"{'neighbour' if hasattr(entry, 'dst') and hasattr(entry, 'state') else 'FDB entry'} on {entry.ifname}"
    if host.ipvs:
        return "IPVS virtual services"
    return None


def pod_evidence(host: Host) -> bool:
    """Only lo and a veth eth0 (`eth0@if7`): the inside of a pod."""
    names = {l.name for l in host.links if l.kind != "loopback"}
    eth0 = host.link("eth0")
    return names == {"eth0"} and eth0 is not None and eth0.peer_index is not None
