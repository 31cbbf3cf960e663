"""Compile a parsed iptables Ruleset into engine chains (one CBase per built-in chain)."""

from __future__ import annotations

from . import engine as E
from . import values as V
from .iptables import BUILTIN_CHAINS, IptRule, Match, Ruleset, Table, jump_key
from .results import RuleRef

# Netfilter hook priorities of the iptables tables (include/uapi/linux/netfilter_ipv4.h).
TABLE_PRIORITY = {"raw": -300, "mangle": -150, "filter": 0, "security": 50}
NAT_PRIORITY = {"prerouting": -100, "output": -100, "input": 100, "postrouting": 100}
NAT_MANIP = {"prerouting": "dst", "output": "dst", "input": "src", "postrouting": "src"}
BACKEND_RANK = {"iptables-legacy": 0, "iptables-nft": 1, "nftables": 2}


def compile_ruleset(ruleset: Ruleset, backend: str) -> list[E.CBase]:
    bases: list[E.CBase] = []
    for table in ruleset.tables.values():
        bases += _compile_table(table, backend)
    return bases


def _compile_table(table: Table, backend: str) -> list[E.CBase]:
    builtins = BUILTIN_CHAINS.get(table.name)
    if builtins is None:
        return []  # a table the kernel does not hook (or one we do not know): nothing runs it
    chains = _LazyChains(table, backend)
    bases = []
    for name in builtins:
        chain = table.chains.get(name)
        if chain is None:
            continue
        hook = name.lower()
        policy = (chain.policy or "ACCEPT").lower()
        nat = NAT_MANIP[hook] if table.name == "nat" else None
        prio = NAT_PRIORITY[hook] if nat else TABLE_PRIORITY[table.name]
        bases.append(
            E.CBase(
                backend=backend,
                family="ip",
                table=table.name,
                chain=chains.get(name),
                hook=hook,
                priority=prio,
                sub_priority=prio,
                policy="accept" if policy == "accept" else "drop",
                policy_ref=RuleRef(
                    backend, table.name, name, None, f":{name} {chain.policy or 'ACCEPT'}",
                    chain.packets, chain.bytes,
                ),
                nat=nat,
                rank=BACKEND_RANK[backend],
                table_chains=chains,
            )
        )
    return bases


class _LazyChains:
    """The engine chains of one table, made when first named (by a hook or a jump): a rule is
    parsed and compiled when a walk first reaches it, and long jump lists are indexed from their
    rule text (engine.CChain), so a table of 30,000 chains costs what one packet's walk reads.
    Iterating makes every chain (Netfilter.rules)."""

    def __init__(self, table: Table, backend: str):
        self.table = table
        self.backend = backend
        self._made: dict[str, E.CChain] = {}
        self._all: list[E.CChain] | None = None

    def get(self, name: str) -> E.CChain | None:
        made = self._made.get(name)
        if made is None:
            chain = self.table.chains.get(name)
            if chain is None:
                return None
            made = self._made[name] = E.CChain(
                name, size=len(chain),
                make=lambda i: _compile_rule(chain.rule(i), self.table.name, self.backend, self),
                keys=lambda: [jump_key(chain.raw(i)) for i in range(len(chain))],
                ref=lambda i: RuleRef(self.backend, self.table.name, name, i + 1, *chain.summary(i)),
            )
        return made

    def __iter__(self):
        if self._all is None:  # values(): a live table (live.py) reads the rest of itself at once
            self._all = [self.get(chain.name) for chain in self.table.chains.values()]
        return iter(self._all)


def _compile_rule(rule: IptRule, table: str, backend: str, chains: "_LazyChains") -> E.CRule:
    ref = RuleRef(backend, table, rule.chain, rule.number, rule.text, rule.packets, rule.bytes,
                  rule.comment)
    preds, unknown_preds, random = _generic_preds(rule), [], None
    for match in rule.matches:
        if match.module == "statistic" and match.known:
            p = _random_probability(match)
            if p is None:
                unknown_preds.append(_unknown)
            else:
                random = p if random is None else random * p
            continue
        compiled = _match_preds(match) if match.known else None
        if compiled is None:
            unknown_preds.append(_unknown)
        else:
            preds += compiled
    # Undecidable matches last, so a rule that fails on a known match is not reported.
    return E.CRule(ref, tuple(preds + unknown_preds), random, _target_actions(rule, chains))


def _unknown(st) -> None:
    return None


# ---------------------------------------------------------------------------------------------
# Generic matches: -s -d -i -o -p -f


