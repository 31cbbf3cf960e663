"""Observed events → hops, one verdict, and the snapshot finding that explains it.

Input: the session's events (probes.Event), what the injector saw, the snapshot the expected path
came from, and diagnose's result for the same flow. Output: a Trace (JSON per DESIGN.md's
`podpath trace -o json` contract): `verdict.{status,cause,node,location,device,hook,drop_reason,
evidence,fix}` and `hops` ({node, location, device, point, direction, time}).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..model.segments import assign_observed, ends, path_ends
from ..model.topology import place
from ..checks.base import INTERNAL, json_fields, ns_cmd
from ..checks.causes import NETFILTER_CAUSES, ROOT_FIRST, Cause
from ..model.reasons import Reason
from ..netns import inode, probe_netns
from .explain import StopPoint, evidence_of, explain
from .hooks import chains_in_gap, hook_passes, nf_links_in_gap, pass_before

HOP_KINDS = {"tc": 0, "netif_receive_skb": 1, "net_dev_start_xmit": 1}  # preference when both saw a hop


@dataclass
class ObservedHop:
    node: str | None
    location: str
    device: str | None
    point: str  # ingress, egress, drop
    direction: str  # request, reply
    time: int  # ns since the first event
    host: str | None = None
    seq: int | None = None
    probe: str = "tc"  # tc, netif_receive_skb, net_dev_start_xmit, kfree_skb
    inner: bool = False  # seen inside VXLAN (on the underlay)
    segment: str | None = None
    detail: str | None = None  # netfilter: NAT seen in the hook, or the table that took the packet


@dataclass
class Verdict:
    status: str  # delivered, dropped, rejected, misdelivered, lost, unsent
    cause: Cause | None = None  # None when delivered; a str enum, so JSON prints its name
    node: str | None = None
    location: str | None = None
    device: str | None = None
    hook: str | None = None
    drop_reason: str | None = None
    drop_location: str | None = None  # kernel symbol+offset of kfree_skb
    table: str | None = None  # netfilter: the base chain(s) between the last bracket passed and the next
    counter: str | None = None  # netfilter: the DROP/REJECT rule whose packet counter rose during the trace
    stopped_at: str | None = None  # where the packet was dropped or last seen ("node-b/host flannel.1")
    direction: str | None = None  # dropped/lost: the request, or the reply on its way back
    kernel: list[str] = field(default_factory=list)  # the kernel's route/neighbour decisions there
    nftrace: str | None = None  # --nftrace: the nf_tables trace line that decided (the kernel's word)
    evidence: list[dict] = field(default_factory=list)
    fix: str | None = None
    message: str = ""
    errno: str | None = None  # unsent: the send error
    # what the CLI and the kernel's word decide on, typed rather than read back from the text above
    hand_check: bool = field(default=False, metadata=INTERNAL)  # the fix says how to check by hand
    no_answer_expected: bool = field(default=False, metadata=INTERNAL)  # UDP: reaching the destination is delivery

    def __post_init__(self) -> None:
        if self.cause is not None:
            self.cause = Cause(self.cause)  # from JSON (trace_from_dict) a name; an unknown one fails here


@dataclass
class Trace:
    src: str
    dst: str
    flow: dict
    verdict: Verdict
    hops: list[ObservedHop]
    expected_outcome: str | None = None
    lost_events: int = 0
    timings: dict = field(default_factory=dict)
    attach_errors: list[str] = field(default_factory=list)
    inject: dict = field(default_factory=dict)
    service: dict | None = None  # service.ServiceHop: the endpoint chosen, the rule trail, the reverse NAT
    # through agents: the nodes whose agent was missing, unreachable or lost ({node, why})
    not_observed: list[dict] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return self.verdict.status == "delivered"

    def to_dict(self) -> dict:
        return {"src": self.src, "dst": self.dst, "flow": self.flow, "verdict": json_fields(self.verdict),
                "hops": [dataclasses.asdict(h) for h in self.hops], "expected_outcome": self.expected_outcome,
                "lost_events": self.lost_events, "timings": self.timings, "attach_errors": self.attach_errors,
                "inject": self.inject, "service": self.service, "not_observed": self.not_observed}


class Where:
    """(netns inode, ifindex) → (host, device), from the snapshot and the namespaces' inodes."""

    def __init__(self, bundle) -> None:
        self.hosts = {h.name: h for h in bundle.hosts}
        self.by_ino: dict[int, object] = {}
        self.dev: dict[tuple[int, int], str] = {}
        for h in bundle.hosts:
            ino = h.inode  # recorded by the snapshot: correlating reads nothing from this machine
            if ino is None:  # a bundle from before inodes were recorded: ask the live namespace
                ino = inode(probe_netns(h))
                if ino is None:
                    continue
            self.by_ino[ino] = h
            for l in h.links:
                if l.index is not None:
                    self.dev[(ino, l.index)] = l.name

    def host(self, ino: int):
        return self.by_ino.get(ino)

    def device(self, ino: int, ifindex: int) -> str | None:
        return self.dev.get((ino, ifindex)) if ifindex else None

    @staticmethod
    def node_loc(h) -> tuple[str | None, str]:
        return place(h) if h is not None else (None, "?")


