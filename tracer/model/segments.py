"""DESIGN's four segments of a pod-to-pod path, and the one place hops and findings get theirs.

diagnose cuts the expected path by its route decisions (assign_path); trace places the hops it
observed by where they were seen (assign_observed), since an observed path has no guaranteed route
hops; findings that no hop placed get theirs from their namespace (segment_for).
"""

from __future__ import annotations

from .path import SEGMENTS, Path
from .reasons import Reason

UNDERLAY_DEFAULT = "eth0"  # a node's underlay device when the inventory does not say


def assign_path(path: Path, src: str, dst: str | None) -> None:
    """Expected hops (diagnose) by the path's route decisions: host A's first route on a node ends
    pod A → host A, the destination node's last route starts host B → pod B (the reply counts as the
    end-to-end segment)."""
    routes = [i for i, h in enumerate(path.hops) if h.direction == "request" and h.point == "route"
              and h.location == "host" and h.host != src]
    first, last = (routes[0], routes[-1]) if routes else (len(path.hops), len(path.hops))
    # IPVS decides on host A after its local route: host A's segment ends with its route to the real server.
    ipvs = next((i for i, h in enumerate(path.hops) if routes and i > first and h.point == "ipvs"
                 and h.direction == "request" and h.host == path.hops[first].host), None)
    if ipvs is not None:
        first = next((i for i in routes if i > ipvs), ipvs)
    left = any(h.reason == Reason.LEFT_NODE for h in path.hops)  # host B is not in the snapshot
    for i, h in enumerate(path.hops):
        if h.direction == "reply":
            h.segment = SEGMENTS[3]
        elif h.host == src or i <= first:
            h.segment = SEGMENTS[0]
        elif h.host == dst or (not left and ((i >= last and last != first) or (first == last and i > first))):
            h.segment = SEGMENTS[2]
        else:
            h.segment = SEGMENTS[1]


def assign_observed(hops, bundle, src_host, dst_host) -> None:
    """Observed hops (trace) by where they were seen: the source's and destination's namespaces,
    their nodes' hosts (the underlay device is host to host), and the rest of the way between."""
    inv = getattr(bundle, "inventory", None)
    underlay = {n.name: n.underlay_dev for n in (inv.nodes if inv else [])}
    pods = {p.name: p for p in (inv.pods if inv else [])}
    src_node = src_host.node if src_host else None
    dst_node = dst_host.node if dst_host else None
    dst_veth = pods[dst_host.name].host_veth if dst_host and dst_host.name in pods else None
    for h in hops:
        if h.direction == "reply":
            h.segment = SEGMENTS[3]
        elif h.probe == "netfilter" and h.inner:  # the VXLAN packet itself: host to host
            h.segment = SEGMENTS[1]
        elif src_host and h.host == src_host.name:
            h.segment = SEGMENTS[0]
        elif dst_host and h.host == dst_host.name:
            h.segment = SEGMENTS[2]
        elif h.location == "host" and h.node == src_node:
            if h.device == underlay.get(h.node, UNDERLAY_DEFAULT):
                h.segment = SEGMENTS[1]
            elif src_node == dst_node and (h.device == dst_veth or (h.point == "egress" and h.device == "cni0")):
                h.segment = SEGMENTS[2]
            else:
                h.segment = SEGMENTS[0]
        elif h.location == "host" and h.node == dst_node:
            h.segment = SEGMENTS[1] if h.device == underlay.get(h.node, UNDERLAY_DEFAULT) else SEGMENTS[2]
        else:
            h.segment = SEGMENTS[1]


def segment_for(f, s, d, paths: list[Path]) -> str:
    """A finding's segment when no hop placed it (node-wide findings): by its namespace and node."""
    if f.location != "host":
        return SEGMENTS[0] if s.host and f.location == s.host.name else \
            SEGMENTS[2] if d.host and f.location == d.host.name else SEGMENTS[3]
    src_node = s.host.node if s.host else None
    dst_node = d.host.node if d.host else None
    if f.node == dst_node and f.node != src_node:
        return SEGMENTS[2]
    return SEGMENTS[1] if paths else SEGMENTS[3]
