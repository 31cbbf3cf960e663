"""Compile parsed nftables base chains (nft.py) into engine chains.

An nft rule is a sequence of expressions; the leading `match` expressions become predicates and
the rest become actions in order (a match after a statement becomes a GUARD action). Every
selector compiles to a getter returning the packet's value for it, NOVALUE when the kernel would
stop the rule (e.g. `tcp dport` on an ICMP packet, `iifname` in the output hook), or
UNKNOWN_VALUE when a snapshot cannot tell (`ct status dnat`, `socket`...).
"""

from __future__ import annotations

from typing import Any, Callable

from . import engine as E
from . import values as V
from .compile_ipt import BACKEND_RANK, NAT_MANIP, NAT_PRIORITY
from .nft import NftChain, NftRule, NftRuleset, NftTable
from .results import RuleRef

EVALUATED_FAMILIES = ("ip", "inet")  # the tables an IPv4 packet traverses at the IP hooks
from ..hooks import NF_HOOKS as HOOKS  # noqa: E402 - one home for hook names

NOVALUE, UNKNOWN_VALUE = E.NOVALUE, E.UNKNOWN_VALUE


class _Unsupported(Exception):
    """An expression shape the evaluator does not implement."""


# JSON that is valid but not shaped like libnftables output surfaces as these.
_MALFORMED = (_Unsupported, AttributeError, TypeError, KeyError, ValueError, IndexError)


def compile_ruleset(ruleset: NftRuleset) -> list[E.CBase]:
    bases: list[E.CBase] = []
    for table in ruleset.tables.values():
        if table.family not in EVALUATED_FAMILIES:
            continue
        chains = {name: E.CChain(name) for name in table.chains}
        for name, chain in table.chains.items():
            chains[name].rules = [_compile_rule(r, table, chains) for r in chain.rules]
        for name, chain in table.chains.items():
            if chain.base and chain.hook in HOOKS:
                base = _base(chain, chains[name])
                base.table_chains = list(chains.values())
                bases.append(base)
    return bases


def _base(chain: NftChain, cchain: E.CChain) -> E.CBase:
    prio = chain.priority if chain.priority is not None else 0
    nat = NAT_MANIP.get(chain.hook) if chain.type == "nat" else None
    policy = chain.policy or "accept"
    head = f"type {chain.type} hook {chain.hook} priority {prio}; policy {policy};"
    return E.CBase(
        backend="nftables",
        family=chain.family,
        table=chain.table,
        chain=cchain,
        hook=chain.hook,
        # NAT chains run inside the kernel's NAT hook, whatever their own priority says.
        priority=NAT_PRIORITY[chain.hook] if nat else prio,
        sub_priority=prio,
        policy="accept" if policy == "accept" else "drop",
        policy_ref=RuleRef("nftables", chain.table, chain.name, None,
                           f"chain {chain.name} {{ {head} }}", family=chain.family),
        nat=nat,
        rank=BACKEND_RANK["nftables"],
    )


def _compile_rule(rule: NftRule, table: NftTable, chains: dict) -> E.CRule:
    ref = RuleRef("nftables", rule.table, rule.chain, rule.position, rule.text, rule.packets,
                  rule.bytes, rule.comment, rule.family, rule.handle)
    ctx = _Ctx(table, chains)
    preds, unknown_preds, actions = [], [], []
    random: float | None = None
    for expr in rule.expr:
        kind = next(iter(expr)) if isinstance(expr, dict) and len(expr) == 1 else None
        leading = not actions
        try:
            if kind == "match" and leading:
                p = _random_match(expr["match"])
                if p is not None:
                    random = p if random is None else random * p
                else:
                    preds.append(_match_pred(expr["match"], ctx))
            elif kind == "xt" and _xt_is_match(expr["xt"]) and leading:
                unknown_preds.append(_unknown)
            else:
                action = _statement(expr, kind, ctx)
                if action is not None:
                    actions.append(action)
        except _MALFORMED:
            # A shape this evaluator does not know: the rule is reported, never guessed.
            if leading:
                unknown_preds.append(_unknown)
            else:
                actions.append((E.UNKNOWN,))
    return E.CRule(ref, tuple(preds + unknown_preds), random, tuple(actions))


def _unknown(st) -> None:
    return None


def _never(st) -> bool:
    return False


class _Ctx:
    def __init__(self, table: NftTable, chains: dict):
        self.table = table
        self.chains = chains


# ---------------------------------------------------------------------------------------------
# Statements


