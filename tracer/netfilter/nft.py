"""Parse `nft -j list ruleset` (libnftables JSON, schema 1) into tables, chains, rules and sets.

Each rule keeps its raw `expr` list (the evaluator compiles it) and a human text rendered the way
`nft list ruleset` prints it, so a finding can quote the rule. Counters are kept as numbers and
rendered as a bare `counter`, so the text of a rule does not change as traffic flows.

Tables that iptables-nft owns are skipped: they also appear in `iptables-save` output, which
says more (xt matches such as `-m comment` or `-m statistic` show up in JSON only as an opaque
`xt` expression), and evaluating them twice would double every verdict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import BundleError
from .iptables import BUILTIN_CHAINS

# Meta keys `nft list` prints without the `meta` prefix.
_BARE_META = frozenset({
    "iif", "oif", "iifname", "oifname", "iiftype", "oiftype", "skuid", "skgid", "nftrace",
    "rtclassid", "ibrname", "obrname", "pkttype", "cpu", "iifgroup", "oifgroup", "cgroup",
    "ibriport", "obriport",
})
# Keys whose values nft prints as quoted strings.
_QUOTED_KEYS = frozenset({"iifname", "oifname", "ibrname", "obrname", "ibriport", "obriport"})
# Keys whose values nft prints as 32-bit hex.
_HEX_KEYS = frozenset({"mark"})


@dataclass
class NftRule:
    family: str
    table: str
    chain: str
    position: int  # 1-based position in its chain
    handle: int | None
    text: str  # as `nft list ruleset` prints it, counters shown as a bare `counter`
    expr: list[Any] = field(default_factory=list)
    packets: int | None = None
    bytes: int | None = None
    comment: str | None = None


@dataclass
class NftChain:
    family: str
    table: str
    name: str
    handle: int | None = None
    type: str | None = None  # filter | nat | route (base chains only)
    hook: str | None = None
    priority: int | None = None
    policy: str | None = None  # accept | drop (base chains only)
    rules: list[NftRule] = field(default_factory=list)

    @property
    def base(self) -> bool:
        return self.hook is not None


@dataclass
class NftSet:
    """A named set or map; `elements` as JSON (maps: [key, value] pairs)."""

    family: str
    table: str
    name: str
    type: Any = None
    map: Any = None  # the data type of a map ("verdict", "ipv4_addr"...), None for a set
    flags: list[str] = field(default_factory=list)
    elements: list[Any] = field(default_factory=list)


@dataclass
class NftTable:
    family: str
    name: str
    chains: dict[str, NftChain] = field(default_factory=dict)
    sets: dict[str, NftSet] = field(default_factory=dict)


@dataclass
class NftRuleset:
    tables: dict[tuple[str, str], NftTable] = field(default_factory=dict)
    # "ip filter" etc.: tables left out because iptables-nft owns them (read via iptables-save)
    skipped: list[str] = field(default_factory=list)

    def base_chains(self) -> list[NftChain]:
        return [c for t in self.tables.values() for c in t.chains.values() if c.base]

    def rule_count(self) -> int:
        return sum(len(c.rules) for t in self.tables.values() for c in t.chains.values())


def parse_json(data: Any, iptables_nft_tables: set[str] | None = None) -> NftRuleset:
    """Parse `nft -j list ruleset` output (the decoded JSON, or its text).

    `iptables_nft_tables`: names of the tables the host's iptables-nft `iptables-save` printed.
    Family-ip tables among them are skipped. When None (the save output is not known), tables
    that look like iptables-nft's (xt expressions, or its built-in chain names) are skipped.
    """
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as e:
            raise BundleError(f"nft -j list ruleset: not JSON ({e.msg} at line {e.lineno})") from None
    items = data.get("nftables") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise BundleError("nft -j list ruleset: expected an object with an 'nftables' list")
    ruleset = NftRuleset()
    rules: list[dict] = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or len(item) != 1:
            raise BundleError(f"nft -j list ruleset: item {n} is not a one-key object")
        (kind, body), = item.items()
        if not isinstance(body, dict):
            if kind == "metainfo":
                continue
            raise BundleError(f"nft -j list ruleset: item {n} ({kind}) is not an object")
        try:
            if kind == "table":
                _add_table(ruleset, body)
            elif kind == "chain":
                _add_chain(ruleset, body)
            elif kind in ("set", "map"):
                _add_set(ruleset, body, kind == "map")
            elif kind == "rule":
                rules.append(body)
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"nft -j list ruleset: item {n} ({kind}) is malformed: {e}") from None
    for body in rules:
        _add_rule(ruleset, body)
    _skip_iptables_tables(ruleset, iptables_nft_tables)
    return ruleset


def _table_of(ruleset: NftRuleset, family: str, name: str) -> NftTable:
    key = (family, name)
    if key not in ruleset.tables:
        # nft always lists a table before its contents; tolerate hand-trimmed JSON that does not
        ruleset.tables[key] = NftTable(family, name)
    return ruleset.tables[key]


def _add_table(ruleset: NftRuleset, body: dict) -> None:
    _table_of(ruleset, str(body["family"]), str(body["name"]))


def _add_chain(ruleset: NftRuleset, body: dict) -> None:
    table = _table_of(ruleset, str(body["family"]), str(body["table"]))
    prio = body.get("prio")
    if prio is not None and not isinstance(prio, int):
        raise ValueError(f"chain priority {prio!r} is not a number")
    chain = NftChain(
        family=table.family,
        table=table.name,
        name=str(body["name"]),
        handle=body.get("handle"),
        type=body.get("type"),
        hook=body.get("hook"),
        priority=prio,
        policy=body.get("policy", "accept" if body.get("hook") else None),
    )
    table.chains[chain.name] = chain


def _add_set(ruleset: NftRuleset, body: dict, is_map: bool) -> None:
    table = _table_of(ruleset, str(body["family"]), str(body["table"]))
    elem = body.get("elem", [])
    if not isinstance(elem, list):
        raise ValueError("set elements are not a list")
    flags = body.get("flags", [])
    table.sets[str(body["name"])] = NftSet(
        family=table.family,
        table=table.name,
        name=str(body["name"]),
        type=body.get("type"),
        map=body.get("map") if is_map else None,
        flags=[flags] if isinstance(flags, str) else list(flags),
        elements=elem,
    )


def _add_rule(ruleset: NftRuleset, body: dict) -> None:
    try:
        family, table_name, chain_name = str(body["family"]), str(body["table"]), str(body["chain"])
    except KeyError as e:
        raise BundleError(f"nft -j list ruleset: rule without {e}") from None
    table = _table_of(ruleset, family, table_name)
    chain = table.chains.get(chain_name)
    if chain is None:
        raise BundleError(
            f"nft -j list ruleset: rule in unknown chain {family} {table_name} {chain_name}"
        )
    expr = body.get("expr", [])
    if not isinstance(expr, list):
        raise BundleError(f"nft -j list ruleset: rule {body.get('handle')} has no expr list")
    packets = bytes_ = None
    for e in expr:
        if isinstance(e, dict) and isinstance(e.get("counter"), dict):
            packets, bytes_ = e["counter"].get("packets"), e["counter"].get("bytes")
    comment = body.get("comment")
    text = render_rule(expr, family)
    if comment:
        text += f' comment "{comment}"'
    chain.rules.append(
        NftRule(
            family=family,
            table=table_name,
            chain=chain_name,
            position=len(chain.rules) + 1,
            handle=body.get("handle"),
            text=text,
            expr=expr,
            packets=packets,
            bytes=bytes_,
            comment=comment,
        )
    )


def _iptables_owned(table: NftTable) -> bool:
    """Does this table look like one iptables-nft created (so iptables-save also shows it)?"""
    builtins = BUILTIN_CHAINS.get(table.name)
    if table.family not in ("ip", "ip6") or builtins is None:
        return False
    for chain in table.chains.values():
        for rule in chain.rules:
            if any(isinstance(e, dict) and "xt" in e for e in rule.expr):
                return True
    return any(c.base and c.name in builtins for c in table.chains.values())


def _skip_iptables_tables(ruleset: NftRuleset, iptables_nft_tables: set[str] | None) -> None:
    for key, table in list(ruleset.tables.items()):
        if not _iptables_owned(table):
            continue
        if table.family == "ip" and iptables_nft_tables is not None \
                and table.name not in iptables_nft_tables:
            continue  # iptables-save did not print it (e.g. "incompatible"): evaluate it here
        del ruleset.tables[key]
        ruleset.skipped.append(f"{table.family} {table.name}")


# ---------------------------------------------------------------------------------------------
# Rendering rule text from JSON expressions


def render_rule(expr: list[Any], family: str = "ip") -> str:
    parts = []
    for e in expr:
        try:
            parts.append(_render_stmt(e, family))
        except (AttributeError, TypeError, KeyError, ValueError, IndexError):
            parts.append(json.dumps(e, separators=(",", ":"), default=str))  # odd JSON: show it
    return " ".join(p for p in parts if p)


def _render_stmt(stmt: Any, family: str) -> str:
    if not isinstance(stmt, dict) or len(stmt) != 1:
        return json.dumps(stmt, separators=(",", ":"))
    (key, body), = stmt.items()
    if key == "match":
        return _render_match(body)
    if key in ("accept", "drop", "continue", "return"):
        return key
    if key in ("jump", "goto"):
        return f"{key} {body.get('target')}" if isinstance(body, dict) else key
    if key == "counter":
        return "counter"
    if key == "reject":
        return _render_reject(body, family)
    if key in ("dnat", "snat", "masquerade", "redirect"):
        return _render_nat(key, body, family)
    if key == "mangle" and isinstance(body, dict):
        k = body.get("key")
        return f"{render_expr(k)} set {render_value(body.get('value'), _key_of(k))}"
    if key == "log":
        return _render_log(body)
    if key == "notrack":
        return "notrack"
    if key == "limit" and isinstance(body, dict):
        return f"limit rate {body.get('rate')}/{body.get('per', 'second')}"
    if key == "vmap" and isinstance(body, dict):
        k = body.get("key")
        return f"{render_expr(k)} vmap {render_value(body.get('data'), _key_of(k))}"
    if key == "xt":
        if isinstance(body, dict):
            return f"xt {body.get('type', 'match')} {body.get('name', '?')}"
        return "xt ?"
    return f"{key} {json.dumps(body, separators=(',', ':'))}" if body is not None else key


def _render_match(body: dict) -> str:
    left, right, op = body.get("left"), body.get("right"), body.get("op", "==")
    key = _key_of(left)
    text_left = render_expr(left)
    text_right = render_value(right, key)
    binop = isinstance(left, dict) and any(k in left for k in ("&", "|", "^", "<<", ">>"))
    if op in ("==", "in") and not binop:
        return f"{text_left} {text_right}"
    return f"{text_left} {op} {text_right}"


def _render_reject(body: Any, family: str) -> str:
    if not isinstance(body, dict):
        return "reject"
    typ, code = body.get("type"), body.get("expr")
    if typ == "tcp reset":
        return "reject with tcp reset"
    default = (typ == "icmp" and family == "ip") or (typ == "icmpx" and family == "inet")
    if code in (None, "port-unreachable") and default:
        return "reject"
    return f"reject with {typ} {code}" if code else f"reject with {typ}"


def _render_nat(key: str, body: Any, family: str) -> str:
    if not isinstance(body, dict):
        return key
    out = [key]
    if body.get("family") and family == "inet":
        out.append(str(body["family"]))
    addr, port = body.get("addr"), body.get("port")
    if addr is not None or port is not None:
        target = render_value(addr, None) if addr is not None else ""
        if port is not None:
            target += f":{render_value(port, None)}"
        out += ["to", target]
    flags = body.get("flags")
    if flags:
        out += [flags] if isinstance(flags, str) else list(flags)
    return " ".join(out)


def _render_log(body: Any) -> str:
    if not isinstance(body, dict):
        return "log"
    out = ["log"]
    if "prefix" in body:
        out.append(f'prefix "{body["prefix"]}"')
    if "level" in body:
        out.append(f"level {body['level']}")
    if "group" in body:
        out.append(f"group {body['group']}")
    return " ".join(out)


def _key_of(expr: Any) -> str | None:
    """The selector an expression reads (meta/ct key or payload field), to format its values."""
    if not isinstance(expr, dict):
        return None
    if "meta" in expr and isinstance(expr["meta"], dict):
        return expr["meta"].get("key")
    if "ct" in expr and isinstance(expr["ct"], dict):
        return expr["ct"].get("key")
    if "payload" in expr and isinstance(expr["payload"], dict):
        return expr["payload"].get("field")
    for op in ("&", "|", "^"):
        if op in expr and isinstance(expr[op], list) and expr[op]:
            return _key_of(expr[op][0])
    return None


def render_expr(expr: Any) -> str:
    """A left-hand expression (selector) as nft prints it."""
    if not isinstance(expr, dict) or len(expr) != 1:
        return render_value(expr, None)
    (key, body), = expr.items()
    if key == "payload" and isinstance(body, dict):
        if "protocol" in body:
            return f"{body['protocol']} {body.get('field')}"
        return f"@{body.get('base')},{body.get('offset')},{body.get('len')}"
    if key == "meta" and isinstance(body, dict):
        k = body.get("key")
        return str(k) if k in _BARE_META else f"meta {k}"
    if key == "ct" and isinstance(body, dict):
        parts = ["ct"] + [str(body[p]) for p in ("dir", "family") if p in body] + [str(body.get("key"))]
        return " ".join(parts)
    if key == "fib" and isinstance(body, dict):
        flags = body.get("flags", [])
        flags = [flags] if isinstance(flags, str) else flags
        return f"fib {' . '.join(flags)} {body.get('result')}"
    if key in ("&", "|", "^", "<<", ">>") and isinstance(body, list) and len(body) == 2:
        inner = _key_of(body[0])
        return f"{render_expr(body[0])} {key} {render_value(body[1], inner)}"
    if key == "concat" and isinstance(body, list):
        return " . ".join(render_expr(b) for b in body)
    if key == "numgen" and isinstance(body, dict):
        text = f"numgen {body.get('mode')} mod {body.get('mod')}"
        return text + (f" offset {body['offset']}" if body.get("offset") else "")
    return json.dumps(expr, separators=(",", ":"))


def render_value(value: Any, key: str | None) -> str:
    """A right-hand value (constant, prefix, range, set, set reference) as nft prints it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"0x{value:08x}" if key in _HEX_KEYS else str(value)
    if isinstance(value, str):
        return f'"{value}"' if key in _QUOTED_KEYS else value
    if isinstance(value, list):
        if value and all(isinstance(v, list) and len(v) == 2 for v in value):
            return "{ " + ", ".join(_render_pair(v, key) for v in value) + " }"
        return ",".join(render_value(v, key) for v in value)
    if isinstance(value, dict) and len(value) == 1:
        (k, body), = value.items()
        if k == "prefix" and isinstance(body, dict):
            return f"{body.get('addr')}/{body.get('len')}"
        if k == "range" and isinstance(body, list) and len(body) == 2:
            return f"{render_value(body[0], key)}-{render_value(body[1], key)}"
        if k == "set":
            items = body if isinstance(body, list) else [body]
            return "{ " + ", ".join(
                _render_pair(v, key) if isinstance(v, list) and len(v) == 2 else render_value(v, key)
                for v in items
            ) + " }"
        if k == "concat" and isinstance(body, list):
            return " . ".join(render_value(v, None) for v in body)
        if k == "elem" and isinstance(body, dict):
            return render_value(body.get("val"), key)
        if k in ("accept", "drop", "continue", "return"):
            return k
        if k in ("jump", "goto") and isinstance(body, dict):
            return f"{k} {body.get('target')}"
        if k in ("meta", "ct", "payload", "&", "|", "^", "concat", "numgen", "fib"):
            return render_expr(value)
    return json.dumps(value, separators=(",", ":"))


def _render_pair(pair: list, key: str | None) -> str:
    return f"{render_value(pair[0], key)} : {render_value(pair[1], None)}"