def _generic_preds(rule: IptRule) -> list:
    preds = []
    if rule.src is not None:
        preds.append(_addr_pred("src", rule.src.nets, rule.src.negated))
    if rule.dst is not None:
        preds.append(_addr_pred("dst", rule.dst.nets, rule.dst.negated))
    if rule.in_iface is not None:
        preds.append(_iface_pred("iif", rule.in_iface.name, rule.in_iface.negated))
    if rule.out_iface is not None:
        preds.append(_iface_pred("oif", rule.out_iface.name, rule.out_iface.negated))
    if rule.proto is not None and rule.proto.number is not None:
        preds.append(_proto_pred(rule.proto.number, rule.proto.negated))
    elif rule.proto is not None and rule.proto.negated:
        preds.append(lambda st: False)  # "! -p all" matches nothing
    if rule.fragment is not None:
        # Our packets are never non-first fragments.
        preds.append((lambda st: False) if rule.fragment else (lambda st: True))
    return preds


def _addr_pred(field: str, nets: list[tuple[int, int]], neg: bool):
    if len(nets) == 1:
        net, mask = nets[0]
        if field == "src":
            return lambda st: ((st.src & mask) == net) is not neg
        return lambda st: ((st.dst & mask) == net) is not neg

    def pred(st):
        addr = st.src if field == "src" else st.dst
        return any((addr & m) == n for n, m in nets) is not neg

    return pred


def _iface_pred(field: str, name: str, neg: bool):
    # The kernel compares against "" when the hook has no such interface.
    if name.endswith("+"):
        prefix = name[:-1]
        if field == "iif":
            return lambda st: (st.iif or "").startswith(prefix) is not neg
        return lambda st: (st.oif or "").startswith(prefix) is not neg
    if field == "iif":
        return lambda st: ((st.iif or "") == name) is not neg
    return lambda st: ((st.oif or "") == name) is not neg


def _proto_pred(number: int, neg: bool):
    def pred(st):
        if st.proto is None:
            return None
        return (st.proto == number) is not neg

    return pred


# ---------------------------------------------------------------------------------------------
# -m modules


def _match_preds(match: Match) -> list | None:
    """Predicates for one known match module; None when it cannot be evaluated."""
    builder = _MODULES.get(match.module)
    if builder is None:
        return None
    preds = []
    for opt in match.options:
        pred = builder(match, opt)
        if pred is _SKIP:
            continue
        if pred is None:
            return None
        preds.append(pred)
    return preds


_SKIP = object()


def _ports_pred(proto: int | None, which: str, ranges, neg: bool):
    """`proto` None = any port-carrying protocol (multiport)."""

    def pred(st):
        if proto is not None and st.proto != proto:
            return False if st.proto is not None else None
        if proto is None and st.proto not in V.PORT_PROTOS:
            return False if st.proto is not None else None
        if which == "both":
            if st.sport is None or st.dport is None:
                return None
            hit = any(lo <= st.sport <= hi or lo <= st.dport <= hi for lo, hi in ranges)
        else:
            port = st.dport if which == "dport" else st.sport
            if port is None:
                return None
            hit = any(lo <= port <= hi for lo, hi in ranges)
        return hit is not neg

    return pred


def _l4_option(match: Match, opt):
    proto = V.PROTO_NUMBERS[match.module]
    if opt.name in ("--dport", "--destination-port"):
        return _ports_pred(proto, "dport", opt.value, opt.negated)
    if opt.name in ("--sport", "--source-port"):
        return _ports_pred(proto, "sport", opt.value, opt.negated)
    if opt.name in ("--tcp-flags", "--syn"):
        mask, comp = opt.value
        neg = opt.negated

        def flags_pred(st):
            if st.proto != 6:
                return False
            return (st.tcp_flags & mask) == comp if not neg else (st.tcp_flags & mask) != comp

        return flags_pred
    return None


def _multiport_option(match: Match, opt):
    which = {"--dports": "dport", "--destination-ports": "dport", "--sports": "sport",
             "--source-ports": "sport", "--ports": "both"}[opt.name]
    return _ports_pred(None, which, opt.value, opt.negated)


def _icmp_option(match: Match, opt):
    typ, code = opt.value
    neg = opt.negated

    def pred(st):
        if st.proto != 1:
            return False
        hit = typ == 255 or (st.icmp_type == typ and (code is None or st.icmp_code == code))
        return hit is not neg

    return pred


def _mark_option(match: Match, opt):
    value, mask = opt.value
    neg = opt.negated
    return lambda st: ((st.mark & mask) == value) is not neg


def _ctstate_option(match: Match, opt):
    states = opt.value
    neg = opt.negated
    # SNAT/DNAT are conntrack status bits a single-hook snapshot does not carry.
    uncertain = bool(states & {"SNAT", "DNAT"})

    def pred(st):
        if st.ct in states:
            return not neg
        if uncertain:
            return None
        return neg

    return pred


def _addrtype_option(match: Match, opt):
    if opt.name in ("--limit-iface-in", "--limit-iface-out"):
        return _SKIP  # approximated: local addresses of any interface count
    types = opt.value
    neg = opt.negated
    uncertain = bool(types & E.UNCERTAIN_TYPES)
    field = "src" if opt.name == "--src-type" else "dst"

    def pred(st):
        kind = E.addr_type(st, st.src if field == "src" else st.dst)
        if kind in types:
            return not neg
        if uncertain and kind == "UNICAST":
            return None
        return neg

    return pred


