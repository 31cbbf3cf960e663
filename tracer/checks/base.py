"""What a check receives and returns. A check is a small function `(ctx) -> list[Finding]`."""

from __future__ import annotations

import ipaddress
import re
import dataclasses
from dataclasses import dataclass, field

from ..bundle import Bundle, Conntrack, Host, Link
from ..model.path import Evidence, Flow, Hop, Path
from ..model.reasons import Reason
from ..model.topology import Topology
from .causes import Cause

ERROR, WARNING, INFO = "error", "warning", "info"


# Fields that decisions read but JSON does not print (the contract in docs/json.md stays as it is).
INTERNAL = {"json": False}


def json_fields(obj) -> dict:
    """A dataclass as its JSON object: every field but the INTERNAL ones."""
    whole = dataclasses.asdict(obj)
    return {f.name: whole[f.name] for f in dataclasses.fields(obj) if f.metadata.get("json", True)}


@dataclass
class Finding:
    cause: Cause  # docs/failure-classes.md; a str enum, so JSON prints its name
    severity: str  # error, warning, info
    node: str | None
    location: str  # pod name or "host"
    object: str  # the config object to blame, as text a user can paste into a command
    message: str
    fix: str
    evidence: list[Evidence] = field(default_factory=list)
    segment: str | None = None
    device: str | None = None
    hook: str | None = None
    # what trace decides on, typed rather than read back from the text above
    hand_check: bool = field(default=False, metadata=INTERNAL)  # the fix says how to check by hand, not what to change
    rejects: bool = field(default=False, metadata=INTERNAL)  # the blamed rule answers (REJECT), not drops
    conntrack: Conntrack | None = field(default=None, metadata=INTERNAL)  # the conntrack entry blamed
    dnat_to: str | None = field(default=None, metadata=INTERNAL)  # the blamed DNAT rule's target address

    def __post_init__(self) -> None:
        self.cause = Cause(self.cause)  # an unknown cause fails where it is written

    def to_dict(self) -> dict:
        return json_fields(self)

    def key(self) -> tuple:
        return (self.cause, self.node, self.location, self.object)


@dataclass
class Context:
    bundle: Bundle
    topo: Topology
    flow: Flow | None = None
    paths: list[Path] = field(default_factory=list)
    src_host: Host | None = None
    dst_host: Host | None = None
    dst_service: object | None = None  # ServiceInfo when the flow targets a Service

    def hops(self, *reasons: Reason):
        """(path, hop) for every problem hop with one of `reasons`, over all alternative paths."""
        for path in self.paths:
            for hop in path.hops:
                if hop.reason in reasons:
                    yield path, hop

    def host(self, name: str) -> Host:
        return self.topo.host(name)

    def nodes(self) -> list[Host]:
        return [h for h in self.bundle.hosts if h.kind == "node"]

    @property
    def is_dns(self) -> bool:
        return bool(self.flow and self.flow.dport == 53 and self.flow.proto in ("udp", "tcp"))


def from_hop(hop: Hop, cause: Cause, obj: str, message: str, fix: str, severity: str = ERROR) -> Finding:
    return Finding(cause=cause, severity=severity, node=hop.node, location=hop.location, object=obj,
                   message=message, fix=fix, evidence=list(hop.evidence), device=hop.device, hook=hop.hook,
                   segment=hop.segment, rejects=hop.reason == Reason.NF_REJECT)


def for_host(ctx: Context, host: Host, cause: Cause, obj: str, message: str, fix: str, severity: str = ERROR,
             device: str | None = None, evidence: list[tuple[str, str]] = ()) -> Finding:
    node, loc = ctx.topo.node_of(host), ctx.topo.location(host)
    return Finding(cause=cause, severity=severity, node=node, location=loc, object=obj, message=message,
                   fix=fix, device=device, evidence=[Evidence(k, node, loc, o) for k, o in evidence])


def ns_prefix(host: Host) -> str:
    """How to run a command in `host`'s namespace from where podpath ran: nothing for that namespace
    itself (the node, on a node), `ip netns exec NAME` for a named one, `nsenter -t PID -n` for one
    only a process holds (a pod whose runtime did not name it)."""
    ns = host.netns
    if not ns:
        return ""
    m = re.fullmatch(r"/proc/(\d+)/ns/net", ns)
    if m:
        return f"nsenter -t {m.group(1)} -n "
    if "/" in ns:
        return f"nsenter --net={ns} "
    return f"ip netns exec {ns} "