def observed_hops(events, where: Where) -> list[ObservedHop]:
    """One hop per (namespace, device, point, direction, seq): tc first, tracepoints fill gaps."""
    evs = sorted(events, key=lambda e: e.ts_ns)
    if not evs:
        return []
    t0 = evs[0].ts_ns
    best: dict[tuple, tuple] = {}
    for e in evs:
        if e.kind not in HOP_KINDS or e.point not in ("ingress", "egress") or not e.ifindex:
            continue
        direction = "reply" if "reply" in e.flags else "request"
        seq = e.icmp_seq if e.proto == "icmp" else None
        key = (e.netns, e.ifindex, e.point, direction, seq)
        cur = best.get(key)
        if cur is None or HOP_KINDS[e.kind] < HOP_KINDS[cur[1].kind]:
            best[key] = (min(e.ts_ns, cur[0]) if cur else e.ts_ns, e)
    hops = []
    for ts, e in sorted(best.values(), key=lambda x: x[0]):
        h = where.host(e.netns)
        node, loc = Where.node_loc(h)
        hops.append(ObservedHop(node=node, location=loc, device=where.device(e.netns, e.ifindex) or f"if{e.ifindex}",
                                point=e.point, direction="reply" if "reply" in e.flags else "request",
                                time=ts - t0, host=h.name if h else None,
                                seq=e.icmp_seq if e.proto == "icmp" else None, probe=e.kind, inner=e.inner))
    return hops


def netfilter_hops(passes, where: Where, t0: int) -> list[ObservedHop]:
    """One hop per pass through a hook (device: none; point: the hook)."""
    hops = []
    for p in passes:
        e = p.first
        h = where.host(p.netns)
        node, loc = Where.node_loc(h)
        detail = p.nat()
        if not p.complete:
            lo, hi = p.stopped_between()
            detail = ((detail + "; ") if detail else "") + f"did not leave the hook (stopped after priority {lo})"
        hops.append(ObservedHop(node=node, location=loc, device=None, point=p.hook, direction=p.direction,
                                time=e.ts_ns - t0, host=h.name if h else None,
                                seq=e.icmp_seq if e.proto == "icmp" else None, probe="netfilter",
                                inner=e.inner, detail=detail))
    return hops


PACKET_PROBES = ("tc", "netfilter", "netif_receive_skb", "net_dev_start_xmit")
SKB_KINDS = ("tc", "netfilter", "netif_receive_skb", "net_dev_start_xmit", "kfree_skb", "consume_skb")
TABLE_NAMES = {253: "default", 254: "main", 255: "local"}
LOCAL_IIF = (0, 1)  # output route lookups carry iif 0 or LOOPBACK_IFINDEX
NEAR_NS = 500_000  # a route lookup or neighbour event this close after a packet event on the same CPU serves it