def _statement(expr: Any, kind: str | None, ctx: _Ctx) -> tuple | None:
    body = expr.get(kind) if kind else None
    if kind in ("limit", "quota"):
        # `limit rate over N` / `quota over N` match only past the limit: one test packet is not.
        return (E.GUARD, _never) if isinstance(body, dict) and body.get("inv") else None
    if kind in ("counter", "log", "set", "map", "comment"):
        return None  # no effect on the packet's fate
    if kind == "accept":
        return (E.ACCEPT,)
    if kind == "drop":
        return (E.DROP,)
    if kind == "continue":
        return (E.CONTINUE,)
    if kind == "return":
        return (E.RETURN,)
    if kind in ("jump", "goto"):
        target = body.get("target") if isinstance(body, dict) else None
        return (E.JUMP if kind == "jump" else E.GOTO, ctx.chains.get(target))
    if kind == "reject":
        return (E.REJECT, _reject_with(body))
    if kind == "notrack":
        return (E.NOTRACK,)
    if kind in ("dnat", "snat"):
        return _nat_action(kind, body)
    if kind in ("masquerade", "redirect"):
        port = _first_port(body.get("port")) if isinstance(body, dict) else None
        return (E.MASQ if kind == "masquerade" else E.REDIRECT, port)
    if kind == "mangle":
        return _mangle_action(body)
    if kind == "match":
        try:
            return (E.GUARD, _match_pred(body, ctx))
        except _Unsupported:
            return (E.GUARD, _unknown)
    if kind == "xt":
        return (E.GUARD, _unknown) if _xt_is_match(body) else (E.UNKNOWN,)
    if kind == "vmap":
        return _vmap_action(body, ctx)
    return (E.UNKNOWN,)  # queue, fwd, dup, tproxy, synproxy, ct helper/timeout...


def _xt_is_match(body: Any) -> bool:
    # nft < 1.0 prints `"xt": null`; treat an unnamed xt as a match (the rule cannot be decided).
    return not isinstance(body, dict) or body.get("type") != "target"


def _reject_with(body: Any) -> str:
    if not isinstance(body, dict):
        return "icmp port-unreachable"
    typ = body.get("type", "icmp")
    if typ == "tcp reset":
        return "tcp reset"
    return f"{typ} {body.get('expr', 'port-unreachable')}"


def _nat_action(kind: str, body: Any) -> tuple:
    if not isinstance(body, dict) or not isinstance(body.get("addr"), str):
        return (E.NAT_UNKNOWN,)
    try:
        addr = V.ip_to_int(body["addr"])
        port = _first_port(body.get("port"))
    except (ValueError, _Unsupported):
        return (E.NAT_UNKNOWN,)
    return (E.DNAT if kind == "dnat" else E.SNAT, addr, port)


def _first_port(port: Any) -> int | None:
    if port is None:
        return None
    if isinstance(port, int):
        return port
    if isinstance(port, dict) and "range" in port and isinstance(port["range"][0], int):
        return port["range"][0]
    raise _Unsupported("port expression")


def _mangle_action(body: Any) -> tuple:
    if not isinstance(body, dict):
        return (E.UNKNOWN,)
    key = body.get("key")
    if key == {"meta": {"key": "nftrace"}}:
        return (E.NOOP,)
    if key != {"meta": {"key": "mark"}}:
        return (E.UNKNOWN,)
    parts = _mark_update(body.get("value"))
    return (E.MARK, *parts) if parts is not None else (E.UNKNOWN,)


def _mark_update(value: Any) -> tuple[int, int] | None:
    """`meta mark set EXPR` as (keep, flip): mark = (mark & keep) ^ flip."""
    if isinstance(value, int):
        return 0, value & V.MASK32
    if value == {"meta": {"key": "mark"}}:
        return V.MASK32, 0
    if not isinstance(value, dict) or len(value) != 1:
        return None
    (op, args), = value.items()
    if op not in ("&", "|", "^") or not isinstance(args, list) or len(args) != 2 \
            or not isinstance(args[1], int):
        return None
    inner = _mark_update(args[0])
    if inner is None:
        return None
    keep, flip = inner
    c = args[1] & V.MASK32
    if op == "&":
        return keep & c, flip & c
    if op == "^":
        return keep, flip ^ c
    return keep & ~c & V.MASK32, (flip & ~c) | c  # "|"


