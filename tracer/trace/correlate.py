"""Observed events → hops, one verdict, and the snapshot finding that explains it.

Input: the session's events (probes.Event), what the injector saw, the snapshot the expected path
came from, and diagnose's result for the same flow. Output: a Trace (JSON per DESIGN.md's
`podpath trace -o json` contract): `verdict.{status,cause,node,location,device,hook,drop_reason,
evidence,fix}` and `hops` ({node, location, device, point, direction, time}).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from ..model.path import SEGMENTS
from ..netns import netns_path

# a finding's cause → the evidence kind its object is
EVIDENCE_KIND = {"pod_route": "route", "host_route": "route", "iptables": "rule", "dns": "rule", "ipvs": "ipvs",
                 "ip_conflict": "addr", "link_down": "link", "arp": "neigh", "fdb": "fdb", "ip_forward": "sysctl",
                 "rp_filter": "sysctl", "mtu": "link", "bridge_port": "link", "no_listener": "listener"}
NETFILTER_CAUSES = ("iptables", "dns", "ipvs")
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


@dataclass
class Verdict:
    status: str  # delivered, dropped, rejected, misdelivered, lost, unsent
    cause: str | None = None
    node: str | None = None
    location: str | None = None
    device: str | None = None
    hook: str | None = None
    drop_reason: str | None = None
    drop_location: str | None = None  # kernel symbol+offset of kfree_skb
    evidence: list[dict] = field(default_factory=list)
    fix: str | None = None
    message: str = ""
    errno: str | None = None  # unsent: the send error


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

    @property
    def delivered(self) -> bool:
        return self.verdict.status == "delivered"

    def to_dict(self) -> dict:
        return {"src": self.src, "dst": self.dst, "flow": self.flow, "verdict": dataclasses.asdict(self.verdict),
                "hops": [dataclasses.asdict(h) for h in self.hops], "expected_outcome": self.expected_outcome,
                "lost_events": self.lost_events, "timings": self.timings, "attach_errors": self.attach_errors,
                "inject": self.inject}


class Where:
    """(netns inode, ifindex) → (host, device), from the snapshot and the namespaces' inodes."""

    def __init__(self, bundle) -> None:
        self.hosts = {h.name: h for h in bundle.hosts}
        self.by_ino: dict[int, object] = {}
        self.dev: dict[tuple[int, int], str] = {}
        for h in bundle.hosts:
            if not h.netns:
                continue
            try:
                ino = os.stat(netns_path(h.netns)).st_ino
            except OSError:
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
        if h is None:
            return None, "?"
        if h.kind == "pod":
            return h.node, h.name
        return (h.node or h.name), "host"


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


def assign_segments(hops: list[ObservedHop], bundle, src_host, dst_host) -> None:
    inv = getattr(bundle, "inventory", None)
    underlay = {n.name: n.underlay_dev for n in (inv.nodes if inv else [])}
    pods = {p.name: p for p in (inv.pods if inv else [])}
    src_node = src_host.node if src_host else None
    dst_node = dst_host.node if dst_host else None
    dst_veth = pods[dst_host.name].host_veth if dst_host and dst_host.name in pods else None
    for h in hops:
        if h.direction == "reply":
            h.segment = SEGMENTS[3]
        elif src_host and h.host == src_host.name:
            h.segment = SEGMENTS[0]
        elif dst_host and h.host == dst_host.name:
            h.segment = SEGMENTS[2]
        elif h.location == "host" and h.node == src_node:
            if h.device == underlay.get(h.node, "eth0"):
                h.segment = SEGMENTS[1]
            elif src_node == dst_node and (h.device == dst_veth or (h.point == "egress" and h.device == "cni0")):
                h.segment = SEGMENTS[2]
            else:
                h.segment = SEGMENTS[0]
        elif h.location == "host" and h.node == dst_node:
            h.segment = SEGMENTS[1] if h.device == underlay.get(h.node, "eth0") else SEGMENTS[2]
        else:
            h.segment = SEGMENTS[1]


def _evidence(f) -> list[dict]:
    ev = [dataclasses.asdict(e) for e in (f.evidence or [])]
    if not ev and f.object:
        ev = [{"kind": EVIDENCE_KIND.get(f.cause, "object"), "node": f.node, "location": f.location,
               "object": f.object}]
    return ev


def pick_finding(findings, *, node, location, device, drop_reason=None, hosts=(), status=None):
    """The diagnose finding that explains the observed stop point, or None."""
    errs = [f for f in findings if f.severity == "error"] or list(findings)
    cands = [f for f in errs if f.node == node and f.location == location]
    if drop_reason == "NETFILTER_DROP":
        nf = [f for f in cands if f.cause in NETFILTER_CAUSES] or \
             [f for f in errs if f.cause in NETFILTER_CAUSES and f.node == node]
        if nf:
            return nf[0]
    if cands:
        exact = [f for f in cands if device and f.device == device]
        return (exact or cands)[0]
    if status == "lost" or drop_reason not in (None, "NETFILTER_DROP"):
        # the packet vanished after the last hop we saw: a finding on a host it had reached
        near = [f for f in errs if f.node == node]
        if near:
            return near[0]
    return None


