"""After all files of a host are read: kinds guessed, defaults noted, gaps collected."""

from __future__ import annotations

import re

from ...bundle import Host, Link, Vxlan
from .state import HostState


# --- after all files of a host are read -------------------------------------------------------

_FLANNEL = re.compile(r"^flannel\.([0-9]+)$")
BRIDGE_NAMES = re.compile(r"^(cni[0-9]+|docker[0-9]+|cbr[0-9]+|br-.*|virbr[0-9]+|br[0-9]+)$")


def finish(state: HostState) -> Host:
    host = state.host
    for backend, texts in state.iptables.items():
        host.iptables_save[backend] = host.iptables_save.get(backend, "") + "".join(texts)
    state.iptables.clear()
    masters = {l.master for l in host.links if l.master}
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