def _vmap_action(body: Any, ctx: _Ctx) -> tuple:
    if not isinstance(body, dict):
        return (E.UNKNOWN,)
    key, data = body.get("key"), body.get("data")
    try:
        pairs = _map_pairs(data, ctx)
        if isinstance(key, dict) and "numgen" in key:
            return _numgen_action(key["numgen"], pairs, ctx)
        getter, kind = _getter(key)
        entries = [(_element_matcher(k, kind, ctx), _verdict_of(v, ctx)) for k, v in pairs]
    except _Unsupported:
        return (E.UNKNOWN,)
    return (E.VMAP, getter, entries)


def _map_pairs(data: Any, ctx: _Ctx) -> list:
    if isinstance(data, str) and data.startswith("@"):
        nset = ctx.table.sets.get(data[1:])
        if nset is None or nset.map != "verdict":
            raise _Unsupported("unknown verdict map")
        items = nset.elements
    elif isinstance(data, dict) and "set" in data:
        items = data["set"]
    else:
        raise _Unsupported("vmap data")
    pairs = []
    for item in items if isinstance(items, list) else [items]:
        if not isinstance(item, list) or len(item) != 2:
            raise _Unsupported("vmap element")
        pairs.append((_unwrap_elem(item[0]), item[1]))
    return pairs


def _verdict_of(value: Any, ctx: _Ctx) -> tuple:
    if not isinstance(value, dict) or len(value) != 1:
        raise _Unsupported("verdict")
    (kind, body), = value.items()
    action = _statement(value, kind, ctx)
    if action is None or action[0] not in (E.ACCEPT, E.DROP, E.RETURN, E.JUMP, E.GOTO,
                                           E.CONTINUE, E.REJECT):
        raise _Unsupported("verdict")
    return action


def _numgen_action(numgen: Any, pairs: list, ctx: _Ctx) -> tuple:
    """Probability of each element of `numgen random mod N [offset O] vmap {...}`."""
    if not isinstance(numgen, dict) or numgen.get("mode") != "random":
        raise _Unsupported("numgen mode")
    mod, offset = numgen.get("mod"), numgen.get("offset", 0)
    if not isinstance(mod, int) or not 0 < mod <= 65536 or not isinstance(offset, int):
        raise _Unsupported("numgen range")
    values = range(offset, offset + mod)
    alternatives, claimed = [], set()
    for key, verdict in pairs:
        match = _element_matcher(key, "int", ctx)
        hits = {v for v in values if v not in claimed and match(v)}
        claimed |= hits
        alternatives.append((len(hits) / mod, _verdict_of(verdict, ctx)))
    return (E.NUMGEN, alternatives, 1.0 - len(claimed) / mod)


def _random_match(body: Any) -> float | None:
    """`numgen random mod N == X` as a match: the probability it holds."""
    left = body.get("left") if isinstance(body, dict) else None
    if not (isinstance(left, dict) and "numgen" in left):
        return None
    numgen = left["numgen"]
    if not isinstance(numgen, dict) or numgen.get("mode") != "random":
        raise _Unsupported("numgen")
    mod, offset = numgen.get("mod"), numgen.get("offset", 0)
    if not isinstance(mod, int) or not 0 < mod <= 65536:
        raise _Unsupported("numgen range")
    match = _matcher(body.get("right"), "int", None)
    op = body.get("op", "==")
    ops = {"==": match, "in": match, "!=": lambda v: not match(v)}
    if op not in ops:
        raise _Unsupported("numgen op")
    hits = sum(1 for v in range(offset, offset + mod) if ops[op](v))
    return hits / mod


# ---------------------------------------------------------------------------------------------
# Match expressions


def _match_pred(body: Any, ctx: _Ctx):
    if not isinstance(body, dict):
        raise _Unsupported("match body")
    getter, kind = _getter(body.get("left"))
    op = body.get("op", "==")
    right = body.get("right")
    if op in ("==", "in", "!="):
        matcher = _matcher(right, kind, ctx)
        neg = op == "!="
        uncertain = kind == "fibtype" and _mentions_uncertain_type(right)

        def pred(st):
            v = getter(st)
            if v is NOVALUE:
                return False
            if v is UNKNOWN_VALUE or (uncertain and v == "unicast"):
                return None
            return matcher(v) is not neg

        return pred
    if op in ("<", ">", "<=", ">=") and isinstance(right, int) and kind == "int":
        compare = {"<": int.__lt__, ">": int.__gt__, "<=": int.__le__, ">=": int.__ge__}[op]

        def cmp_pred(st):
            v = getter(st)
            if v is NOVALUE:
                return False
            if v is UNKNOWN_VALUE:
                return None
            return compare(v, right)

        return cmp_pred
    raise _Unsupported(f"match op {op}")


