"""Which of diagnose's findings explains where the kernel stopped the packet.

Pure functions over findings and a StopPoint (where and how the trace ended, as the verdict
stage saw it). The preferences come from the cause table (checks/causes.py): the causes the
kernel's drop reason points at, root causes before their symptoms.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..checks.causes import (EVIDENCE_KIND, LOCATION_CAUSES, NETFILTER_CAUSES, REASON_CAUSES, REASON_WARNINGS,
                             ROOT_FIRST, Cause)


@dataclass
class StopPoint:
    """Where the verdict stage says the packet stopped, and what the kernel said about it: the
    question the explain stage answers with a finding."""

    node: str | None
    location: str | None
    device: str | None
    drop_reason: str | None = None
    status: str | None = None  # "dropped"/"lost": widen the search to the node
    hook: str | None = None
    drop_location: str | None = None
    peers: list = field(default_factory=list)  # (node, location) at the far end of the stop device
    foreign_link: str | None = None  # only this BPF netfilter link sat where the packet was taken


def preferred_causes(drop_reason: str | None, drop_location: str | None, hook: str | None) -> tuple:
    if hook is not None:
        return NETFILTER_CAUSES
    prefs = REASON_CAUSES.get(drop_reason or "", ())
    fn = (drop_location or "").split("+")[0]
    for prefix, causes in LOCATION_CAUSES.items():
        if fn.startswith(prefix):
            prefs = causes + prefs
    return prefs


def pick_finding(findings, *, node, location, device, drop_reason=None, status=None, hook=None,
                 drop_location=None, peers=()):
    """The diagnose finding that explains the observed stop point, or None.

    Tiers, first hit wins: the stop point's namespace; the same node (the packet vanished after
    the last hop seen); the namespaces at the far end of the stop device (a veth refusing to
    forward is the receiver's MTU). Within a tier, causes the kernel's drop reason points at first,
    then root causes, then diagnose's order (errors first, in path order)."""
    prefs = preferred_causes(drop_reason, drop_location, hook)
    errs = [f for f in findings if f.severity == "error" or (f.cause in prefs and f.cause in REASON_WARNINGS
                                                             and f.severity == "warning")] or \
        [f for f in findings if not (f.cause in REASON_WARNINGS and f.severity == "info")]  # "may be elsewhere"

    def best(cands):
        if not cands:
            return None

        def rank(ix_f):
            i, f = ix_f
            return (prefs.index(f.cause) if f.cause in prefs else len(prefs),
                    0 if f.cause in ROOT_FIRST else 1,
                    0 if (hook and f.hook == hook) or (device and f.device == device) else 1, i)
        return min(enumerate(cands), key=rank)[1]

    netfilter = drop_reason == "NETFILTER_DROP" or hook is not None
    tiers = [[f for f in errs if f.node == node and f.location == location]]
    if netfilter:
        tiers.append([f for f in errs if f.cause in NETFILTER_CAUSES and f.node == node])
    if status == "lost" or drop_reason not in (None, "NETFILTER_DROP"):
        tiers.append([f for f in errs if f.node == node])
    tiers.append([f for f in errs if (f.node, f.location) in peers])
    for cands in tiers:
        if netfilter:
            nf = [f for f in cands if f.cause in NETFILTER_CAUSES]
            if nf:
                return best(nf)
        f = best(cands)
        if f is not None:
            return f
    return None


def root_of(f, findings):
    """The finding whose cause explains `f`'s at the same place (an error), else `f` itself: a
    route out of the wrong device is why nothing answers ARP there, and the route is the fix."""
    if f is None:
        return None
    return next((g for g in findings if g is not f and g.severity == "error" and f.cause in g.cause.spec.explains
                 and (g.node, g.location) == (f.node, f.location)), f)


def explain(stop: StopPoint, findings):
    """The finding for a stop point: the best one there, then its root cause if diagnose found it."""
    f = pick_finding(findings, node=stop.node, location=stop.location, device=stop.device,
                     drop_reason=stop.drop_reason, status=stop.status, hook=stop.hook,
                     drop_location=stop.drop_location, peers=stop.peers)
    if stop.foreign_link is not None:  # only a foreign program sits where the packet was taken
        f = next((x for x in findings if x.cause == Cause.TC and x.object == stop.foreign_link), f)
    return root_of(f, findings)


def evidence_of(f) -> list[dict]:
    ev = [dataclasses.asdict(e) for e in (f.evidence or [])]
    if not ev and f.object:
        ev = [{"kind": EVIDENCE_KIND.get(f.cause, "object"), "node": f.node, "location": f.location,
               "object": f.object}]
    return ev
