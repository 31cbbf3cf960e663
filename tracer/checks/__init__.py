"""Small checks, each for one failure class (a class may have several, one per finding, like ipvs).
Adding a check is one function and one line in CHECKS."""

from __future__ import annotations

from .base import ERROR, INFO, WARNING, Context, Finding
from .cluster import endpoint_rules, pod_identity, podcidr_route, vtep_annotation
from .fallback import unknown
from .links import bridge_port, link_down, mtu
from .neighbours import arp, fdb, ip_conflict
from .ipvs import (ipvs_no_real_servers, ipvs_port_mismatch, ipvs_scheduler_mismatch, ipvs_service_missing,
                   ipvs_stale_real_server, ipvs_vip_missing, ipvs_weight_zero)
from .netfilter import dns, iptables, stale_conntrack, stale_dnat
from .programs import foreign_programs
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
    ("iptables", stale_dnat),
    ("dns", dns),
    ("dns", stale_conntrack),  # cause dns for kube-dns, iptables for other Services
    ("ipvs", ipvs_vip_missing),
    ("ipvs", ipvs_service_missing),
    ("ipvs", ipvs_no_real_servers),
    ("ipvs", ipvs_stale_real_server),
    ("ipvs", ipvs_weight_zero),
    ("ipvs", ipvs_port_mismatch),
    ("ipvs", ipvs_scheduler_mismatch),
    ("arp", arp),
    ("fdb", fdb),
    ("ip_conflict", ip_conflict),
    ("mtu", mtu),
    ("tc", foreign_programs),
    ("no_listener", no_listener),
    # the cluster's facts (API or lab inventory) against the kernel's
    ("arp", vtep_annotation),
    ("host_route", podcidr_route),
    ("ip_conflict", pod_identity),
    ("iptables", endpoint_rules),
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
