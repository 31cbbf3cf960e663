"""A trace to a Service: which endpoint kube-proxy's DNAT chose, by which chain and rule, and
whether the reply was translated back.

The kernel shows the translation (the tuple before and after the nat table in a hook pass, see
hooks.HookPass.nat); the snapshot's model has one alternative path per endpoint, each with the
KUBE-SERVICES → KUBE-SVC → KUBE-SEP rule trail that leads to it. Joining the two names the rule
that chose the endpoint the packet really went to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..model.reasons import RuleTrail


@dataclass
class ServiceHop:
    name: str  # svc/<ns>/<name>
    cluster_ip: str
    port: int | None
    endpoint: str | None = None  # "10.244.1.2:8080", as DNATed by the kernel
    endpoint_pod: str | None = None
    node: str | None = None  # where the DNAT happened
    hook: str | None = None
    chain: list[str] = field(default_factory=list)  # the rule trail, KUBE-SERVICES → ... → DNAT
    reverse_nat: str | None = None  # the reply's translation back, where seen
    conntrack: bool = False  # no nat rule was consulted: an existing conntrack entry decided

    def to_dict(self) -> dict:
        return asdict(self)


def _pass_where(passes, direction: str, rewrote):
    """The first hook pass in this direction whose first and last tuples satisfy rewrote(before, after)."""
    return next((p for p in passes if p.direction == direction and rewrote(p.first, p.last)), None)


def dnat_of(passes, cluster_ip: str):
    """The first request hook pass that rewrote the destination away from the ClusterIP."""
    p = _pass_where(passes, "request", lambda a, b: a.daddr == cluster_ip and b.daddr not in (None, cluster_ip))
    if p is None:
        return None, None
    b = p.last
    return p, (f"{b.daddr}:{b.dport}" if b.proto in ("tcp", "udp") else b.daddr)


def reverse_nat_of(passes, cluster_ip: str):
    """The reply pass whose source was translated back to the ClusterIP."""
    return _pass_where(passes, "reply", lambda a, b: b.saddr == cluster_ip and a.saddr not in (None, cluster_ip))


def service_hop(diagnosis, bundle, passes, where) -> ServiceHop | None:
    flow = diagnosis.flow
    if flow is None or not (flow.dst_name or "").startswith("svc/"):
        return None
    hop = ServiceHop(name=flow.dst_name, cluster_ip=flow.dst, port=flow.dport)
    p, endpoint = dnat_of(passes, flow.dst)
    if p is None:
        return hop
    hop.endpoint = endpoint
    h = where.host(p.netns)
    hop.node = (h.node or h.name) if h is not None else None
    hop.hook = p.hook
    ip = endpoint.split(":")[0]
    owner = next((x for x in bundle.hosts if x.kind == "pod" and any(a.address == ip for a in x.addrs)), None)
    hop.endpoint_pod = owner.name if owner else None
    chosen = next((path for path in diagnosis.paths if (path.alternative or "").split(":")[0] == ip), None)
    if chosen is None and len(diagnosis.paths) == 1:  # one endpoint: no alternatives to tell apart
        chosen = diagnosis.paths[0]
    if chosen is None and diagnosis.paths and not any((p.alternative or "").split(":")[0] == ip
                                                      for p in diagnosis.paths):
        hop.conntrack = True  # the rules would pick another endpoint: an existing entry decided
    if chosen is not None and not hop.conntrack:
        nat = next((x for x in chosen.hops if x.point == "netfilter" and "DNAT" in (x.detail or "")), None)
        if nat is not None:
            hop.chain = [f"{r['table']}/{r['chain']} rule {r['number']}: {r['text']}" for r in (nat.payload.rules if isinstance(nat.payload, RuleTrail) else [])]
    back = reverse_nat_of(passes, flow.dst)
    if back is not None:
        bh = where.host(back.netns)
        hop.reverse_nat = f"{back.first.saddr}:{back.first.sport} → {back.last.saddr}:{back.last.sport} " \
                          f"at {(bh.node or bh.name) if bh else '?'} {back.hook} (conntrack)"
    return hop
