"""`ip rule`, `ip route` and the answers of `ip route get`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...bundle import Route, Rule
from .links import _HDR_INDEX
from .state import ImportCtx, after_value_key
from .text import Words, is_ipv4, is_ipv6, is_prefix4, is_redacted, num, table_id


# --- ip rule ------------------------------------------------------------------------------------

RULE_ACTIONS = {"blackhole", "unreachable", "prohibit", "nop"}


def detect_ip_rule(w: Words, i: int, ctx: ImportCtx) -> int:
    if not _HDR_INDEX.match(w[i]):
        return 0
    if w[i + 1] in ("from", "not"):
        return 2
    return 1 if ctx.hinted("ip rule") and w[i + 1] in ("to", "fwmark", "iif", "oif", "lookup") else 0


def parse_ip_rule(w: Words, i: int, ctx: ImportCtx) -> int:
    """`32766:	from all lookup main`, `100:	not from 10.0.0.0/8 fwmark 0x1/0xff lookup 100`."""
    rule = Rule(priority=num(w[i][:-1]) or 0)
    k = i + 1
    while k < w.n and not w.at_bol(k) and not detect_ip_rule(w, k, ctx):
        t, v = w[k], w[k + 1]
        if t == "not":
            rule.invert = True
            k += 1
        elif t in ("from", "to"):
            setattr(rule, "src" if t == "from" else "dst", None if v == "all" else v)
            k += 2
        elif t in ("iif", "oif"):
            setattr(rule, t, v)
            k += 3 if w[k + 2] == "[detached]" else 2
        elif t == "fwmark":
            mark, _, mask = v.partition("/")
            try:
                rule.fwmark = int(mark, 0)
                rule.fwmask = int(mask, 0) if mask else None
            except ValueError:
                pass
            k += 2
        elif t in ("lookup", "table"):
            rule.table = table_id(v)
            if rule.table is None:
                ctx.state.note("rule table", f"rule {rule.priority} looks up table '{v}' by name; "
                                             "paste `ip rule` with numeric tables (`ip -N rule`)")
            k += 2
        elif t in RULE_ACTIONS:
            rule.action = t
            k += 1
        elif t in ("goto", "realms", "suppress_prefixlength", "suppress_ifgroup", "uidrange", "proto",
                   "ipproto", "sport", "dport", "tos", "dsfield", "priority", "pref", "l3mdev"):
            k += 1 if t == "l3mdev" else 2
        else:
            break
    ctx.host.rules.append(rule)
    return k


# --- ip route / ip route get ------------------------------------------------------------------

ROUTE_TYPES = {"unicast", "local", "broadcast", "blackhole", "unreachable", "prohibit", "throw",
               "multicast", "anycast", "nat"}
ROUTE_KEYS = {
    "via", "dev", "proto", "scope", "src", "metric", "table", "tos", "dsfield", "realms", "pref",
    "expires", "nhid", "weight", "error", "from", "uid", "mark", "iif", "oif", "mtu", "advmss", "rtt",
    "rttvar", "reordering", "window", "cwnd", "initcwnd", "initrwnd", "ssthresh", "rto_min", "hoplimit",
    "features", "quickack", "congctl", "fastopen_no_cookie", "ipid", "age", "used", "users", "vrf",
    "ttl-propagate", "lastuse", "priority", "preference",
}
ROUTE_FLAGS = {"onlink", "linkdown", "dead", "pervasive", "offload", "trap", "offload_failed",
               "notify", "rt_offload", "rt_trap", "rt_offload_failed", "fibmatch"}
_CACHE_FLAGS = re.compile(r"^<[a-z,]*>$")


def is_dst(s: str) -> bool:
    return s == "default" or is_prefix4(s) or is_ipv6(s)


def is_route_dst(s: str) -> bool:
    """A destination as a route prints it, or one the user redacted (`10.xx.0.0/16`)."""
    return is_dst(s) or is_redacted(s)


@dataclass
class RouteText:
    """A route as printed, before it becomes a Route (or is skipped as IPv6)."""

    dst: str
    type: str = "unicast"
    keys: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    nexthops: list[dict[str, str]] = field(default_factory=list)
    lookup: bool = False  # printed by `ip route get` (uid / cache)


def route_start(w: Words, i: int) -> int:
    """0: no route starts at i; 1: a host route (`10.0.0.5 dev eth0 ...`); 2: an unmistakable one."""
    k, typed = i, False
    if w[k] in ROUTE_TYPES and is_route_dst(w[k + 1]) and not w.at_bol(k + 1):
        k, typed = k + 1, True
    if not is_route_dst(w[k]) or after_value_key(w, i) or w[i - 1] in ("type", "-A", "-a") and not w.bol[i]:
        return 0
    nxt = w[k + 1]
    if typed and not w.bol[i] and nxt not in ROUTE_KEYS and "/" not in w[k]:
        return 0  # `broadcast 0.0.0.0` inside an ifconfig line is no route; a typed route mid-line has keys
    if not (typed or w.at_bol(k + 1) or nxt in ROUTE_KEYS or nxt in ROUTE_FLAGS or nxt in ("nexthop", "cache")):
        return 0
    if typed or w[k] == "default" or "/" in w[k] or nxt in ("via", "nexthop"):
        return 2
    return 1


def read_route(w: Words, i: int) -> tuple[RouteText, int]:
    r = RouteText(dst="")
    k = i
    if w[k] in ROUTE_TYPES and is_dst(w[k + 1]):
        r.type, k = w[k], k + 1
    r.dst, k = w[k], k + 1
    nh: dict[str, str] | None = None
    while k < w.n:
        t = w[k]
        if w.bol[k] and t not in ("nexthop", "cache"):
            break  # a route is one line plus its indented nexthop / cache lines
        if t == "nexthop":
            nh = {}
            r.nexthops.append(nh)
            k += 1
        elif t == "cache":
            r.lookup, nh = True, None
            k += 1
        elif _CACHE_FLAGS.match(t) and r.lookup:
            k += 1
        elif t in ROUTE_FLAGS:
            if nh is not None:
                nh[t] = "1"
            else:
                r.flags.add(t)
            k += 1
        elif t in ROUTE_KEYS and w[k + 1] and not w.bol[k + 1]:
            v, step = w[k + 1], 2
            if t == "via" and v in ("inet", "inet6"):
                v, step = w[k + 2], 3
            elif t == "mtu" and v == "lock":
                v, step = w[k + 2], 3
            if nh is not None and t in ("via", "dev", "weight"):
                nh[t] = v
            else:
                r.keys[t] = v
                r.lookup = r.lookup or t == "uid"
            k += step
        else:
            break
    return r, k


def to_route(r: RouteText, ctx: ImportCtx, lookup: bool, w: Words, i: int) -> Route | None:
    first = r.nexthops[0] if r.nexthops else {}
    gateway = first.get("via", r.keys.get("via"))
    for what, value in (("destination", r.dst), ("gateway", gateway), ("source", r.keys.get("src"))):
        if value and not is_dst(value) and not is_ipv6(value):
            ctx.state.odd_value(value, w, i, what)  # `default via 10.xx.xx.1`: hidden, not IPv6
            return None
    if is_ipv6(r.dst) or (gateway and not is_ipv4(gateway)) or (ctx.hint and ctx.hint.v6):
        ctx.state.v6_skipped += 1
        return None
    dst = r.dst if r.dst == "default" or "/" in r.dst else f"{r.dst}/32"
    dst = "default" if dst == "0.0.0.0/0" else dst
    hint = ctx.hint if ctx.hint and not lookup else None
    table = table_id(r.keys.get("table") or (hint.table if hint and hint.table != "all" else None))
    if table is None:
        name = r.keys.get("table") or (hint.table if hint else None)
        if name and name != "all":
            ctx.state.note("route table", f"table '{name}' is a name from rt_tables; routes of it have "
                                          "table None (paste `ip -N route` for numbers)")
        elif r.type in ("local", "broadcast", "nat", "anycast"):
            table = 255  # the kernel puts these in table local; `ip r show table local` omits it
        elif not name:
            table = 254
    route = Route(
        dst=dst, table=table, type=r.type, gateway=gateway,
        dev=first.get("dev", r.keys.get("dev")) or (hint.dev if hint else None),
        prefsrc=r.keys.get("src"),
        scope=r.keys.get("scope") or (None if lookup else "global"),
        metric=num(r.keys.get("metric", "")),
        onlink="onlink" in r.flags or "onlink" in first,
        proto=r.keys.get("proto") or (None if lookup else "boot"),  # `ip r` hides "proto boot"
    )
    if len(r.nexthops) > 1:
        ctx.state.note("multipath", f"{dst}: {len(r.nexthops)} nexthops, kept the first "
                                    f"(via {gateway} dev {route.dev})")
    if "nhid" in r.keys and not gateway and not route.dev:
        ctx.state.note("nexthop objects", f"{dst} uses nexthop object {r.keys['nhid']}; paste `ip nexthop`")
    return route


def detect_ip_route(w: Words, i: int, ctx: ImportCtx) -> int:
    return route_start(w, i)


def detect_ip_route_get(w: Words, i: int, ctx: ImportCtx) -> int:
    if w[i] == "RTNETLINK" and w[i + 1] == "answers:" and ctx.hinted("ip r get") and ctx.hint.query:
        return 2
    if not route_start(w, i):
        return 0
    r, _ = read_route(w, i)
    return 2 if r.lookup else 1 if ctx.hinted("ip r get") else 0


def parse_ip_route(w: Words, i: int, ctx: ImportCtx) -> int:
    r, k = read_route(w, i)
    route = to_route(r, ctx, lookup=False, w=w, i=i)
    if route:
        ctx.state.add_unique("routes", route)
    return k


# `ip route get` errors are the kernel's answer too: the route type that refused the lookup.
RTNETLINK_TYPES = {"Invalid argument": "blackhole", "No route to host": "unreachable",
                   "Permission denied": "prohibit", "Network is unreachable": "unreachable"}


def parse_ip_route_get(w: Words, i: int, ctx: ImportCtx) -> int:
    if w[i] == "RTNETLINK":
        k = i + 2
        while k < w.n and not w.at_bol(k) and k < i + 6 and not w[k - 1].endswith(("argument", "host",
                                                                                       "denied", "unreachable")):
            k += 1
        error = w.span(i + 2, k)
        assert ctx.hint is not None and ctx.hint.query is not None
        kind = RTNETLINK_TYPES.get(error)
        if kind and is_ipv4(ctx.hint.query):
            ctx.host.route_lookups.append(Route(dst=f"{ctx.hint.query}/32", type=kind, table=None))
        else:
            ctx.state.note("route lookups", f"ip route get {ctx.hint.query}: {error}")
        ctx.hint = None  # `ip route get` answers once
        return k
    r, k = read_route(w, i)
    route = to_route(r, ctx, lookup=True, w=w, i=i)
    if route:
        if "table" not in r.keys and route.type not in ("local", "broadcast"):
            route.table = None  # the answer does not say which table it came from
        ctx.host.route_lookups.append(route)
    if ctx.hinted("ip r get"):
        ctx.hint = None  # `ip route get` answers once
    return k
