"""Evaluate a packet through one netfilter hook, across iptables-legacy, iptables-nft and nftables.

The kernel runs every table/base chain registered at a hook in priority order (raw -300,
mangle -150, NAT destination -100, filter 0, security 50, NAT source 100, nft base chains at
their own priority), and the first drop or reject ends the packet. `Netfilter.evaluate` does the
same on the snapshot, returning one HookResult per possible outcome: kube-proxy picks a service
endpoint with `-m statistic --mode random`, so a packet to a ClusterIP has one outcome per
endpoint, each with its probability.

Pure: no subprocess, no root, except for a big live namespace's rules (live.py), which its
snapshot's readers fetch per chain when a walk first reaches it. Parse once per host (`from_host`
caches by content). iptables rules are read lazily: the file's structure is checked up front, and a
rule is parsed and compiled when a walk first reaches it (a bad rule line raises BundleError then,
naming the line).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any

from . import engine as E
from . import values as V
from .compile_ipt import compile_ruleset as compile_iptables
from .compile_nft import compile_ruleset as compile_nft
from .iptables import Ruleset, parse_save
from .live import LiveSaves
from .nft import NftRuleset, parse_json
from .results import HOOKS, HookResult, Packet, RuleRef

__all__ = ["Netfilter", "Packet", "RuleRef", "HookResult", "HOOKS"]

_CACHE: "OrderedDict[tuple, Netfilter]" = OrderedDict()
_CACHE_SIZE = 128


class Netfilter:
    """Every netfilter ruleset of one network namespace, ready to evaluate packets."""

    def __init__(
        self,
        iptables: dict[str, Ruleset] | None = None,
        nftables: NftRuleset | None = None,
        _keepalive: Any = None,
    ):
        self.iptables: dict[str, Ruleset] = iptables or {}  # backend name -> parsed save output
        self.nftables: NftRuleset = nftables or NftRuleset()
        self._keepalive = _keepalive  # the JSON object whose id() is part of the cache key
        bases: list[E.CBase] = []
        for backend, ruleset in self.iptables.items():
            bases += compile_iptables(ruleset, backend)
        bases += compile_nft(self.nftables)
        self._bases = bases
        self._by_hook = {hook: _hook_order(bases, hook) for hook in HOOKS}

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_host(cls, host) -> "Netfilter":
        """Parse a bundle Host's `iptables_save` ({"nft": text, "legacy": text}) and `nftables`.

        Cached by content, so calling it for every hop costs one dict lookup.
        Raises BundleError (naming the backend and line) on unreadable input.
        """
        saves = host.iptables_save or {}
        live = saves.pending("nft") if isinstance(saves, LiveSaves) else None
        if live is not None:  # a big live namespace: its chains are read as the walk reaches them
            key = ("live", id(live), saves.get("legacy") or "",
                   id(host.nftables) if host.nftables is not None else None)
            cached = _CACHE.get(key)
            if cached is None:
                rulesets = {"iptables-nft": live.ruleset()}
                if saves.get("legacy"):
                    rulesets["iptables-legacy"] = parse_save(saves.get("legacy"), "iptables-legacy-save", lazy=True)
                nft = parse_json(host.nftables, set(live.tables)) if host.nftables is not None else None
                cached = _CACHE[key] = cls(rulesets, nft, _keepalive=(host.nftables, live))
                if len(_CACHE) > _CACHE_SIZE:
                    _CACHE.popitem(last=False)
            return cached
        key = (
            saves.get("nft") or "",
            saves.get("legacy") or "",
            "nft" in saves,
            id(host.nftables) if host.nftables is not None else None,
        )
        cached = _CACHE.get(key)
        if cached is not None:
            _CACHE.move_to_end(key)
            return cached
        nf = cls.from_texts(saves.get("nft"), saves.get("legacy"), host.nftables,
                            nft_save_known="nft" in saves)
        _CACHE[key] = nf
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return nf

    @classmethod
    def from_texts(
        cls,
        nft_save: str | None = None,
        legacy_save: str | None = None,
        nftables: Any = None,
        nft_save_known: bool | None = None,
    ) -> "Netfilter":
        """Build from raw `iptables-save -c` texts (nf_tables and legacy) and `nft -j` JSON.

        `nft_save_known`: whether the iptables-nft save output was collected at all (default:
        it was when `nft_save` is not None); it decides which nft tables are iptables-nft's.
        """
        rulesets: dict[str, Ruleset] = {}
        if nft_save:
            rulesets["iptables-nft"] = parse_save(nft_save, "iptables-save (nf_tables)", lazy=True)
        if legacy_save:
            rulesets["iptables-legacy"] = parse_save(legacy_save, "iptables-legacy-save", lazy=True)
        known = nft_save is not None if nft_save_known is None else nft_save_known
        ipt_tables = set(rulesets["iptables-nft"].tables) if "iptables-nft" in rulesets else set()
        nft = parse_json(nftables, ipt_tables if known else None) if nftables is not None else None
        return cls(rulesets, nft, _keepalive=nftables)

    # -- queries ------------------------------------------------------------------------------

    def is_empty(self) -> bool:
        """True when no rule exists and every policy accepts: nothing can touch a packet."""
        return all(not len(b.chain) and b.policy == "accept" for b in self._bases)

    def rules(self) -> list[RuleRef]:
        """Every rule of every hooked table (reachable or not), e.g. to search by comment."""
        seen: set[int] = set()
        tables: set[int] = set()
        refs: list[RuleRef] = []
        with V.gc_paused():
            for base in self._bases:
                if id(base.table_chains) in tables:
                    continue  # another base chain of a table already listed
                tables.add(id(base.table_chains))
                for chain in base.table_chains:
                    if id(chain) not in seen:
                        seen.add(id(chain))
                        refs += chain.refs()
        return refs

    def rules_in(self, chains: set[tuple[str, str, str]]) -> list[RuleRef]:
        """The rules of some chains, named (backend, table, chain) as their RuleRefs name them:
        what `rules()` lists of them, without listing every chain of a 30,000-chain table."""
        names = {c for _, _, c in chains}
        refs: list[RuleRef] = []
        tables: set[int] = set()
        for base in self._bases:
            if id(base.table_chains) in tables:
                continue
            tables.add(id(base.table_chains))
            get = getattr(base.table_chains, "get", None)  # iptables tables are looked up by name
            found = [get(c) for c in sorted({c for b, t, c in chains if (b, t) == (base.backend, base.table)})] \
                if get is not None else list(base.table_chains)
            for chain in found:
                if chain is not None and chain.name in names:
                    refs += [r for r in chain.refs() if (r.backend, r.table, r.chain) in chains]
        return refs

    def chains_at(self, hook: str) -> list[RuleRef]:
        """The base chains run at a hook, in kernel order, as their policy refs."""
        return [b.policy_ref for b in self._by_hook[_check_hook(hook)]]

    def priorities_at(self, hook: str) -> list[int]:
        """The distinct priorities of the base chains at a hook, rising."""
        return sorted({b.priority for b in self._by_hook[_check_hook(hook)]})

    def chains_between(self, hook: str, lo: int, hi: int) -> list[tuple[int, RuleRef]]:
        """(priority, policy ref) of the base chains run at a hook strictly between two priorities:
        what can have taken a packet a probe saw at priority lo but not at hi."""
        return [(b.priority, b.policy_ref) for b in self._by_hook[_check_hook(hook)] if lo < b.priority < hi]

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(
        self,
        hook: str,
        packet: Packet,
        local_addrs: set[str] | frozenset[str] = frozenset(),
        iface_addrs: dict[str, str] | None = None,
    ) -> list[HookResult]:
        """Run `packet` through every chain at `hook`; one HookResult per possible outcome.

        `local_addrs`: the namespace's own addresses (addrtype/fib LOCAL). `iface_addrs`:
        interface -> primary IPv4 (MASQUERADE's source). Probabilities of the results sum to 1.
        """
        bases = self._by_hook[_check_hook(hook)]
        walker = E.Walker()
        live = [_initial_state(packet, local_addrs, iface_addrs or {})]
        finished: list[E.State] = []
        for base in bases:
            next_live: list[E.State] = []
            for st in live:
                if base.nat and (st.ct != "NEW" or base.nat in st.nat_done):
                    next_live.append(st)  # NAT is decided by the connection's first packet
                    continue
                for out in walker.run_base(base, st):
                    (next_live if out.verdict == "accept" else finished).append(out)
            live = next_live
        for st in live:
            st.verdict = "accept"
        finished += live
        finished.sort(key=lambda s: s.seq)
        return _merge([_result(st, packet) for st in finished])


def _check_hook(hook: str) -> str:
    hook = hook.lower() if isinstance(hook, str) else hook
    if hook not in HOOKS:
        raise ValueError(f"unknown netfilter hook {hook!r}; expected one of {', '.join(HOOKS)}")
    return hook


def _hook_order(bases: list[E.CBase], hook: str) -> list[E.CBase]:
    at_hook = [b for b in bases if b.hook == hook]
    # Stable sort: within one backend, tables keep the order they were read in.
    return sorted(at_hook, key=lambda b: (b.priority, b.sub_priority, b.rank))


def _initial_state(packet: Packet, local_addrs, iface_addrs: dict[str, str]) -> E.State:
    st = E.State.__new__(E.State)
    st.src = V.ip_to_int(packet.src)
    st.dst = V.ip_to_int(packet.dst)
    st.proto = V.PROTO_NUMBERS.get(packet.proto.lower()) if packet.proto else None
    st.sport, st.dport = packet.sport, packet.dport
    st.iif, st.oif = packet.iif, packet.oif
    st.mark = packet.mark & V.MASK32
    st.ct = (packet.ct_state or "NEW").upper()
    if packet.icmp_type is not None:
        st.icmp_type = packet.icmp_type
    else:  # podpath's probe is a ping: echo request first, echo reply back
        st.icmp_type = 8 if st.ct == "NEW" else 0
    st.icmp_code = 0
    st.size = packet.size
    # A first TCP packet is a SYN; anything later carries ACK.
    st.tcp_flags = frozenset({"SYN"}) if st.ct == "NEW" else frozenset({"ACK"})
    # Hosts also have IPv6 and prefixed addresses; only IPv4 ones matter to these rules.
    st.local = frozenset(a for a in map(_ipv4_or_none, local_addrs) if a is not None)
    st.iface_addrs = {
        name: addr for name, addr in ((n, _ipv4_or_none(a)) for n, a in iface_addrs.items())
        if addr is not None
    }
    st.prob = 1.0
    st.trail, st.nat, st.unsupported, st.stack = [], [], [], []
    st.verdict = st.decided_by = st.reject_with = None
    st.nat_done = set()
    st.seq = 0
    st.steps = 0
    return st


def _ipv4_or_none(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return V.ip_to_int(text.partition("/")[0])
    except ValueError:
        return None


def _result(st: E.State, original: Packet) -> HookResult:
    packet = dataclasses.replace(
        original,
        src=V.int_to_ip(st.src),
        dst=V.int_to_ip(st.dst),
        sport=st.sport,
        dport=st.dport,
        mark=st.mark,
        ct_state=st.ct,
    )
    return HookResult(
        verdict=st.verdict,
        packet=packet,
        decided_by=st.decided_by,
        nat=st.nat,
        trail=st.trail,
        reject_with=st.reject_with,
        probability=st.prob,
        unsupported=list(dict.fromkeys(st.unsupported)),
    )


def _merge(results: list[HookResult]) -> list[HookResult]:
    """Fold alternatives that ended identically (same rules, same packet) into one."""
    if len(results) < 2 or len(results) > 64:
        return results
    merged: list[HookResult] = []
    for r in results:
        same = next((m for m in merged if dataclasses.replace(m, probability=r.probability) == r),
                    None)
        if same is None:
            merged.append(r)
        else:
            same.probability += r.probability
    return merged
