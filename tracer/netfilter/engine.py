"""The chain walker shared by every backend.

Both iptables rules and nftables rules are compiled (compile_ipt.py, compile_nft.py) into the
same small form: a tuple of match predicates, an optional random-match probability, and a tuple
of actions. A predicate takes the walk state and answers True, False, or None when it cannot be
decided from a snapshot (an ipset, a physdev match...); a rule with an undecidable match is
skipped and reported, never guessed.

A walk state carries the packet being rewritten plus a call stack of (chain, next rule index), so
jump/goto/return are plain stack operations and a random match (kube-proxy's endpoint choice) can
fork the state into two independent walks that each resume where they are.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

from . import values as V
from .index import JumpIndex, build_index
from .results import RuleRef

# Action opcodes. An action is a tuple (opcode, *args).
ACCEPT, DROP, REJECT, RETURN, JUMP, GOTO = range(6)
DNAT, SNAT, MASQ, REDIRECT, MARK, NOTRACK, NOOP, UNKNOWN, GUARD, VMAP, NUMGEN, CONTINUE = range(6, 18)
NAT_UNKNOWN = 18

# Getter results for nft expressions: the expression cannot be evaluated on this packet (the
# kernel stops the rule: NFT_BREAK), or podpath cannot know the value.
NOVALUE = object()
UNKNOWN_VALUE = object()

MAX_STACK = 64  # the kernel allows 16 (legacy) / 16 (nft) nested jumps; more means a loop
MAX_STEPS = 200_000
MAX_BRANCHES = 512

Pred = Callable[["State"], "bool | None"]


class CChain:
    """A chain of compiled rules. A backend may hand over a `make(i)` that compiles rule i when
    the walk first reaches it, and `keys` that index the chain by destination (see index.py), so
    a packet's walk through 10,000 Services compiles the few rules it can match."""

    __slots__ = ("name", "_rules", "_make", "_keys", "_ref", "_index")

    def __init__(self, name: str, rules: list["CRule"] | None = None, size: int = 0,
                 make: Callable[[int], "CRule"] | None = None,
                 keys: Callable[[], list] | None = None,
                 ref: Callable[[int], RuleRef] | None = None):
        self.name = name
        self._rules: list = list(rules) if rules is not None else [None] * size
        self._make = make
        self._keys = keys  # () -> one jump_key (or None) per rule, read when first needed
        self._ref = ref  # i -> rule i's RuleRef without compiling it
        self._index: JumpIndex | None | bool = False  # False: not built yet

    def refs(self) -> list[RuleRef]:
        """Every rule's RuleRef (listing a chain need not compile it)."""
        if self._ref is None:
            return [r.ref for r in self.rules]
        return [r.ref if r is not None else self._ref(i) for i, r in enumerate(self._rules)]

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        return f"CChain({self.name!r}, {len(self._rules)} rules)"

    @property
    def rules(self) -> list["CRule"]:
        return [self.rule(i) for i in range(len(self._rules))]

    @rules.setter
    def rules(self, rules: list["CRule"]) -> None:
        self._rules, self._make, self._ref, self._index = list(rules), None, None, False

    def rule(self, i: int) -> "CRule":
        r = self._rules[i]
        if r is None:
            r = self._rules[i] = self._make(i)
        return r

    def candidates(self, st: "State") -> list[int] | None:
        """Positions of the rules that can match this packet, rising; None: every rule."""
        index = self._index
        if index is False:
            index = self._index = build_index(self._keys()) if self._keys is not None else None
        return None if index is None else index.candidates(st)


@dataclass
class CRule:
    ref: RuleRef
    matches: tuple = ()
    random: float | None = None
    actions: tuple = ()


@dataclass
class CBase:
    """A chain registered at a hook: an iptables built-in chain or an nft base chain."""

    backend: str
    family: str
    table: str
    chain: CChain
    hook: str
    priority: int  # where the kernel runs it among all hooks' users
    sub_priority: int  # its own priority (orders NAT chains within the NAT hook)
    policy: str  # accept | drop
    policy_ref: RuleRef
    nat: str | None = None  # "dst"/"src": a NAT chain, consulted for the first packet only
    rank: int = 0  # tie-break between backends at equal priority
    table_chains: Iterable[CChain] = ()  # every chain of its table