def ip_cmd(host: Host, args: str, tool: str = "ip") -> str:
    """An iproute2 command (ip, bridge, tc) for `host`, run in its namespace when it has one."""
    if host.netns and "/" not in host.netns:
        return f"{tool} -n {host.netns} {args}"
    return ns_prefix(host) + f"{tool} {args}"


def ns_cmd(host: Host, cmd: str) -> str:
    return ns_prefix(host) + cmd


def subnet_of(host: Host, ifname: str) -> ipaddress.IPv4Network | None:
    for a in host.addrs:
        if a.ifname == ifname:
            return ipaddress.IPv4Network(f"{a.address}/{a.prefixlen}", strict=False)
    return None


def addr_on(host: Host, ifname: str) -> str | None:
    return next((a.address for a in host.addrs if a.ifname == ifname), None)


def pod_gateway(host: Host) -> str | None:
    """The gateway flannel's CNI gives a pod: the first address of its eth0 subnet (cni0's .1)."""
    net = subnet_of(host, "eth0")
    return str(net.network_address + 1) if net else None


def bridge_of(host: Host) -> Link | None:
    return next((l for l in host.links if l.kind == "bridge" and l.name == "cni0"), None) or \
        next((l for l in host.links if l.kind == "bridge"), None)


def vxlan_of(host: Host) -> Link | None:
    return next((l for l in host.links if l.kind == "vxlan" and l.vxlan), None)


def known_addresses(bundle: Bundle) -> set[str]:
    """Addresses something real holds: every snapshot namespace's, and what the cluster vouches for
    that this snapshot does not hold (other nodes' pods and nodes, the Services' endpoints)."""
    out = {a.address for h in bundle.hosts for a in h.addrs}
    inv = bundle.inventory
    if inv is not None:
        out |= {p.ip for p in inv.pods if p.ip}
        out |= {ip for n in inv.nodes for ip in (n.underlay_ip, n.internal_ip) if ip}
        out |= {ip for s in inv.services for ip in s.endpoints}
    return out


# --- pasted data: absent is not empty --------------------------------------------------------

# Which pasted commands fill each table; a live snapshot ("netlink") reads them all.
TABLE_SOURCES = {
    "links": {"ip a", "ip link", "ip -br a", "ip -br link", "ifconfig"},
    "routes": {"ip r", "netstat -rn"},
    "neigh": {"ip neigh", "arp -a", "arp -n"},
    "fdb": {"bridge fdb"},
    "iptables": {"iptables-save"},
    "ipvs": {"ipvsadm -Ln", "ipvsadm -Sn"},
    "sysctl": {"sysctl"},
}
PASTE_COMMAND = {"links": "ip a", "routes": "ip r", "neigh": "ip neigh", "fdb": "bridge fdb show",
                 "iptables": "iptables-save -c", "ipvs": "ipvsadm -Ln", "sysctl": "sysctl -a"}
TABLE_OUTPUT = {"links": "ip a", "routes": "ip r", "neigh": "ip neigh", "fdb": "bridge fdb",
                "iptables": "iptables-save", "ipvs": "ipvsadm", "sysctl": "sysctl"}


def pasted(host: Host) -> bool:
    """Built from pasted output (Host.sources names commands, not "netlink")."""
    return bool(host.sources) and "netlink" not in host.sources


def has(host: Host, table: str) -> bool:
    """Was this table read? Always for live snapshots; for pastes, only if its command was pasted."""
    return not pasted(host) or bool(TABLE_SOURCES[table] & set(host.sources))


def missing_tables(host: Host) -> list[str]:
    return [t for t in TABLE_SOURCES if not has(host, t)]


def not_checked(ctx: Context, host: Host, cause: Cause, table: str, what: str) -> Finding:
    """A check whose input was not pasted: said as info, never as a problem."""
    return for_host(ctx, host, cause, f"{TABLE_OUTPUT[table]} of {host.name} (not pasted)",
                    f"not checked: no {TABLE_OUTPUT[table]} output from {host.name} ({what})",
                    f"paste `{PASTE_COMMAND[table]}` from {host.name}", severity=INFO)