def kernel_hops(events, where: Where, t0: int, src_host=None, dst_host=None, send_windows=()) -> list[ObservedHop]:
    """Route lookups (fib:fib_table_lookup) and neighbour events as hops. Neither carries an skb:
    each is tied to the packet event just before it on the same CPU (a packet is processed on one
    CPU from socket or softirq to the next queue), else to the source or destination pod.

    One route decision runs several table lookups (local, main, policy tables); the lookups of one
    decision are shown as one hop: the table that matched, or "no route" when none did (the kernel
    reports a miss as EAGAIN in each table). Neighbour events only on namespaces the packet
    visited (an ARP broadcast updates entries everywhere on the segment).

    The fib filter cannot see ICMP ids or (on input) ports, so a lookup is kept only when it is
    tied to this trace: just after one of its packet events on the same CPU, or inside one of its
    send calls (send_windows) — another trace's lookups between the same pods are left out."""
    import errno as _errno

    evs = sorted(events, key=lambda e: e.ts_ns)
    visited = {e.netns for e in evs if e.kind in SKB_KINDS}
    out: list[ObservedHop] = []
    last: dict[int, object] = {}
    pending: dict[tuple, list] = {}  # (host, direction) -> the fib events of one decision

    def place(e):
        """(host, direction, what): what = "route", or "rpf" for a reverse-path check (the kernel
        looks up the route back to a received packet's source: its addresses look swapped)."""
        ctx = last.get(e.cpu)
        near = ctx is not None and e.ts_ns - ctx.ts_ns < NEAR_NS
        own = "reply" if "reply" in e.flags else "request"  # by the lookup's addresses
        what = "route"
        if e.kind == "fib" and e.reason in LOCAL_IIF:
            direction = own  # a local socket's lookup (the echo reply too): its addresses say which
        elif near:
            direction = "reply" if "reply" in ctx.flags else "request"
            if e.kind == "fib" and "matched" in e.flags and own != direction:
                what = "rpf"  # the flow's addresses, swapped (an outer VXLAN header matches neither)
        else:
            direction = own
        ino = e.netns or (ctx.netns if near else 0)
        h = where.host(ino) if ino else None
        if h is None and e.kind == "fib" and e.reason in LOCAL_IIF:  # from a local socket: an end pod
            h = src_host if direction == "request" else dst_host
        return h, direction, what

    def flush(key):
        group = pending.pop(key, None)
        if not group:
            return
        h, direction, what = where.hosts.get(key[0]) if key[0] else None, key[1], key[3]
        hit = next((e for e in reversed(group) if e.fib_err == 0), None)
        e = hit or group[-1]
        ino = e.netns or (where_ino.get(h.name) if h else 0) or 0
        dev = where.device(ino, e.ifindex) if ino and e.ifindex else None
        if hit is not None:
            table = TABLE_NAMES.get(hit.fib_table, str(hit.fib_table))
            if hit.fib_table == 255 and dev != "lo":
                table = "main"  # without policy rules the kernel merges main into local's trie
            local = h is not None and any(a.address == hit.daddr for a in h.addrs)
            detail = f"table {table}: {hit.daddr} " + (
                "local" if local else (f"via {hit.fib_gw} " if hit.fib_gw else "") + f"dev {dev or '?'}")
        else:
            code = e.fib_err if e.fib_err != -_errno.EAGAIN else -_errno.ENETUNREACH
            tables = ", ".join(dict.fromkeys(TABLE_NAMES.get(x.fib_table, str(x.fib_table)) for x in group))
            detail = f"no route to {e.daddr} ({_errno.errorcode.get(-code, code)}; tables tried: {tables})"
        if what == "rpf":
            detail = "reverse-path check, " + detail
        node, loc = Where.node_loc(h)
        prev = next((o for o in reversed(out) if o.probe == "fib" and o.host == (h.name if h else None)
                     and o.direction == direction), None)
        if prev is not None and prev.detail == detail and group[0].ts_ns - t0 - prev.time < NEAR_NS:
            return  # the same decision again (input route, then forwarding's own lookup)
        out.append(ObservedHop(node=node, location=loc, device=dev, point="route", direction=direction,
                               time=group[0].ts_ns - t0, host=h.name if h else None, probe="fib", detail=detail))

    where_ino = {h.name: ino for ino, h in where.by_ino.items()}
    for e in evs:
        if e.kind in SKB_KINDS:
            for key in [k for k in pending if k[2] == e.cpu]:
                flush(key)
            last[e.cpu] = e
            continue
        if e.kind == "fib":
            ctx = last.get(e.cpu)
            ours = (ctx is not None and e.ts_ns - ctx.ts_ns < NEAR_NS) or any(
                a - 20_000 <= e.ts_ns <= b + 20_000 for a, b in send_windows)
            if not ours or (e.netns and e.netns not in visited):
                continue  # another packet's lookup on the same CPU (an ARP request's, elsewhere)
            h, direction, what = place(e)
            pending.setdefault((h.name if h else None, direction, e.cpu, what), []).append(e)
        elif e.kind == "neigh" and e.netns in visited:
            h, direction, _ = place(e)
            node, loc = Where.node_loc(h)
            out.append(ObservedHop(node=node, location=loc, device=where.device(e.netns, e.ifindex),
                                   point="neigh", direction=direction, time=e.ts_ns - t0,
                                   host=h.name if h else None, probe="neigh",
                                   detail=f"neighbour {e.daddr}: {e.nud_state} ({e.point})"))
    for key in list(pending):
        flush(key)
    return out




def peer_places(bundle, host_name: str | None, device: str | None) -> list[tuple]:
    """(node, location) of the namespace at the other end of a veth (what it forwards into)."""
    h = bundle.host(host_name) if host_name else None
    link = h.link(device) if h is not None and device else None
    peer = bundle.host(link.peer_host) if link is not None and link.peer_host else None
    return [Where.node_loc(peer)] if peer is not None else []


def first_reply_host(hops) -> str | None:
    """The namespace that answered: where the reply packet was first seen."""
    return next((h.host for h in hops if h.direction == "reply" and h.probe in PACKET_PROBES), None)


SYN_RTO_NS = 990_000_000  # the kernel resends an unanswered SYN after 1 s, with the same sequence number


def _answer_dropped_at_source(drops, inj, where, src_host) -> bool:
    """The answer reached the source pod's eth0 but the socket never got it: dropped inside the pod."""
    if inj.proto == "tcp" or inj.answer not in (None, "none") or src_host is None:
        return False
    return any("reply" in d.flags and getattr(where.host(d.netns), "name", None) == src_host.name for d in drops)


