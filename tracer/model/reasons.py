"""Why a hop failed or warned: one enum, and one table row per reason; and every hop's typed facts.

A row says what the reason means for the path (its outcome), whether the walk can go on past it,
and the payload it carries: the facts a check needs to turn the hop into a finding. The walk
writes reasons, `outcome()` and the checks read them; adding one is one member, one row, one
payload class (when none fits) and the check that explains it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum


class _Unset:
    """A payload field the walk did not record at that site (absent from the JSON `data`, falsy)."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNSET"

    def __str__(self) -> str:
        return "None"  # in a message, as the absent dict key it replaces read


UNSET = _Unset()


@dataclass
class Payload:
    """Base of the reason payloads. As JSON (`path[].data`): the fields the walk recorded, in the
    order it recorded them (`recorded`, when the walk built it from keywords)."""

    def to_dict(self) -> dict:
        names = getattr(self, "recorded", None) or [f.name for f in dataclasses.fields(self)]
        return {n: getattr(self, n) for n in names if getattr(self, n) is not UNSET}

    @classmethod
    def record(cls, **facts) -> "Payload":
        p = cls(**facts)
        p.recorded = tuple(facts)
        return p


@dataclass
class NoFacts(Payload):
    pass


@dataclass
class RouteFacts(Payload):
    dst: str
    origin: bool | _Unset = UNSET  # the lookup of a locally generated packet (no input device)
    table: int | None | _Unset = UNSET  # the table whose route matched (a passing hop)


@dataclass
class RuleTrail(Payload):
    """A pass through a netfilter hook: the rules that matched on the way."""

    rules: list  # the trail of rules the packet matched, as dicts (netfilter.evaluate.RuleRef)
    probability: float
    unsupported: list  # rules with matches podpath cannot evaluate, as dicts


@dataclass
class RuleVerdict(RuleTrail):
    """A hook that dropped or rejected the packet, and the rule that did."""

    rule: dict | None = None  # the deciding RuleRef as a dict
    reject_with: str | None = None


@dataclass
class ConntrackFacts(Payload):
    conntrack: str  # the entry whose NAT the packet took, as `conntrack -L` prints it


@dataclass
class EgressFacts(Payload):
    mac: str | None  # the destination MAC put on the frame


@dataclass
class PortFacts(Payload):
    port: str  # the bridge port the frame leaves by


@dataclass
class FdbEntryFacts(Payload):
    dst: str  # the underlay IP the VXLAN FDB sends to


@dataclass
class EncapFacts(Payload):
    remote: str
    vni: int | None


@dataclass
class NeighFacts(Payload):
    ip: str
    state: list | None | _Unset = UNSET
    segment: list | _Unset = UNSET  # the ports of the segment that nobody answers on
    solicit: bool | _Unset = UNSET  # False: the device sends no ARP requests
    vxlan: bool | _Unset = UNSET
    mac: str | None | _Unset = UNSET  # the MAC the entry holds
    macs: list | _Unset = UNSET  # every MAC that answers (a conflict)
    expected: str | None | _Unset = UNSET  # the MAC the real owner has
    owner: str | None | _Unset = UNSET
    owners: list | _Unset = UNSET
    permanent: bool | _Unset = UNSET
    annotation: bool | _Unset = UNSET  # the owner is known from flannel's Node annotation only


@dataclass
class FdbFacts(Payload):
    mac: str
    expected_dst: str | None
    vtep: str | None
    dst: str | _Unset = UNSET  # the underlay IP the wrong entry sends to


@dataclass
class BridgeFacts(Payload):
    mac: str | None
    bridge: str
    ports: list


@dataclass
class FrameFacts(Payload):
    mac: str | None
    dev_mac: str | None
    owners: list


@dataclass
class VxlanFacts(Payload):
    vni: int | None | _Unset = UNSET
    port: int | None | _Unset = UNSET


@dataclass
class LinkFacts(Payload):
    link: str
    admin_down: bool


@dataclass
class MtuFacts(Payload):
    size: int
    mtu: int


@dataclass
class ListenerFacts(Payload):
    proto: str
    port: int | None
    listening: list


@dataclass
class HostFacts(Payload):
    expected: str
    ip: str
    owners: list


@dataclass
class SysctlFacts(Payload):
    key: str


@dataclass
class RpFilterFacts(Payload):
    mode: int
    back_dev: str | None


@dataclass
class IpvsFacts(Payload):
    proto: str | _Unset = UNSET
    vip: str | _Unset = UNSET
    port: int | None | _Unset = UNSET
    served: list | _Unset = UNSET
    service: str | _Unset = UNSET  # ipvsadm's line of the virtual service
    dest: str | _Unset = UNSET  # ipvsadm's line of the real server
    probability: float | _Unset = UNSET


@dataclass
class RemoteNode(Payload):
    remote: str  # the inventory node it left for, or arrived from (not in the snapshot)


# Outcomes of a path (Path.outcome, `diagnose -o json`'s `outcome`).
DELIVERED, DROPPED, REJECTED, MISDELIVERED, LOST, UNSENT, UNOBSERVED = (
    "delivered", "dropped", "rejected", "misdelivered", "lost", "unsent", "unobserved")