def _mentions_uncertain_type(right: Any) -> bool:
    text = str(right).upper()
    return any(t in text for t in E.UNCERTAIN_TYPES)


Getter = Callable[[Any], Any]


def _getter(expr: Any) -> tuple[Getter, Any]:
    """(getter, kind) for a selector; kind says how to read constants compared with it."""
    if not isinstance(expr, dict) or len(expr) != 1:
        raise _Unsupported("selector")
    (key, body), = expr.items()
    if key == "payload" and isinstance(body, dict) and "protocol" in body:
        return _payload_getter(body["protocol"], body.get("field"))
    if key == "meta" and isinstance(body, dict):
        return _meta_getter(body.get("key"))
    if key == "ct" and isinstance(body, dict) and "dir" not in body:
        if body.get("key") == "state":
            return (lambda st: st.ct.lower()), "ctstate"
        return (lambda st: UNKNOWN_VALUE), "str"
    if key == "fib" and isinstance(body, dict):
        return _fib_getter(body)
    if key in ("&", "|", "^") and isinstance(body, list) and len(body) == 2:
        return _binop_getter(key, body)
    if key == "concat" and isinstance(body, list):
        parts = [_getter(b) for b in body]
        getters = [g for g, _ in parts]

        def concat(st):
            values = []
            for g in getters:
                v = g(st)
                if v is NOVALUE or v is UNKNOWN_VALUE:
                    return v
                values.append(v)
            return tuple(values)

        return concat, tuple(k for _, k in parts)
    raise _Unsupported(f"selector {key}")


def _payload_getter(proto: str, field: Any) -> tuple[Getter, Any]:
    if proto == "ip":
        if field == "saddr":
            return (lambda st: st.src), "ip"
        if field == "daddr":
            return (lambda st: st.dst), "ip"
        if field == "protocol":
            return (lambda st: UNKNOWN_VALUE if st.proto is None else st.proto), "proto"
        if field == "length":
            return (lambda st: st.size), "int"
        raise _Unsupported(f"ip {field}")
    if proto in ("tcp", "udp", "sctp", "udplite", "th") and field in ("sport", "dport"):
        number = V.PROTO_NUMBERS.get(proto)
        attr = field

        def port(st):
            if (number is not None and st.proto != number) or st.proto not in V.PORT_PROTOS:
                return UNKNOWN_VALUE if st.proto is None else NOVALUE
            value = getattr(st, attr)
            return UNKNOWN_VALUE if value is None else value

        return port, "int"
    if proto == "icmp" and field in ("type", "code"):
        attr = "icmp_type" if field == "type" else "icmp_code"
        return (lambda st: getattr(st, attr) if st.proto == 1 else NOVALUE), "icmptype"
    raise _Unsupported(f"{proto} {field}")


def _meta_getter(key: Any) -> tuple[Getter, Any]:
    if key == "l4proto":
        return (lambda st: UNKNOWN_VALUE if st.proto is None else st.proto), "proto"
    if key == "nfproto":
        return (lambda st: "ipv4"), "str"
    if key == "protocol":
        return (lambda st: "ip"), "str"
    if key in ("iifname", "iif"):
        return (lambda st: NOVALUE if st.iif is None else st.iif), "ifname"
    if key in ("oifname", "oif"):
        return (lambda st: NOVALUE if st.oif is None else st.oif), "ifname"
    if key == "mark":
        return (lambda st: st.mark), "int"
    if key == "length":
        return (lambda st: st.size), "int"
    if key == "pkttype":
        def pkttype(st):
            kind = E.addr_type(st, st.dst)
            return {"MULTICAST": "multicast", "BROADCAST": "broadcast"}.get(kind, "host")
        return pkttype, "str"
    raise _Unsupported(f"meta {key}")


def _fib_getter(body: dict) -> tuple[Getter, Any]:
    flags = body.get("flags", [])
    flags = [flags] if isinstance(flags, str) else list(flags)
    if body.get("result") != "type":
        raise _Unsupported("fib result")  # oif / check need the routing table
    if "daddr" in flags:
        return (lambda st: E.addr_type(st, st.dst).lower()), "fibtype"
    if "saddr" in flags:
        return (lambda st: E.addr_type(st, st.src).lower()), "fibtype"
    raise _Unsupported("fib flags")