def _comment_option(match: Match, opt):
    return _SKIP


def _limit_option(match: Match, opt):
    return _SKIP  # one test packet is within any rate limit


def _length_option(match: Match, opt):
    lo, hi = opt.value
    neg = opt.negated
    return lambda st: (lo <= st.size <= hi) is not neg


def _iprange_option(match: Match, opt):
    lo, hi = opt.value
    neg = opt.negated
    if opt.name == "--src-range":
        return lambda st: (lo <= st.src <= hi) is not neg
    return lambda st: (lo <= st.dst <= hi) is not neg


def _pkttype_option(match: Match, opt):
    want = opt.value
    neg = opt.negated

    def pred(st):
        kind = E.addr_type(st, st.dst)
        have = {"MULTICAST": "multicast", "BROADCAST": "broadcast"}.get(kind, "unicast")
        if want in ("host", "otherhost"):
            return None
        return (have == want) is not neg

    return pred


def _policy_option(match: Match, opt):
    if opt.name == "--dir":
        return _SKIP
    # Pod traffic in a flannel VXLAN cluster is never IPsec-protected.
    if opt.value == "none":
        return lambda st: not opt.negated
    if opt.value == "ipsec":
        return lambda st: opt.negated
    return None


def _state_like(match: Match, opt):
    return _ctstate_option(match, opt)


_MODULES = {
    "tcp": _l4_option,
    "udp": _l4_option,
    "sctp": _l4_option,
    "udplite": _l4_option,
    "icmp": _icmp_option,
    "multiport": _multiport_option,
    "mark": _mark_option,
    "conntrack": _ctstate_option,
    "state": _state_like,
    "addrtype": _addrtype_option,
    "comment": _comment_option,
    "limit": _limit_option,
    "length": _length_option,
    "iprange": _iprange_option,
    "pkttype": _pkttype_option,
    "policy": _policy_option,
}


def _random_probability(match: Match) -> float | None:
    mode = match.option("--mode")
    prob = match.option("--probability")
    if mode is None or mode.value != "random" or prob is None:
        return None
    return 1.0 - prob.value if prob.negated else prob.value


# ---------------------------------------------------------------------------------------------
# Targets


def _target_actions(rule: IptRule, chains: dict) -> tuple:
    t = rule.target
    if t is None:
        return ()
    actions: list[tuple] = []
    if any(not o.known for o in t.options):
        actions.append((E.UNKNOWN,))
    if t.kind == "chain":
        actions.append((E.GOTO if t.goto else E.JUMP, chains.get(t.name)))
    elif t.kind == "verdict":
        actions.append(_verdict_action(t))
    elif t.kind == "extension":
        actions += _extension_actions(t)
    else:
        actions.append((E.UNKNOWN,))
    return tuple(actions)


def _verdict_action(t) -> tuple:
    if t.name == "ACCEPT":
        return (E.ACCEPT,)
    if t.name == "DROP":
        return (E.DROP,)
    if t.name == "RETURN":
        return (E.RETURN,)
    opt = t.option("--reject-with")
    return (E.REJECT, opt.value if opt is not None else "icmp-port-unreachable")


def _extension_actions(t) -> list[tuple]:
    name = t.name
    if name == "DNAT":
        to = t.option("--to-destination")
        return [(E.DNAT, *to.value)] if to is not None else [(E.NAT_UNKNOWN,)]
    if name == "SNAT":
        to = t.option("--to-source")
        return [(E.SNAT, *to.value)] if to is not None else [(E.NAT_UNKNOWN,)]
    if name in ("MASQUERADE", "REDIRECT"):
        ports = t.option("--to-ports")
        return [(E.MASQ if name == "MASQUERADE" else E.REDIRECT,
                 ports.value[0] if ports is not None else None)]
    if name == "MARK":
        return [_mark_action(t)]
    if name in ("NOTRACK",) or (name == "CT" and t.option("--notrack") is not None):
        return [(E.NOTRACK,)]
    if name in ("LOG", "NFLOG", "TRACE", "AUDIT", "CHECKSUM", "CT"):
        return [(E.NOOP,)]
    return [(E.UNKNOWN,)]  # CONNMARK, TCPMSS, NFQUEUE, TPROXY...: kept going, reported


def _mark_action(t) -> tuple:
    """MARK as mark = (mark & keep) ^ flip, which expresses every MARK variant."""
    for opt in t.options:
        value, mask = opt.value
        if opt.name == "--set-xmark":
            return (E.MARK, ~mask & V.MASK32, value)
        if opt.name == "--set-mark":
            return (E.MARK, ~(mask | value) & V.MASK32, value)
        if opt.name == "--or-mark":
            return (E.MARK, ~value & V.MASK32, value)
        if opt.name == "--and-mark":
            return (E.MARK, value, 0)
        if opt.name == "--xor-mark":
            return (E.MARK, V.MASK32, value)
    return (E.UNKNOWN,)
