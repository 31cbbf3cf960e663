"""What the model produces: a flow, and the hops the kernel would take for it.

Each hop keeps the objects that decided it (route, neighbour, FDB entry, rule, link, sysctl) so
checks can turn a failed hop into a finding with evidence and a fix, and so the live tracer can
line its observed events up against the expected hops.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

from .reasons import Payload, Reason

# Hop outcomes: the model keeps walking past a problem where the kernel's intent is clear (a
# dropping rule, a wrong MAC), so one diagnose run can report every problem on the path.
OK, FAIL, WARN = "ok", "fail", "warn"

SEGMENTS = ("pod A → host A", "host A → host B", "host B → pod B", "pod A → pod B")


@dataclass
class Flow:
    """The packet to model. Addresses are resolved IPs; names are what the user typed."""

    src: str
    dst: str
    proto: str = "icmp"  # icmp, tcp, udp
    sport: int | None = None
    dport: int | None = None
    size: int = 84  # IP packet size in bytes (DF set)
    src_name: str | None = None
    dst_name: str | None = None

    def describe(self) -> str:
        port = f":{self.dport}" if self.dport else ""
        return f"{self.proto} {self.src} → {self.dst}{port} ({self.size} bytes)"


@dataclass
class Evidence:
    kind: str  # route, neigh, fdb, rule, link, sysctl, addr, listener, conntrack, ipvs
    node: str | None
    location: str  # pod name or "host"
    object: str  # text a user can paste into a command


@dataclass
class Hop:
    host: str  # Host.name of the namespace
    node: str | None
    location: str  # pod name, or "host" for a node (or the network)
    device: str | None
    point: str  # route, neigh, fdb, bridge, netfilter, egress, ingress, encap, decap, deliver, forward
    direction: str = "request"  # request, reply
    status: str = OK
    reason: Reason | None = None  # why a hop failed or warned (or left the snapshot's nodes)
    detail: str = ""  # one human line
    hook: str | None = None  # netfilter hook for point == netfilter
    evidence: list[Evidence] = field(default_factory=list)
    # the hop's facts, typed: a failed hop's is its reason's payload (REASONS[reason].payload); a
    # passing hop's says what decided it (the rule trail, the resolved MAC, the FDB entry...)
    payload: Payload | None = None
    segment: str | None = None

    def to_dict(self) -> dict:
        """As `diagnose -o json` prints it: the payload is the hop's `data`."""
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "payload"}
        d["evidence"] = [dataclasses.asdict(e) for e in self.evidence]
        data = copy.deepcopy(self.payload.to_dict()) if self.payload is not None else {}
        order = [f.name if f.name != "payload" else "data" for f in dataclasses.fields(self)]
        d["data"] = data
        return {k: d[k] for k in order}


@dataclass
class Path:
    flow: Flow
    hops: list[Hop] = field(default_factory=list)
    outcome: str = "delivered"  # delivered, dropped, rejected, misdelivered, lost, unsent, unknown
    alternative: str | None = None  # which branch of a -m statistic choice (endpoint), when several
    probability: float = 1.0
    endpoint: str | None = None  # where the request was DNATed to (a Service's endpoint), when it was

    @property
    def problems(self) -> list[Hop]:
        return [h for h in self.hops if h.status != OK]


def ct_text(c) -> str:
    """A conntrack entry (bundle.Conntrack) as `conntrack -L` prints it."""
    ports = lambda s, d: f" sport={s} dport={d}" if s is not None else ""  # noqa: E731
    return (f"{c.proto} src={c.src} dst={c.dst}{ports(c.sport, c.dport)} src={c.reply_src} dst={c.reply_dst}"
            f"{ports(c.reply_sport, c.reply_dport)}" + (f" [{c.state}]" if c.state else ""))