def _binop_getter(op: str, body: list) -> tuple[Getter, Any]:
    inner, kind = _getter(body[0])
    const = body[1]
    if kind != "int" or not isinstance(const, int):
        raise _Unsupported("binop")
    fn = {"&": int.__and__, "|": int.__or__, "^": int.__xor__}[op]

    def binop(st):
        v = inner(st)
        return v if v is NOVALUE or v is UNKNOWN_VALUE else fn(v, const)

    return binop, "int"


# ---------------------------------------------------------------------------------------------
# Right-hand values


def _scalar(value: Any, kind: Any) -> Any:
    """A constant in the form the getter of `kind` returns."""
    if kind == "ip":
        if not isinstance(value, str):
            raise _Unsupported("address")
        try:
            return V.ip_to_int(value)
        except ValueError:
            raise _Unsupported("address") from None
    if kind == "int":
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value in V.SERVICES:
            return V.SERVICES[value]
        raise _Unsupported("number")
    if kind == "proto":
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value in V.PROTO_NUMBERS:
            return V.PROTO_NUMBERS[value]
        raise _Unsupported("protocol")
    if kind == "icmptype":
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value in V.ICMP_TYPES:
            return V.ICMP_TYPES[value][0]
        raise _Unsupported("icmp type")
    if kind in ("str", "ctstate", "fibtype"):
        if not isinstance(value, str):
            raise _Unsupported("string")
        return value.lower()
    if kind == "ifname":
        if not isinstance(value, str):
            raise _Unsupported("interface")
        return value
    raise _Unsupported(f"value of kind {kind}")


def _unwrap_elem(value: Any) -> Any:
    if isinstance(value, dict) and "elem" in value and isinstance(value["elem"], dict):
        return value["elem"].get("val")
    return value


def _matcher(right: Any, kind: Any, ctx: _Ctx | None) -> Callable[[Any], bool]:
    """A membership test for the right-hand side of a match."""
    if isinstance(right, str) and right.startswith("@"):
        nset = ctx.table.sets.get(right[1:]) if ctx is not None else None
        if nset is None or nset.map is not None:
            raise _Unsupported("set reference")
        return _set_matcher(nset.elements, kind, ctx)
    if isinstance(right, dict) and "set" in right:
        items = right["set"]
        return _set_matcher(items if isinstance(items, list) else [items], kind, ctx)
    if isinstance(right, list):  # flag lists: ct state established,related
        return _set_matcher(right, kind, ctx)
    return _element_matcher(right, kind, ctx)


def _set_matcher(items: list, kind: Any, ctx: _Ctx | None) -> Callable[[Any], bool]:
    items = [_unwrap_elem(i) for i in items]
    plain = kind not in ("ifname",) and not isinstance(kind, tuple)
    if plain and all(not isinstance(i, (dict, list)) for i in items):
        members = frozenset(_scalar(i, kind) for i in items)
        return members.__contains__
    matchers = [_element_matcher(i, kind, ctx) for i in items]
    return lambda v: any(m(v) for m in matchers)


def _element_matcher(value: Any, kind: Any, ctx: _Ctx | None) -> Callable[[Any], bool]:
    value = _unwrap_elem(value)
    if isinstance(kind, tuple):
        if not (isinstance(value, dict) and isinstance(value.get("concat"), list)
                and len(value["concat"]) == len(kind)):
            raise _Unsupported("concat element")
        parts = [_element_matcher(v, k, ctx) for v, k in zip(value["concat"], kind)]
        return lambda t: all(m(x) for m, x in zip(parts, t))
    if isinstance(value, dict) and len(value) == 1:
        (key, body), = value.items()
        if key == "prefix" and kind == "ip" and isinstance(body, dict):
            try:
                net, mask = V.parse_net(f"{body.get('addr')}/{body.get('len')}")
            except ValueError:
                raise _Unsupported("prefix") from None
            return lambda v: (v & mask) == net
        if key == "range" and isinstance(body, list) and len(body) == 2:
            lo, hi = _scalar(body[0], kind), _scalar(body[1], kind)
            return lambda v: lo <= v <= hi
        if key == "set" or key == "elem":
            return _matcher(value, kind, ctx)
        raise _Unsupported(f"value {key}")
    if kind == "ifname":
        pattern = _scalar(value, kind)
        return lambda v: V.iface_matches(pattern, v)
    const = _scalar(value, kind)
    return lambda v: v == const
