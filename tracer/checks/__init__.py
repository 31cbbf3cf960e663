"""Small checks, each for one failure class (a class may have several, one per finding, like ipvs).
Adding a check is one function and one line in CHECKS."""

from __future__ import annotations

from .causes import Cause
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
    (Cause.LINK_DOWN, link_down),
    (Cause.BRIDGE_PORT, bridge_port),
    (Cause.POD_ROUTE, pod_route),
    (Cause.HOST_ROUTE, host_route),
    (Cause.IP_FORWARD, ip_forward),
    (Cause.RP_FILTER, rp_filter),
    (Cause.IPTABLES, iptables),
    (Cause.IPTABLES, stale_dnat),
    (Cause.DNS, dns),
    (Cause.DNS, stale_conntrack),  # cause dns for kube-dns, iptables for other Services
    (Cause.IPVS, ipvs_vip_missing),
    (Cause.IPVS, ipvs_service_missing),
    (Cause.IPVS, ipvs_no_real_servers),
    (Cause.IPVS, ipvs_stale_real_server),
    (Cause.IPVS, ipvs_weight_zero),
    (Cause.IPVS, ipvs_port_mismatch),
    (Cause.IPVS, ipvs_scheduler_mismatch),
    (Cause.ARP, arp),
    (Cause.FDB, fdb),
    (Cause.IP_CONFLICT, ip_conflict),
    (Cause.MTU, mtu),
    (Cause.TC, foreign_programs),
    (Cause.NO_LISTENER, no_listener),
    # the cluster's facts (API or lab inventory) against the kernel's
    (Cause.ARP, vtep_annotation),
    (Cause.HOST_ROUTE, podcidr_route),
    (Cause.IP_CONFLICT, pod_identity),
    (Cause.IPTABLES, endpoint_rules),
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