class State:
    """One alternative walk of the packet through a hook."""

    __slots__ = (
        "src", "dst", "proto", "sport", "dport", "iif", "oif", "mark", "ct", "icmp_type",
        "icmp_code", "size", "tcp_flags", "local", "iface_addrs",
        "prob", "trail", "nat", "unsupported", "stack", "verdict", "decided_by", "reject_with",
        "nat_done", "seq", "steps",
    )

    def clone(self, seq: int) -> "State":
        other = State.__new__(State)
        for name in State.__slots__:
            setattr(other, name, getattr(self, name))
        other.trail = list(self.trail)
        other.nat = list(self.nat)
        other.unsupported = list(self.unsupported)
        other.stack = [list(f) for f in self.stack]
        other.nat_done = set(self.nat_done)
        other.seq = seq
        return other


def _frame(chain: CChain, st: State) -> list:
    """A call-stack entry: [chain, next rule index, candidate positions or None]."""
    return [chain, 0, chain.candidates(st)]


def addr_type(st: State, addr: int) -> str:
    """The kernel's route type for an address, as far as a snapshot tells (addrtype, fib)."""
    if addr in st.local or addr >> 24 == 127:
        return "LOCAL"
    if addr >> 28 == 0xE:
        return "MULTICAST"
    if addr == V.MASK32:
        return "BROADCAST"
    if addr == 0:
        return "UNSPEC"
    return "UNICAST"


# Route types a snapshot cannot tell apart from UNICAST without the routing table.
UNCERTAIN_TYPES = frozenset({"BLACKHOLE", "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE",
                             "ANYCAST"})