def first_tcp_packets(events, t_send: int | None = None) -> list:
    """A TCP trace sends a SYN; the handshake's ACK and the close that follow are not the test
    packet, nor is the SYN the kernel resends after 1 s. Keep the first SYN (its sequence number,
    before the first retransmission) and the first answer (SYN-ACK or RST); route and neighbour
    events only until the answer is back."""
    evs = sorted(events, key=lambda e: e.ts_ns)
    if t_send is not None:
        evs = [e for e in evs if e.ts_ns < t_send + SYN_RTO_NS]
    pkt = [e for e in evs if e.kind not in ("fib", "neigh")]
    req = next((e.tcp_seq for e in pkt if e.proto == "tcp" and "reply" not in e.flags and "matched" in e.flags), None)
    rep = next((e.tcp_seq for e in pkt if e.proto == "tcp" and "reply" in e.flags), None)
    done = next((e.ts_ns for e in evs if e.proto == "tcp" and "reply" in e.flags and e.tcp_seq == rep
                 and e.kind == "tc" and e.point == "ingress"), None)
    out = []
    for e in evs:
        if e.kind in ("fib", "neigh"):
            if done is None or e.ts_ns <= done:
                out.append(e)
        elif e.proto != "tcp":
            out.append(e)  # not parsed (or another protocol): keep, tracking tied it to ours
        elif e.tcp_seq == (rep if "reply" in e.flags else req):
            out.append(e)
    return out


def reached_pod(hops, bundle, src_host):
    """The pod the request arrived in (a Service's endpoint): the first pod ingress past the source."""
    for h in hops:
        if h.direction == "request" and h.point == "ingress" and h.host and h.host != getattr(src_host, "name", None):
            host = bundle.host(h.host)
            if host is not None and host.kind == "pod":
                return host
    return None


@dataclass
class Observation:
    """What the probes saw, placed in the snapshot: the observe stage's output."""

    where: Where
    events: list  # of this snapshot's namespaces (and, for TCP, of the first SYN and its answer only)
    passes: list  # hooks.HookPass: each pass through a netfilter hook
    hops: list[ObservedHop]
    drops: list  # kfree_skb events, in time order
    t0: int  # the time base of every hop
    svc: object | None  # service.ServiceHop when the flow went to a Service
    src_host: object | None
    dst_host: object | None  # for a Service or an IP: the endpoint DNAT chose, or the pod reached
    flow: dict


@dataclass
class Judgement:
    """The verdict stage's output: what happened, where it stopped, and the question for explain."""

    verdict: Verdict
    hops: list[ObservedHop]  # the observed hops, with the drop point when there was one
    stop: StopPoint | None = None  # None: nothing to explain (delivered)
    fallback: tuple[Cause, str, str] | None = None  # (cause, message tail, fix) when no finding explains it


@dataclass
class Explanation:
    """The explain stage's output: the finding behind the verdict, and what it changes."""

    finding: object | None
    status: str
    place: tuple | None = None  # (node, location, device) where the fix applies, when not the stop point
    notes: list[str] = field(default_factory=list)  # message sentences, in order
    stale_conntrack: bool = False  # the Service's endpoint came from a stale conntrack entry


def observe(session, bundle, diagnosis, src_host, dst_host) -> Observation:
    from .service import service_hop

    where = Where(bundle)
    # Only namespaces of this snapshot: on a node those are the node's own (in the lab, where one
    # kernel holds every node, another node's route lookups would otherwise show up here)
    events = [e for e in session.events if not e.netns or where.host(e.netns) is not None]
    if session.inject.proto == "tcp":
        events = first_tcp_packets(events, session.inject.t_first_send_ns)
    passes = hook_passes(events)
    hops = observed_hops(events, where)
    if events:
        t_first = min(e.ts_ns for e in events)
        extra = netfilter_hops(passes, where, t_first) + kernel_hops(events, where, t_first, src_host, dst_host,
                                                                  session.inject.send_windows)
        hops = sorted(hops + extra, key=lambda h: h.time)
    svc = service_hop(diagnosis, bundle, passes, where)
    if dst_host is None or dst_host.kind != "pod":  # a Service: the endpoint DNAT chose; an IP: the pod reached
        chosen = bundle.host(svc.endpoint_pod) if svc is not None and svc.endpoint_pod else None
        dst_host = chosen or reached_pod(hops, bundle, src_host) or dst_host
    main = diagnosis.paths[0] if diagnosis.paths else None
    known = main is None or (dst_host is not None and dst_host.kind == "pod")
    # the destination's node otherwise as the expected path has it (the endpoint, the node it leaves for)
    assign_observed(hops, ends(bundle, src_host, dst_host) if known else path_ends(bundle, main, src_host, dst_host))
    inj = session.inject
    flow = dataclasses.asdict(diagnosis.flow) if diagnosis.flow else {}
    if inj.sport:
        flow["sport"] = inj.sport
    if inj.icmp_id:
        flow["icmp_id"] = inj.icmp_id
    return Observation(where=where, events=events, passes=passes, hops=hops,
                       drops=sorted([e for e in events if e.kind == "kfree_skb"], key=lambda e: e.ts_ns),
                       t0=min((e.ts_ns for e in events), default=0), svc=svc, src_host=src_host, dst_host=dst_host,
                       flow=flow)


