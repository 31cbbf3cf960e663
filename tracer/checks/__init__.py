"""One small check per failure class. Adding a check is one function and one line in CHECKS."""

from __future__ import annotations

from .base import ERROR, INFO, WARNING, Context, Finding
from .fallback import unknown
from .links import bridge_port, link_down, mtu
from .neighbours import arp, fdb, ip_conflict
from .netfilter import dns, ipvs, iptables
from .routing import host_route, ip_forward, pod_route, rp_filter
from .sockets import no_listener

CHECKS = [
    ("link_down", link_down),
    ("bridge_port", bridge_port),
    ("pod_route", pod_route),
    ("host_route", host_route),
    ("ip_forward", ip_forward),
    ("rp_filter", rp_filter),
    ("iptables", iptables),
    ("dns", dns),
    ("ipvs", ipvs),
    ("arp", arp),
    ("fdb", fdb),
    ("ip_conflict", ip_conflict),
    ("mtu", mtu),
    ("no_listener", no_listener),
]

SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}


def run_checks(ctx: Context) -> list[Finding]:
    """Every check's findings, deduplicated (a path finding and a node-wide one may name one object)."""
    found: list[Finding] = []
    seen: dict[tuple, Finding] = {}
    for _, check in CHECKS:
        for f in check(ctx):
            first = seen.get(f.key())
            if first is None:
                seen[f.key()] = f
                found.append(f)
            elif SEVERITY_ORDER[f.severity] < SEVERITY_ORDER[first.severity]:
                first.severity = f.severity
    found += unknown(ctx, found)
    return found


__all__ = ["CHECKS", "Context", "Finding", "run_checks", "ERROR", "WARNING", "INFO", "SEVERITY_ORDER"]