def correlate(*, session, bundle, diagnosis, src_host, dst_host, src: str, dst: str) -> Trace:
    where = Where(bundle)
    events = session.events
    hops = observed_hops(events, where)
    assign_segments(hops, bundle, src_host, dst_host)
    inj = session.inject
    flow = dataclasses.asdict(diagnosis.flow) if diagnosis.flow else {}
    if inj.sport:
        flow["sport"] = inj.sport
    if inj.icmp_id:
        flow["icmp_id"] = inj.icmp_id
    t0 = min((e.ts_ns for e in events), default=0)
    findings = diagnosis.findings
    src_node, src_loc = Where.node_loc(src_host)
    v: Verdict

    drops = sorted([e for e in events if e.kind == "kfree_skb"], key=lambda e: e.ts_ns)
    if inj.unsent:
        v = Verdict("unsent", node=src_node, location=src_loc, device="eth0", errno=inj.error)
        d = next(iter(drops), None)
        if d is not None:
            v.drop_reason, v.drop_location = d.drop_reason, d.location_sym
        f = pick_finding(findings, node=src_node, location=src_loc, device=None, drop_reason=v.drop_reason)
        v.message = f"the source could not send: {inj.error} ({inj.message})"
    elif session.answered:
        v = Verdict("delivered")
        if inj.proto == "tcp" and inj.answer == "refused":
            v.status = "rejected"
        f = None
        if v.status == "rejected":
            dst_node, dst_loc = Where.node_loc(dst_host)
            from_dst = any(h.direction == "reply" and h.host == (dst_host.name if dst_host else None) for h in hops)
            v.node, v.location = (dst_node, dst_loc) if from_dst else (hops[-1].node, hops[-1].location)
            f = pick_finding(findings, node=v.node, location=v.location, device=None)
            v.message = f"{'the destination' if from_dst else v.node + '/' + v.location} answered with a TCP RST"
            if f is None and from_dst:
                v.cause = "no_listener"
                v.message += f": nothing listens on port {flow.get('dport')}"
                v.fix = f"start the server on port {flow.get('dport')} in {dst}, or check the Service's targetPort"
        else:
            v.message = "the answer came back to the source"
    elif inj.proto == "udp" and not drops and dst_host is not None and any(
            h.direction == "request" and h.point == "ingress" and h.host == dst_host.name for h in hops):
        v = Verdict("delivered", message=f"the datagram reached {dst} (udp: no answer is required)")
        f = None
    else:
        relevant = [d for d in drops if "reply" not in d.flags] or drops
        if relevant:
            d = relevant[0]
            h = where.host(d.netns)
            req_hops = [x for x in hops if x.time <= d.ts_ns - t0]
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
            hops.append(ObservedHop(node=node, location=loc, device=dev, point="drop",
                                    direction="reply" if "reply" in d.flags else "request", time=d.ts_ns - t0,
                                    host=host_name, probe="kfree_skb", segment=last.segment if last else None))
            f = pick_finding(findings, node=node, location=loc, device=dev, drop_reason=d.drop_reason,
                             status="dropped")
            v.message = f"the kernel dropped it at {node}/{loc}" + (f" {dev}" if dev else "") + \
                f" ({d.drop_reason} in {d.location_sym or '?'})"
        else:
            last = hops[-1] if hops else None
            v = Verdict("lost", node=last.node if last else src_node, location=last.location if last else src_loc,
                        device=last.device if last else "eth0")
            f = pick_finding(findings, node=v.node, location=v.location, device=v.device, status="lost")
            v.message = ("no drop event: last seen at " +
                         (f"{last.node}/{last.location} {last.device} {last.point}" if last else "nothing (not sent?)"))
        if f is not None and f.object and "REJECT" in f.object and v.status == "dropped":
            v.status = "rejected"
    if v.status in ("dropped", "lost") and f is None:
        # the packet left the expected path: blame the last place before the stop point that a
        # snapshot finding explains (a node that routed it the wrong way, a wrong FDB entry...)
        seen: list[tuple] = []
        for h in reversed([h for h in hops if h.point != "drop" and h.direction == "request"]):
            if (h.node, h.location) in seen or (h.node, h.location) == (v.node, v.location):
                continue
            seen.append((h.node, h.location))
            f = pick_finding(findings, node=h.node, location=h.location, device=h.device)
            if f is not None:
                v.message += f"; it went astray after {h.node}/{h.location}"
                break
    if v.status != "delivered":
        if f is not None:
            v.cause = f.cause
            v.evidence = _evidence(f)
            v.fix = f.fix
            v.hook = f.hook
            v.message += f"; {f.message}"
            if v.device is None:
                v.device = f.device
        elif v.cause is None:
            v.cause = "unknown"
            if v.drop_reason:
                v.message += f"; no snapshot object explains {v.drop_reason}"
    return Trace(src=src, dst=dst, flow=flow, verdict=v, hops=hops,
                 expected_outcome=diagnosis.paths[0].outcome if diagnosis.paths else None,
                 lost_events=session.lost, timings=dict(session.timings), attach_errors=list(session.attach_errors),
                 inject=inj.to_dict())