def judge(obs: Observation, session, bundle, diagnosis, dst: str) -> Judgement:
    """The verdict from the kernel's events alone: delivered, dropped (where, by what reason),
    rejected, misdelivered, lost or unsent; and where to look for the finding that explains it."""
    where, hops, drops, flow, inj = obs.where, list(obs.hops), obs.drops, obs.flow, session.inject
    src_host, dst_host = obs.src_host, obs.dst_host
    src_node, src_loc = Where.node_loc(src_host)
    src_name, dst_name = (src_host.name if src_host else None), (dst_host.name if dst_host else None)
    if inj.unsent:
        v = Verdict("unsent", node=src_node, location=src_loc, device="eth0", errno=inj.error)
        d = next(iter(drops), None)
        if d is not None:
            v.drop_reason, v.drop_location = d.drop_reason, d.location_sym
        v.message = f"the source could not send: {inj.error} ({inj.message})"
        return Judgement(v, hops, StopPoint(src_node, src_loc, None, drop_reason=v.drop_reason))
    if session.answered and not _answer_dropped_at_source(drops, inj, where, src_host):
        v = Verdict("delivered")
        answerer = where.hosts.get(first_reply_host(hops) or "")
        if (answerer is not None and answerer.kind == "pod" and dst_host is not None and dst_host.kind == "pod"
                and answerer.name != dst_name):  # another namespace answered in the destination's name
            v.status = "misdelivered"
            v.node, v.location = Where.node_loc(answerer)
            v.device = "eth0"
            v.stopped_at = f"{v.node}/{v.location}"
            v.message = f"{answerer.name} answered in place of {dst}"
            return Judgement(v, hops, StopPoint(v.node, v.location, "eth0", drop_reason="OTHERHOST"))
        if inj.proto == "tcp" and inj.answer == "refused":
            v.status = "rejected"
            if answerer is not None:
                v.node, v.location = Where.node_loc(answerer)
            elif hops:
                v.node, v.location = hops[-1].node, hops[-1].location
            from_dst = answerer is not None and answerer.name == dst_name
            v.message = f"{'the destination' if from_dst else f'{v.node}/{v.location}'} answered with a TCP RST"
            fallback = (Cause.NO_LISTENER, f": nothing listens on port {flow.get('dport')}",
                        f"start the server on port {flow.get('dport')} in {dst}, or check the Service's targetPort") \
                if from_dst else None
            return Judgement(v, hops, StopPoint(v.node, v.location, None), fallback)
        v.message = "the answer came back to the source"
        return Judgement(v, hops)
    if inj.proto == "udp" and not session.expect_reply and not drops and dst_host is not None and any(
            h.direction == "request" and h.point == "ingress" and h.host == dst_host.name for h in hops):
        return Judgement(Verdict("delivered", message=f"the datagram reached {dst} (udp: no answer is required)",
                                 no_answer_expected=True), hops)
    reached = {h.host for h in hops if h.direction == "request" and h.point == "ingress"}
    if dst_host is not None and dst_host.name in reached:
        # a bridge that forgot the destination's MAC floods: the copies other pods drop as
        # OTHERHOST are not what happened to the packet that arrived
        drops = [d for d in drops if d.drop_reason != "OTHERHOST"
                 or getattr(where.host(d.netns), "name", None) == dst_host.name]
    relevant = [d for d in drops if "reply" not in d.flags] or drops
    if relevant:
        return _dropped(relevant[0], obs, hops, bundle, src_name, dst_name, dst)
    packet_hops = [x for x in hops if x.probe in PACKET_PROBES]  # not route/neighbour decisions
    last = packet_hops[-1] if packet_hops else None
    v = Verdict("lost", node=last.node if last else src_node, location=last.location if last else src_loc,
                device=last.device if last else "eth0", direction=last.direction if last else "request")
    stop = StopPoint(v.node, v.location, v.device, status="lost")
    v.stopped_at = f"{last.node}/{last.location} {last.device or ''}".strip() if last else None
    seen_at = (f"{last.node}/{last.location} " + (f"in the {last.point} hook" if last.probe == "netfilter"
                                                   else f"{last.device} {last.point}")) if last else None
    v.message = "no drop event: last seen at " + (seen_at or "nothing (not sent?)")
    left = next((h for p in diagnosis.paths[:1] for h in p.hops if h.reason == Reason.LEFT_NODE), None)
    if left is not None and last is not None and last.direction == "request" and last.node == left.node \
            and last.location == "host" and last.device == left.device:
        remote = left.payload.remote
        v.location = f"left {left.node}"
        v.message = (f"it left {left.node} on {left.device} for {remote}; {remote} was not observed "
                     f"(run podpath on {remote} too, or trace through the per-node agents)")
    elif last is not None and last.direction == "request" and session.observed_nodes:
        nxt = next_node_after(diagnosis, last)
        if nxt is not None and nxt[0] in session.observed_nodes:
            # the next node's agent watched and saw nothing: it died on the wire between them,
            # where no agent looks; what the snapshot says of the far end (its MTU) may explain it
            v.location = f"left {last.node}"
            v.message = (f"it left {last.node} on {last.device} for {nxt[0]}, whose agent saw it never "
                         f"arrive: lost on the network between them")
            stop.peers = [nxt]
    return Judgement(v, hops, stop)


