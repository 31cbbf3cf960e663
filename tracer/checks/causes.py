"""The failure classes (docs/failure-classes.md): one enum, and one table row per cause.

A row says what `trace` needs to know about a cause: the evidence kind its object is, which of the
kernel's drop reasons (and freeing functions) point at it, whether it is decided in a netfilter
hook, and which other causes it is the root of. Adding a failure class is one member, one row here
and one check in CHECKS (tracer/checks/__init__.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Cause(StrEnum):
    """A str enum: JSON output and the docs print its value (`"host_route"`)."""

    POD_ROUTE = "pod_route"
    HOST_ROUTE = "host_route"
    IPTABLES = "iptables"
    IPVS = "ipvs"
    IP_CONFLICT = "ip_conflict"
    LINK_DOWN = "link_down"
    ARP = "arp"
    DNS = "dns"
    FDB = "fdb"
    IP_FORWARD = "ip_forward"
    RP_FILTER = "rp_filter"
    MTU = "mtu"
    BRIDGE_PORT = "bridge_port"
    NO_LISTENER = "no_listener"
    TC = "tc"
    UNKNOWN = "unknown"

    @property
    def spec(self) -> "CauseSpec":
        return CAUSES[self]


@dataclass(frozen=True)
class CauseSpec:
    evidence: str  # the evidence kind of the object a finding of this cause blames
    # kfree_skb drop reasons that point at this cause, each with this cause's rank among that
    # reason's causes (0 first): trace prefers such a finding at the drop point
    drop_reasons: dict[str, int] = field(default_factory=dict)
    # kernel functions that free the skb for this cause (prefixes of kfree_skb's location symbol)
    freed_in: dict[str, int] = field(default_factory=dict)
    netfilter: bool = False  # decided inside a netfilter hook
    # a broken link, port or address: it explains the missing ARP/FDB entries and flooding downstream
    root: bool = False
    # symptoms it is the root cause of at the same place: a route out of the wrong device makes ARP
    # fail there, but the route is what to fix
    explains: tuple[str, ...] = ()
    warning_explains_drop: bool = False  # only a warning in diagnose, but a drop the kernel pins on it is it


C = Cause
CAUSES: dict[Cause, CauseSpec] = {
    C.POD_ROUTE: CauseSpec("route"),
    C.HOST_ROUTE: CauseSpec("route", {"IP_INADDRERRORS": 1, "IP_NOPROTO": 0}, explains=(C.ARP,)),
    C.IPTABLES: CauseSpec("rule", {"NETFILTER_DROP": 0}, netfilter=True),
    C.DNS: CauseSpec("rule", {"NETFILTER_DROP": 1, "NO_SOCKET": 1}, netfilter=True),
    C.IPVS: CauseSpec("ipvs", {"NETFILTER_DROP": 2}, netfilter=True),
    C.IP_CONFLICT: CauseSpec("addr", {"OTHERHOST": 2}, root=True),
    C.LINK_DOWN: CauseSpec("link", {"NEIGH_FAILED": 1, "NO_SOCKET": 2, "OTHERHOST": 0}, {"__dev_forward_skb": 1},
                           root=True),
    C.ARP: CauseSpec("neigh", {"NEIGH_FAILED": 0, "NO_TX_TARGET": 1, "OTHERHOST": 3}),
    C.FDB: CauseSpec("fdb", {"NO_TX_TARGET": 0, "OTHERHOST": 4}),
    C.IP_FORWARD: CauseSpec("sysctl", {"IP_INADDRERRORS": 0}, {"ip_forward": 1}),
    C.RP_FILTER: CauseSpec("sysctl", {"IP_RPFILTER": 0}),
    C.MTU: CauseSpec("link", {"PKT_TOO_SMALL": 0, "FRAG_REASM_TIMEOUT": 0},
                     {"__dev_forward_skb": 0, "ip_fragment": 0, "ip_forward": 0}),
    C.BRIDGE_PORT: CauseSpec("link", {"OTHERHOST": 1}, root=True),
    C.NO_LISTENER: CauseSpec("listener", {"NO_SOCKET": 0}),
    # an XDP_DROP frees the skb as NOT_SPECIFIED in do_xdp_generic (generic XDP) or veth_xdp_rcv
    C.TC: CauseSpec("program", {"TC_INGRESS": 0, "TC_EGRESS": 0, "XDP": 0}, {"do_xdp_generic": 0, "veth_xdp_rcv": 0},
                    warning_explains_drop=True),
    C.UNKNOWN: CauseSpec("object"),
}
assert set(CAUSES) == set(Cause), "every cause needs its row"


def _by_rank(attr: str) -> dict[str, tuple[Cause, ...]]:
    out: dict[str, list[tuple[int, Cause]]] = {}
    for cause, spec in CAUSES.items():
        for key, rank in getattr(spec, attr).items():
            out.setdefault(key, []).append((rank, cause))
    return {k: tuple(c for _, c in sorted(v, key=lambda x: x[0])) for k, v in out.items()}


# Derived views for trace: drop reason → causes, best first; freeing function → causes.
REASON_CAUSES = _by_rank("drop_reasons")
LOCATION_CAUSES = _by_rank("freed_in")
NETFILTER_CAUSES = tuple(c for c, s in CAUSES.items() if s.netfilter)
ROOT_FIRST = tuple(c for c, s in CAUSES.items() if s.root)
REASON_WARNINGS = tuple(c for c, s in CAUSES.items() if s.warning_explains_drop)
EVIDENCE_KIND = {c: s.evidence for c, s in CAUSES.items()}
