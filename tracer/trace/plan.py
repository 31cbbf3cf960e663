"""What a trace probes and sends: from the snapshot's expected path (plan), or, before the snapshot
is ready, from a source that knows the path by names alone (the lab's Source.preplan), so the
probes attach while the snapshot is taken.

Attaching tc is slow in the kernel (each tcx link waits for an RCU grace period under the RTNL lock,
~14 ms here, ~350 ms for a cross-node path) and the snapshot is slow in Python (~250 ms); doing
them one after the other put the verdict past 1 s. The preplan is only a head start: the plan from
the snapshot is still what the trace uses, and any device it adds is attached before sending.
"""

from __future__ import annotations

from ..bundle import Bundle
from ..netns import probe_netns
from ..errors import BundleError, UsageError
from ..diagnose import EPHEMERAL_PORT
from ..model.reasons import NeighFacts
from .inject import InjectRequest, new_icmp_id
from ..probes.events import MAX_NEIGH_ADDRS
from .session import SessionRequest


def nf_brackets(host) -> dict[str, list[int]]:
    """Where to put the netfilter brackets in one namespace, from its snapshot: the start of each
    hook, just before every distinct base chain priority there, and the end. A hook without base
    chains gets one link (the hop is still seen; each link costs every packet a program run). At most 8 per hook (the programs);
    more tables than that share brackets, the first ones kept apart."""
    from ..netfilter import Netfilter
    from ..netfilter.results import HOOKS
    from ..probes import NF_PRI_FIRST, NF_PRI_LAST, NF_PROGRAMS

    try:
        nf = Netfilter.from_host(host)
    except BundleError:  # an unreadable ruleset: the default brackets
        nf = None
    out = {}
    for hook in HOOKS:
        prios = nf.priorities_at(hook) if nf is not None else [-300, -150, -100, 0, 50, 100]
        if not prios:  # nothing can take the packet here: one link shows the pass, and it ends there
            out[hook] = [NF_PRI_FIRST + 1]
            continue
        inner = [p - 1 for p in prios if NF_PRI_FIRST + 1 < p - 1 < NF_PRI_LAST - 1]
        inner = list(dict.fromkeys(inner))[:len(NF_PROGRAMS) - 2]
        out[hook] = [NF_PRI_FIRST + 1] + inner + [NF_PRI_LAST - 1]
    return out


def nf_plan(bundle: Bundle, attach, src_host, dst_host) -> dict[str, dict]:
    """netns -> {"hooks": brackets per hook, "match": bool} for every namespace with a probed device.
    match in the end pods: packets created there meet OUTPUT before any tc probe."""
    ends = {probe_netns(h) for h in (src_host, dst_host) if h is not None and h.kind == "pod"}
    by_ns = {probe_netns(h): h for h in bundle.hosts}
    out = {}
    for ns in dict.fromkeys([ns for ns, _ in attach] + sorted(ends)):
        host = by_ns.get(ns)
        if host is not None:
            out[ns] = {"hooks": nf_brackets(host), "match": ns in ends}
    return out


def request_for(flow, src_host, dst_host, attach, *, count: int, timeout: float,
                neigh_addrs=()) -> SessionRequest:
    if src_host is None:
        raise UsageError(f"cannot find the source's network namespace for {flow.src}: trace from a pod of this "
                         "node (a pod on another node needs podpath run there)")
    inj = InjectRequest(netns=probe_netns(src_host), src=flow.src, dst=flow.dst, proto=flow.proto, dport=flow.dport,
                        size=flow.size, count=count, icmp_id=new_icmp_id() if flow.proto == "icmp" else None,
                        sport=flow.sport if flow.sport and flow.sport != EPHEMERAL_PORT else None)
    dst_pod = dst_host is not None and dst_host.kind == "pod"
    return SessionRequest(inject=inj, attach=attach, src_netns=probe_netns(src_host),
                          dst_netns=probe_netns(dst_host) if dst_pod else None, timeout=timeout,
                          neigh_addrs=list(dict.fromkeys(neigh_addrs))[:MAX_NEIGH_ADDRS])


def plan(bundle: Bundle, diagnosis, *, count: int = 1, timeout: float = 1.0) -> tuple[SessionRequest, object, object]:
    """The session request for a diagnosed flow: every device on the expected paths, what to send."""
    flow = diagnosis.flow
    hosts = {h.name: h for h in bundle.hosts}
    src_host = hosts.get(flow.src_name) if flow.src_name else None
    if src_host is None:
        src_host = next((h for h in bundle.hosts if h.kind == "pod" and any(a.address == flow.src for a in h.addrs)),
                        None)
    dst_host = hosts.get(flow.dst_name) if flow.dst_name else None
    attach: list[tuple[str, str]] = []

    def add(host, dev):
        if host is None or not dev or dev == "lo":
            return
        if any(l.name == dev for l in host.links) and (probe_netns(host), dev) not in attach:
            attach.append((probe_netns(host), dev))

    add(src_host, "eth0")
    for p in diagnosis.paths:
        for hop in p.hops:
            add(hosts.get(hop.host), hop.device)
    if dst_host is not None and dst_host.kind == "pod":
        add(dst_host, "eth0")
    # the next hops the path resolves (and the destination itself): their neighbour events
    nexthops = [h.payload.ip for p in diagnosis.paths for h in p.hops
                if h.point == "neigh" and isinstance(h.payload, NeighFacts) and h.payload.ip]
    req = request_for(flow, src_host, dst_host, attach, count=count, timeout=timeout, neigh_addrs=nexthops + [flow.dst])
    req.nf_plan = nf_plan(bundle, attach, src_host, dst_host)
    return req, src_host, dst_host


def same_flow(a: SessionRequest, b: SessionRequest) -> bool:
    """Whether the preplanned session sends what the plan wants (then it can be kept)."""
    x, y = a.inject, b.inject
    return ((x.netns, x.src, x.dst, x.proto, x.dport, x.size, x.count, x.sport) ==
            (y.netns, y.src, y.dst, y.proto, y.dport, y.size, y.count, y.sport) and a.dst_netns == b.dst_netns)