def next_node_after(diagnosis, last) -> tuple[str, str] | None:
    """(node, location) where the expected path goes on after the node the packet was last seen
    on (the request's first hop on another node), or None."""
    hops = [h for p in diagnosis.paths[:1] for h in p.hops if h.direction == "request"]
    at = next((i for i, h in enumerate(hops) if (h.node, h.location, h.device) ==
               (last.node, last.location, last.device)), None)
    if at is None:
        return None
    return next(((h.node, h.location) for h in hops[at + 1:] if h.node and h.node != last.node), None)


def _dropped(d, obs: Observation, hops, bundle, src_name, dst_name, dst: str) -> Judgement:
    """A kfree_skb of the test packet: where, in which hook and base chain, and by what reason."""
    where, t0 = obs.where, obs.t0
    h = where.host(d.netns)
    req_hops = [x for x in hops if x.time <= d.ts_ns - t0 and x.probe in PACKET_PROBES]
    last = req_hops[-1] if req_hops else (hops[-1] if hops else None)
    dev = where.device(d.netns, d.ifindex)
    if h is None and last is not None:
        node, loc, host_name = last.node, last.location, last.host
    else:
        node, loc = Where.node_loc(h)
        host_name = h.name if h else None
    if dev is None and last is not None and last.host == host_name:
        dev = last.device
    v = Verdict("dropped", node=node, location=loc, device=dev, drop_reason=d.drop_reason,
                drop_location=d.location_sym)
    taken = pass_before(obs.passes, d)
    detail = None
    chains, links = [], []
    if taken is not None:  # the kernel's own word on the hook, and the brackets' on the table
        v.hook = taken.hook
        lo, hi = taken.stopped_between()
        chains = chains_in_gap(h, taken.hook, lo, hi) if h is not None else []
        links = nf_links_in_gap(h, taken.hook, lo, hi)
        v.table = ", ".join(chains + [f"BPF netfilter link {a.link_id} ({a.name}, priority {a.priority})"
                                      for a in links]) or f"a base chain between priorities {lo} and {hi}"
        detail = f"taken in {taken.hook} by {v.table}"
    hops = hops + [ObservedHop(node=node, location=loc, device=dev, point="drop",
                               direction="reply" if "reply" in d.flags else "request", time=d.ts_ns - t0,
                               host=host_name, probe="kfree_skb", segment=last.segment if last else None,
                               detail=detail)]
    stop = StopPoint(node, loc, dev, drop_reason=d.drop_reason, status="dropped", hook=v.hook,
                drop_location=d.location_sym, peers=peer_places(bundle, host_name, dev),
                foreign_link=links[0].text() if links and not chains else None)
    v.stopped_at = f"{node}/{loc}" + (f" {dev}" if dev else "")
    v.direction = "reply" if "reply" in d.flags else "request"
    what = "the reply" if v.direction == "reply" else "it"
    v.message = f"the kernel dropped {what} at {v.stopped_at}" + \
        (f", {detail}" if detail else "") + f" ({d.drop_reason} in {d.location_sym or '?'})"
    dst_host = obs.dst_host
    if h is not None and h.kind == "pod" and dst_host is not None and dst_host.kind == "pod" \
            and h.name not in (src_name, dst_name):
        v.status = "misdelivered"  # it reached a pod it was not sent to
        v.message = f"it reached {h.name}, not {dst}; " + v.message
    return Judgement(v, hops, stop)


