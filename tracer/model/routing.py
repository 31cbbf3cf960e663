"""The kernel's IPv4 route decision from a snapshot: policy rules, then longest-prefix match."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from ..bundle import Host, Route, Rule

LOCAL, MAIN, DEFAULT = 255, 254, 253
# What the kernel has when `ip rule` was not captured (pasted bundles).
DEFAULT_RULES = [Rule(priority=0, table=LOCAL), Rule(priority=32766, table=MAIN), Rule(priority=32767, table=DEFAULT)]
DROP_TYPES = {"blackhole", "unreachable", "prohibit"}


@lru_cache(maxsize=4096)
def net(prefix: str) -> ipaddress.IPv4Network:
    if prefix == "default":
        return ipaddress.IPv4Network("0.0.0.0/0")
    return ipaddress.IPv4Network(prefix, strict=False)


def in_prefix(ip: str, prefix: str | None) -> bool:
    if prefix is None:
        return True
    try:
        return ipaddress.IPv4Address(ip) in net(prefix)
    except ValueError:
        return False


@dataclass
class Decision:
    route: Route | None  # None: no route matched anywhere
    rule: Rule | None  # the policy rule whose table gave the route
    local: bool = False  # the destination is one of this host's addresses

    @property
    def drops(self) -> bool:
        return self.route is None or self.route.type in DROP_TYPES


def local_addresses(host: Host) -> set[str]:
    addrs = {a.address for a in host.addrs}
    addrs |= {r.dst.split("/")[0] for r in host.routes if r.type == "local" and r.dst != "default"}
    return addrs


def _rule_matches(rule: Rule, src: str | None, dst: str, iif: str | None, oif: str | None, mark: int) -> bool:
    ok = True
    if rule.src and (src is None or not in_prefix(src, rule.src)):
        ok = False
    if ok and rule.dst and not in_prefix(dst, rule.dst):
        ok = False
    if ok and rule.iif and rule.iif != (iif or "lo"):
        ok = False
    if ok and rule.oif and rule.oif != oif:
        ok = False
    if ok and rule.fwmark is not None:
        mask = rule.fwmask if rule.fwmask is not None else 0xFFFFFFFF
        ok = (mark & mask) == rule.fwmark
    return ok != rule.invert


def _table_lookup(host: Host, table: int, dst: str, oif: str | None) -> Route | None:
    best: Route | None = None
    best_key = None
    for route in host.routes:
        if (route.table or MAIN) != table or route.type == "broadcast":
            continue
        if oif and route.dev and route.dev != oif:
            continue
        if not in_prefix(dst, route.dst):
            continue
        key = (net(route.dst).prefixlen, -(route.metric or 0))
        if best_key is None or key > best_key:
            best, best_key = route, key
    return best


def lookup(host: Host, dst: str, *, src: str | None = None, iif: str | None = None,
           oif: str | None = None, mark: int = 0) -> Decision:
    """Route `dst` as the kernel would in `host` (iif None = locally generated)."""
    rules = sorted(host.rules, key=lambda r: r.priority) if host.rules else DEFAULT_RULES
    # An address on an interface always has its local route (the kernel adds it with the address);
    # pasted bundles often lack the local table.
    if dst in local_addresses(host):
        return Decision(Route(dst=f"{dst}/32", table=LOCAL, type="local", dev="lo"), DEFAULT_RULES[0], True)
    for rule in rules:
        if not _rule_matches(rule, src, dst, iif, oif, mark):
            continue
        if rule.action in DROP_TYPES:
            return Decision(Route(dst="default", type=rule.action, table=0), rule)
        if rule.action != "lookup" or rule.table is None:
            continue
        route = _table_lookup(host, rule.table, dst, oif)
        if route is None or route.type == "throw":
            continue
        return Decision(route, rule, route.type == "local")
    # Pasted `ip r get` answers stand in for tables we never saw.
    for route in host.route_lookups:
        if in_prefix(dst, route.dst):
            return Decision(route, None, route.type == "local")
    return Decision(None, None)
