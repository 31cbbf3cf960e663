"""DESIGN's four segments of a pod-to-pod path, and the one rule that gives hops and findings theirs.

A hop's segment is where it is, never where it falls in a list: the source pod's namespace is
pod A → host A, the destination pod's is host B → pod B; on a node, the devices that lead to
other nodes (the underlay and the VXLAN device) are host A → host B, and so is the VXLAN packet
itself wherever it is; the rest of the source's node is pod A → host A, of the destination's node
host B → pod B. On the node that holds both pods (host A is host B) the packet's arrival (ingress,
the prerouting and input hooks, IPVS in input, a route to the host itself) is pod A → host A, and
what sends it on towards pod B (the route, the later hooks, neighbour, bridge, egress) host B → pod
B, as on a destination node. Anything between the nodes (the underlay's switch) is host A → host B;
the reply is end to end.
diagnose (expected hops), trace (observed hops) and findings no hop placed all ask `segment()`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field

from .path import SEGMENTS, Path
from .reasons import Reason
from .topology import place

UNDERLAY_DEFAULT = "eth0"  # a node's underlay device when the inventory does not say
POD_A, BETWEEN, POD_B, END_TO_END = SEGMENTS
# hooks that run before the route decision (the packet's device is the one it came in by); the
# others (forward, output, postrouting) run after it (the device it leaves by)
HOOKS_BEFORE_ROUTING = ("prerouting", "input")
ARRIVAL = (None, "ingress") + HOOKS_BEFORE_ROUTING  # None: a finding, placed by its device alone


@dataclass(frozen=True)
class Ends:
    """Where the flow's two pods are: all a hop's segment depends on besides the hop itself."""

    src: str | None = None  # the source's namespace (Host.name); None: not in the snapshot
    dst: str | None = None  # the destination pod's (a Service's: the endpoint reached)
    src_node: str | None = None
    dst_node: str | None = None
    dst_veth: str | None = None  # the destination pod's host-side veth on its node
    between: dict[str, frozenset[str]] = field(default_factory=dict)  # node -> its devices to other nodes


def ends(bundle, src_host, dst_host, src_node: str | None = None, dst_node: str | None = None) -> Ends:
    """The Ends of a flow between two snapshot hosts (either may be None: outside the snapshot, whose
    node may still be named)."""
    inv = getattr(bundle, "inventory", None)
    underlay = {n.name: n.underlay_dev for n in (inv.nodes if inv else [])}
    between: dict[str, frozenset[str]] = {}
    for h in bundle.hosts:
        if h.kind != "node":
            continue
        node = place(h)[0]
        between[node] = frozenset({l.name for l in h.links if l.kind == "vxlan"}
                                  | {underlay.get(node) or UNDERLAY_DEFAULT})
    pods = {p.name: p for p in (inv.pods if inv else [])}
    dst_veth = pods[dst_host.name].host_veth if dst_host is not None and dst_host.name in pods else None
    if dst_veth is None and dst_host is not None:  # no inventory row (a pasted bundle): the veth's peer
        dst_veth = next((l.peer_name for l in dst_host.links if l.kind == "veth" and l.peer_name), None)
    return Ends(src=src_host.name if src_host is not None else None,
                dst=dst_host.name if dst_host is not None else None,
                src_node=_node_of(bundle, src_host) if src_host is not None else src_node,
                dst_node=_node_of(bundle, dst_host) if dst_host is not None else dst_node,
                dst_veth=dst_veth, between=between)


def _node_of(bundle, host) -> str | None:
    """A namespace's node; a pod no inventory places (a pasted bundle): the node its veth leads to."""
    node = place(host)[0]
    if node is None:
        peers = (bundle.host(l.peer_host) for l in host.links if l.kind == "veth" and l.peer_host)
        node = next((place(p)[0] for p in peers if p is not None and p.kind == "node"), None)
    return node