def explain_verdict(j: Judgement, obs: Observation, findings) -> Explanation:
    """The finding that explains the verdict, preferring the root cause to its symptom; where the
    fix applies when that is not the stop point (a stale DNAT, a node that sent it astray)."""
    v = j.verdict
    f = explain(j.stop, findings) if j.stop is not None else None
    x = Explanation(finding=f, status=v.status)
    if f is not None and f.rejects and x.status == "dropped":
        x.status = "rejected"
    svc, flow = obs.svc, obs.flow
    if svc is not None and svc.endpoint and not svc.endpoint_pod and x.status in ("dropped", "lost"):
        # NAT sent it to an address nobody has: that rule or conntrack entry, not the far-away ARP failure
        ip = svc.endpoint.split(":")[0]
        stale = next((g for g in findings if g.cause in (Cause.IPTABLES, Cause.DNS) and g.conntrack is not None
                      and (g.conntrack.proto, g.conntrack.src, g.conntrack.reply_src) ==
                      (flow.get("proto"), flow.get("src"), ip)), None)
        x.stale_conntrack = stale is not None
        stale = stale or next((g for g in findings if g.cause == Cause.IPTABLES and g.dnat_to == ip), None)
        if stale is not None:
            x.finding = stale
            who = "a stale conntrack entry" if x.stale_conntrack or svc.conntrack else "kube-proxy's DNAT"
            x.notes.append(f"{who} at {svc.node} sent it to {svc.endpoint}, which no pod has")
            x.place = (stale.node, stale.location, None)
    f = x.finding
    if x.status in ("dropped", "lost", "misdelivered") and f is None:
        # the packet left the expected path: blame the last place before the stop point that a
        # snapshot finding explains (a node that routed it the wrong way, a wrong FDB entry...)
        seen: list[tuple] = []
        for h in reversed([h for h in j.hops if h.point != "drop" and h.direction == "request"]):
            if (h.node, h.location) in seen or (h.node, h.location) == (v.node, v.location):
                continue
            seen.append((h.node, h.location))
            f = explain(StopPoint(h.node, h.location, h.device), findings)
            if f is not None:  # it was sent where it should not go: the divergence is here
                x.finding = f
                x.notes.append(f"it went astray at {h.node}/{h.location}")
                if x.status == "dropped":
                    x.status = "misdelivered"
                    x.place = (f.node, f.location, f.device or h.device)
                break
    at = x.place[:2] if x.place else (v.node, v.location)
    if x.status == "misdelivered" and f is not None and (f.node, f.location) != at and f.cause in ROOT_FIRST:
        x.place = (f.node, f.location, f.device)  # where the fix applies
    return x


def annotate(j: Judgement, x: Explanation, obs: Observation, diagnosis) -> Verdict:
    """The verdict as printed: the finding's cause, evidence and fix, one message, the kernel's
    decisions where it went wrong, and the hops' time base."""
    v, f, hops, svc = j.verdict, x.finding, j.hops, obs.svc
    v.status = x.status
    if x.place is not None:
        v.node, v.location, v.device = x.place
    if x.stale_conntrack:
        svc.conntrack, svc.chain = True, []
    v.message += "".join(f"; {n}" for n in x.notes)
    if v.status != "delivered":
        if f is not None:
            v.cause = f.cause
            v.evidence = evidence_of(f)
            v.fix = f.fix
            v.hand_check = f.hand_check
            v.hook = v.hook or f.hook
            v.message += f"; {f.message}"
            if v.device is None:
                v.device = f.device
        elif j.fallback is not None:
            v.cause, tail, v.fix = j.fallback
            v.message += tail
        else:
            v.cause = Cause.UNKNOWN
            if v.drop_reason:
                v.message += f"; no snapshot object explains {v.drop_reason}"
    if v.status != "delivered":  # what the kernel decided where it went wrong
        places = {(v.node, v.location)} | {(h.node, h.location) for h in hops if h.point == "drop"}
        v.kernel = [f"{h.node}/{h.location}: {h.detail}" for h in hops
                    if h.probe in ("fib", "neigh") and (h.node, h.location) in places and h.direction == "request"]
    base = min((h.time for h in hops), default=0)
    for h in hops:  # time 0 = the first hop shown
        h.time -= base
    if svc is not None and v.status == "delivered" and svc.endpoint:
        v.message += f"; {svc.name} → {svc.endpoint_pod or svc.endpoint} ({svc.endpoint}), DNAT at " \
                     f"{svc.node} {svc.hook}"
    return v


def correlate(*, session, bundle, diagnosis, src_host, dst_host, src: str, dst: str) -> Trace:
    """observe → judge → explain → annotate: each stage a function of the ones before."""
    obs = observe(session, bundle, diagnosis, src_host, dst_host)
    j = judge(obs, session, bundle, diagnosis, dst)
    x = explain_verdict(j, obs, diagnosis.findings)
    v = annotate(j, x, obs, diagnosis)
    inj = session.inject
    return Trace(src=src, dst=dst, flow=obs.flow, verdict=v, hops=j.hops,
                 service=obs.svc.to_dict() if obs.svc else None,
                 expected_outcome=diagnosis.paths[0].outcome if diagnosis.paths else None,
                 lost_events=session.lost, timings=dict(session.timings), attach_errors=list(session.attach_errors),
                 inject=inj.to_dict())