class Reason(StrEnum):
    NO_ROUTE = "no_route"
    ROUTE_BLACKHOLE = "route_blackhole"
    ROUTE_UNREACHABLE = "route_unreachable"
    ROUTE_PROHIBIT = "route_prohibit"
    NF_DROP = "nf_drop"
    NF_REJECT = "nf_reject"
    NEIGH_UNRESOLVED = "neigh_unresolved"
    NEIGH_WRONG_MAC = "neigh_wrong_mac"
    NEIGH_CONFLICT = "neigh_conflict"
    NEIGH_STALE_FAILURE = "neigh_stale_failure"
    BRIDGE_NO_PORT = "bridge_no_port"
    FDB_MISSING = "fdb_missing"
    FDB_MISSING_UNKNOWN = "fdb_missing_unknown"
    FDB_WRONG_DST = "fdb_wrong_dst"
    MAC_MISMATCH = "mac_mismatch"
    NO_VXLAN_RECEIVER = "no_vxlan_receiver"
    LINK_DOWN = "link_down"
    LINK_MISSING = "link_missing"
    MTU_EXCEEDED = "mtu_exceeded"
    TTL_EXCEEDED = "ttl_exceeded"
    LOOP = "loop"
    FORWARDING_OFF = "forwarding_off"
    RP_FILTER = "rp_filter"
    NO_LISTENER = "no_listener"
    WRONG_HOST = "wrong_host"
    LEAVES_SNAPSHOT = "leaves_snapshot"
    LEFT_NODE = "left_node"
    IPVS_NO_SERVICE = "ipvs_no_service"
    IPVS_NO_DEST = "ipvs_no_dest"
    IPVS_DEST_GONE = "ipvs_dest_gone"
    IPVS_WRONG_PORT = "ipvs_wrong_port"
    IPVS_VIP_NOT_LOCAL = "ipvs_vip_not_local"
    IPVS_FORWARD_METHOD = "ipvs_forward_method"

    @property
    def spec(self) -> "ReasonSpec":
        return REASONS[self]


@dataclass(frozen=True)
class ReasonSpec:
    outcome: str | None  # what the path's outcome is when this is its first failure (None: it decides none)
    stops: bool  # the kernel's next step is unknowable: the walk ends here
    payload: type[Payload]
    unsent_at_source: bool = False  # failing at the source before it leaves: the send itself fails
    overrides: bool = False  # decides the outcome wherever it is on the path, not only when first


R = Reason
REASONS: dict[Reason, ReasonSpec] = {
    R.NO_ROUTE: ReasonSpec(DROPPED, True, RouteFacts, unsent_at_source=True),
    R.ROUTE_BLACKHOLE: ReasonSpec(DROPPED, True, RouteFacts, unsent_at_source=True),
    R.ROUTE_UNREACHABLE: ReasonSpec(DROPPED, True, RouteFacts, unsent_at_source=True),
    R.ROUTE_PROHIBIT: ReasonSpec(DROPPED, True, RouteFacts, unsent_at_source=True),
    R.NF_DROP: ReasonSpec(DROPPED, False, RuleVerdict, unsent_at_source=True),
    R.NF_REJECT: ReasonSpec(REJECTED, False, RuleVerdict),
    R.NEIGH_UNRESOLVED: ReasonSpec(DROPPED, True, NeighFacts, unsent_at_source=True),
    R.NEIGH_WRONG_MAC: ReasonSpec(DROPPED, False, NeighFacts),
    R.NEIGH_CONFLICT: ReasonSpec(None, False, NeighFacts),  # the walk follows one answer; others decide
    R.NEIGH_STALE_FAILURE: ReasonSpec(None, False, NeighFacts),  # a warning: the kernel re-resolves
    R.BRIDGE_NO_PORT: ReasonSpec(DROPPED, True, BridgeFacts),
    R.FDB_MISSING: ReasonSpec(DROPPED, False, FdbFacts),
    R.FDB_MISSING_UNKNOWN: ReasonSpec(DROPPED, True, FdbFacts),
    R.FDB_WRONG_DST: ReasonSpec(DROPPED, False, FdbFacts),
    R.MAC_MISMATCH: ReasonSpec(MISDELIVERED, True, FrameFacts),
    R.NO_VXLAN_RECEIVER: ReasonSpec(DROPPED, True, VxlanFacts),
    R.LINK_DOWN: ReasonSpec(DROPPED, False, LinkFacts, unsent_at_source=True),
    R.LINK_MISSING: ReasonSpec(DROPPED, True, NoFacts),
    R.MTU_EXCEEDED: ReasonSpec(DROPPED, False, MtuFacts, unsent_at_source=True),
    R.TTL_EXCEEDED: ReasonSpec(DROPPED, True, NoFacts),
    R.LOOP: ReasonSpec(DROPPED, True, NoFacts),
    R.FORWARDING_OFF: ReasonSpec(DROPPED, False, SysctlFacts),
    R.RP_FILTER: ReasonSpec(DROPPED, False, RpFilterFacts),
    R.NO_LISTENER: ReasonSpec(REJECTED, True, ListenerFacts),
    R.WRONG_HOST: ReasonSpec(MISDELIVERED, True, HostFacts, overrides=True),  # a duplicate address, not a drop
    R.LEAVES_SNAPSHOT: ReasonSpec(LOST, True, NoFacts),
    R.LEFT_NODE: ReasonSpec(UNOBSERVED, True, RemoteNode),  # fine so far, the rest on a node not held
    R.IPVS_NO_SERVICE: ReasonSpec(REJECTED, True, IpvsFacts),
    R.IPVS_NO_DEST: ReasonSpec(REJECTED, True, IpvsFacts),
    R.IPVS_DEST_GONE: ReasonSpec(DROPPED, True, IpvsFacts),
    R.IPVS_WRONG_PORT: ReasonSpec(REJECTED, True, IpvsFacts),
    R.IPVS_VIP_NOT_LOCAL: ReasonSpec(LOST, True, IpvsFacts),
    R.IPVS_FORWARD_METHOD: ReasonSpec(None, False, IpvsFacts),  # a warning: followed as Masq
}
assert set(REASONS) == set(Reason), "every reason needs its row"