def segment(e: Ends, *, host: str | None, node: str | None, location: str, device: str | None,
            point: str | None = None, direction: str = "request", outer: bool = False) -> str:
    """point: the hop's point, or the hook it ran in (None: a finding, placed by its device)."""
    if direction == "reply":
        return END_TO_END
    if outer:
        return BETWEEN
    if host is not None and host == e.src:
        return POD_A
    if host is not None and host == e.dst:
        return POD_B
    if location != "host":  # another pod: it got the packet where pod B should have
        return POD_B
    if device is not None and device in e.between.get(node, ()):
        return BETWEEN
    if node is not None and node == e.dst_node and (node != e.src_node or device == e.dst_veth
                                                     or (point not in ARRIVAL and device != "lo")):
        return POD_B
    if node is not None and node == e.src_node:
        return POD_A
    return BETWEEN


def assign_path(path: Path, e: Ends) -> None:
    """Expected hops (diagnose). The model's hops between an encap and its decap are the VXLAN
    packet itself (a route to the node's own address says `lo`, not where the packet is)."""
    outer, direction = False, None
    for h in path.hops:
        if h.direction != direction:
            outer, direction = False, h.direction
        if h.point == "decap":
            outer = False
        h.segment = segment(e, host=h.host, node=h.node, location=h.location, device=h.device,
                            point=h.hook or h.point, direction=h.direction, outer=outer)
        if h.point == "encap":
            outer = True


def path_ends(bundle, path: Path, src_host, dst_host, src_node: str | None = None) -> Ends:
    """One expected path's Ends: its destination is the pod it delivers to, else the one its DNAT
    chose (a Service's endpoint on this alternative), or the node it leaves this snapshot for."""
    reached = next((h.host for h in reversed(path.hops) if h.direction == "request" and h.location != "host"
                    and (src_host is None or h.host != src_host.name)), None)
    if reached is not None and bundle.host(reached) is not None:
        dst_host = bundle.host(reached)
    dst_node = None
    if reached is None and path.endpoint is not None:
        owner = next((h for h in bundle.hosts if h.kind == "pod" and any(a.address == path.endpoint for a in h.addrs)),
                     None)
        dst_host, dst_node = owner or dst_host, None if owner else _node_for_ip(bundle, path.endpoint)
    left = next((h for h in path.hops if h.reason == Reason.LEFT_NODE), None)
    if left is not None:
        dst_node = left.payload.remote
    e = ends(bundle, src_host, dst_host, src_node, dst_node)
    if src_host is not None and e.src_node is None:  # a pasted pod no one placed: the node it sends to
        first = next((h.node for h in path.hops if h.direction == "request" and h.location == "host"), None)
        e = dataclasses.replace(e, src_node=first)
    return e


def _node_for_ip(bundle, ip: str) -> str | None:
    """The node an address lives on by the cluster's facts: its pod's, else the pod CIDR's holder (an
    endpoint whose pod is gone)."""
    inv = bundle.inventory
    if inv is None:
        return None
    pod = inv.pod_by_ip(ip)
    if pod is not None and pod.node:
        return pod.node
    addr = ipaddress.ip_address(ip)
    return next((n.name for n in inv.nodes if n.pod_cidr and addr in ipaddress.ip_network(n.pod_cidr, strict=False)),
                None)


def assign_observed(hops, e: Ends) -> None:
    """Observed hops (trace). A netfilter hook's hop has no device: it is where the packet came in
    (prerouting, input) or leaves (forward, output, postrouting), as the probes saw it next to it."""
    for i, h in enumerate(hops):
        device = h.device
        if device is None and h.probe == "netfilter":
            device = _hook_device(hops, i)
        h.segment = segment(e, host=h.host, node=h.node, location=h.location, device=device, point=h.point,
                            direction=h.direction, outer=h.inner)


def _hook_device(hops, i: int) -> str | None:
    h = hops[i]
    before = h.point in HOOKS_BEFORE_ROUTING
    seq = reversed(hops[:i]) if before else hops[i + 1:]
    return next((x.device for x in seq if x.host == h.host and x.direction == h.direction
                 and x.probe in ("tc", "netif_receive_skb", "net_dev_start_xmit")
                 and x.point == ("ingress" if before else "egress")), None)


def segment_for(f, e: Ends, paths: list[Path]) -> str:
    """A finding's segment when no hop placed it (node-wide findings): by where it is, as a hop's."""
    if not paths and f.location == "host":
        return END_TO_END  # no expected path to place it on
    return segment(e, host=f.location if f.location != "host" else None, node=f.node, location=f.location,
                   device=f.device)