def verdict_host(bundle, v: Verdict):
    """The snapshot host the verdict points at (a pod by name, else the node's host namespace)."""
    if v.location and v.location != "host":
        return bundle.host(v.location)
    return bundle.host(v.node) if v.node else None


def wants_counters(v: Verdict) -> bool:
    """A netfilter drop: the rule counters, read again, can confirm or correct the rule."""
    return v.status in ("dropped", "rejected") and (v.drop_reason == "NETFILTER_DROP" or v.hook is not None)


def apply_counters(v: Verdict, before_host, after_host) -> None:
    """Join the rule counters' word with the verdict: confirm the model's rule, or name the rule the
    kernel really counted when the model predicted another one."""
    from .counters import deltas

    found = deltas(before_host, after_host)
    if v.table:  # only rules of the tables the brackets point at
        in_gap = [d for d in found if f"{d.rule.backend} {d.rule.table}/" in v.table]
        found = in_gap or found
    if not found:
        return
    predicted = {e.get("object") for e in v.evidence if e.get("kind") == "rule"}
    hit = next((d for d in found if d.rule.text in predicted), None)
    if hit is not None:
        v.counter = hit.describe()
        v.message += f"; confirmed by its packet counter (+{hit.packets})"
        _fix_from_kernel(v, after_host, hit.rule, "the rule that counted the test packet")
        return
    if len(found) == 1:
        d = found[0]
        v.counter = d.describe()
        node, loc = v.node, v.location
        v.evidence = [{"kind": "rule", "node": node, "location": loc, "object": d.rule.text}] + v.evidence
        v.fix = ns_cmd(after_host, d.rule.command()) + "  # the rule that counted the test packet"
        v.hand_check = False
        v.cause = v.cause if v.cause in NETFILTER_CAUSES else Cause.IPTABLES
        v.message += (f"; the rule counters name {d.describe()}" +
                      (" (the snapshot's model predicted another rule)" if predicted else ""))
    else:
        v.message += "; rule counters rose on several DROP/REJECT rules: " + "; ".join(d.describe() for d in found)


def apply_nftrace(v: Verdict, bundle, lines) -> None:
    """--nftrace: the decisive trace line in the verdict's namespace names the rule for certain;
    it replaces the model's and the counters' rule when they differ."""
    from .nftrace import rule_for

    host = verdict_host(bundle, v)
    if host is None or v.status not in ("dropped", "rejected", "misdelivered"):
        return
    decisive = [x for x in lines if x.decisive and x.netns == probe_netns(host)]
    if not decisive:
        if lines and (v.drop_reason == "NETFILTER_DROP" or v.hook):
            v.message += "; nftrace saw no nf_tables rule drop it there (iptables-legacy?)"
        return
    line = decisive[0]
    what = "policy" if line.kind == "policy" else f"rule (handle {line.handle})"
    v.nftrace = f"{line.family} {line.table} {line.chain} {what}: {line.text} (verdict {line.verdict})"
    ref = rule_for(host, line)
    if ref is None:
        return
    predicted = {e.get("object") for e in v.evidence if e.get("kind") == "rule"}
    if ref.text in predicted:
        v.message += "; nftrace confirms the rule"
        _fix_from_kernel(v, host, ref, "the rule nftrace saw drop the test packet")
        return
    v.evidence = [{"kind": "rule", "node": v.node, "location": v.location, "object": ref.text}] + v.evidence
    v.fix = ns_cmd(host, ref.command()) + "  # the rule nftrace saw drop the test packet"
    v.hand_check = False
    v.cause = v.cause if v.cause in NETFILTER_CAUSES else Cause.IPTABLES
    v.message += f"; nftrace: {ref.backend} {ref.table}/{ref.chain} rule {ref.number} dropped it: {ref.text}"


def _fix_from_kernel(v: Verdict, host, ref, why: str) -> None:
    """The model could not evaluate the rule it blamed (an unsupported match), but the kernel says
    it took the packet: the fix is that rule's command, not 'check it by hand'."""
    if v.fix and not v.hand_check:
        return
    v.fix = ns_cmd(host, ref.command()) + f"  # {why}"
    v.hand_check = False
    v.cause = v.cause if v.cause in NETFILTER_CAUSES else Cause.IPTABLES


def trace_from_dict(d: dict) -> Trace:
    """A Trace back from its JSON (trace -o json, or a DNS lookup's traced query)."""
    v = Verdict(**d["verdict"])
    hops = [ObservedHop(**h) for h in d.get("hops", [])]
    return Trace(src=d["src"], dst=d["dst"], flow=d.get("flow", {}), verdict=v, hops=hops,
                 expected_outcome=d.get("expected_outcome"), lost_events=d.get("lost_events", 0),
                 timings=d.get("timings", {}), attach_errors=d.get("attach_errors", []),
                 inject=d.get("inject", {}), service=d.get("service"), not_observed=d.get("not_observed", []))