class Walker:
    """Runs states through the base chains of one hook."""

    def __init__(self) -> None:
        self.seq = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def run_base(self, base: CBase, st: State) -> list[State]:
        """Walk `st` (and every alternative it forks into) through one base chain."""
        st.stack = [_frame(base.chain, st)]
        st.verdict = None
        pending = deque([st])
        done: list[State] = []
        while pending:
            s = pending.popleft()
            self._walk(base, s, pending, len(done))
            done.append(s)
        return done

    def _walk(self, base: CBase, st: State, pending: deque, finished: int) -> None:
        while st.verdict is None:
            st.steps += 1
            frame = st.stack[-1]
            chain, i, cands = frame
            if cands is not None:  # an indexed chain: jump to the next rule that can match
                j = bisect_left(cands, i)
                i = cands[j] if j < len(cands) else len(chain)
            if i >= len(chain):
                self._pop_frame(base, st)
                continue
            frame[1] = i + 1
            rule = chain.rule(i)
            if st.steps > MAX_STEPS:
                st.unsupported.append(rule.ref)  # a jump loop in hand-made input: stop here
                self._fall_off(base, st)
                return
            if not self._matches(rule, st):
                continue
            if rule.random is not None and not self._take_random(rule, st, pending, finished):
                continue
            st.trail.append(rule.ref)
            self._execute(base, rule, st, pending, finished)

    @staticmethod
    def _matches(rule: CRule, st: State) -> bool:
        unknown = False
        for pred in rule.matches:
            r = pred(st)
            if r is False:
                return False
            if r is None:
                unknown = True
        if unknown:
            st.unsupported.append(rule.ref)
            return False
        return True

    def _take_random(self, rule: CRule, st: State, pending: deque, finished: int) -> bool:
        """Fork at a random match: `st` takes the rule, a clone goes on to the next rule."""
        p = rule.random
        if p <= 0.0:
            return False
        if p >= 1.0:
            return True
        if finished + len(pending) >= MAX_BRANCHES:
            st.unsupported.append(rule.ref)  # too many alternatives: follow the no-match side
            return False
        other = st.clone(self.next_seq())
        other.prob *= 1.0 - p
        st.prob *= p
        pending.append(other)
        return True

    def _execute(self, base: CBase, rule: CRule, st: State, pending: deque, finished: int) -> None:
        for act in rule.actions:
            op = act[0]
            if op <= GOTO or op == CONTINUE:
                self._verdict(base, rule.ref, act, st)
                return
            if op == MARK:
                st.mark = (st.mark & act[1]) ^ act[2]
            elif op == NOOP:
                pass
            elif op == NOTRACK:
                st.ct = "UNTRACKED"
            elif op == UNKNOWN:
                if not st.unsupported or st.unsupported[-1] is not rule.ref:
                    st.unsupported.append(rule.ref)
            elif op == GUARD:
                r = act[1](st)
                if r is None:
                    st.unsupported.append(rule.ref)
                if not r:
                    return
            elif op in (DNAT, SNAT, MASQ, REDIRECT, NAT_UNKNOWN):
                self._nat(base, rule.ref, act, st)
                return
            elif op == VMAP:
                self._vmap(base, rule.ref, act, st)
                return
            elif op == NUMGEN:
                self._numgen(base, rule.ref, act, st, pending, finished)
                return

    def _verdict(self, base: CBase, ref: RuleRef, act: tuple, st: State) -> None:
        op = act[0]
        if op == ACCEPT:
            st.verdict = "accept"
        elif op == DROP:
            st.verdict, st.decided_by = "drop", ref
        elif op == REJECT:
            st.verdict, st.decided_by, st.reject_with = "reject", ref, act[1]
        elif op == RETURN:
            self._pop_frame(base, st)
        elif op in (JUMP, GOTO):
            target = act[1]
            if target is None or len(st.stack) >= MAX_STACK:
                st.unsupported.append(ref)  # jump to a chain we do not have, or a loop
            elif op == JUMP:
                st.stack.append(_frame(target, st))
            else:
                st.stack[-1] = _frame(target, st)
        # CONTINUE: nothing, the next rule runs

    def _pop_frame(self, base: CBase, st: State) -> None:
        st.stack.pop()
        if not st.stack:
            self._fall_off(base, st)

    @staticmethod
    def _fall_off(base: CBase, st: State) -> None:
        """The packet left the base chain without a verdict: the chain policy decides."""
        if len(base.chain) or base.policy != "accept":
            st.trail.append(base.policy_ref)
        if base.policy == "accept":
            st.verdict = "accept"
        else:
            st.verdict, st.decided_by = "drop", base.policy_ref

    @staticmethod
    def _nat(base: CBase, ref: RuleRef, act: tuple, st: State) -> None:
        """NAT targets end the NAT chain: the binding is made and the packet goes on."""
        op = act[0]
        if op == DNAT:
            st.dst = act[1]
            if act[2] is not None and st.proto in V.PORT_PROTOS:
                st.dport = act[2]
        elif op == SNAT:
            st.src = act[1]
            if act[2] is not None and st.proto in V.PORT_PROTOS:
                st.sport = act[2]
        elif op == MASQ:
            addr = st.iface_addrs.get(st.oif or "")
            if addr is None:
                st.unsupported.append(ref)  # no address known for the output interface
            else:
                st.src = addr
            if act[1] is not None and st.proto in V.PORT_PROTOS:
                st.sport = act[1]
        elif op == REDIRECT:
            addr = st.iface_addrs.get(st.iif or "") if st.iif else 0x7F000001
            if addr is None:
                st.unsupported.append(ref)
            else:
                st.dst = addr
            if act[1] is not None and st.proto in V.PORT_PROTOS:
                st.dport = act[1]
        else:  # NAT_UNKNOWN: a NAT we cannot compute (map lookup...): the binding still happens
            st.unsupported.append(ref)
        st.nat.append(ref)
        if base.nat:
            st.nat_done.add(base.nat)
        st.verdict = "accept"

    def _vmap(self, base: CBase, ref: RuleRef, act: tuple, st: State) -> None:
        _, getter, entries = act
        value = getter(st)
        if value is NOVALUE:
            return
        if value is UNKNOWN_VALUE:
            st.unsupported.append(ref)
            return
        for matcher, verdict in entries:
            if matcher(value):
                self._verdict(base, ref, verdict, st)
                return

    def _numgen(self, base, ref, act: tuple, st: State, pending: deque, finished: int) -> None:
        """`numgen random mod N vmap {...}` (kube-proxy nftables mode): one fork per element."""
        _, alternatives, remainder = act
        branches = [(p, v) for p, v in alternatives if p > 0.0]
        if remainder > 1e-12:
            branches.append((remainder, None))
        if not branches:
            return
        if finished + len(pending) + len(branches) > MAX_BRANCHES:
            st.unsupported.append(ref)
            branches = branches[:1]
        clones = [st.clone(self.next_seq()) for _ in branches[1:]]
        for s, (p, verdict) in zip([st] + clones, branches):
            s.prob *= p
            if verdict is not None:
                self._verdict(base, ref, verdict, s)
        pending.extend(clones)
