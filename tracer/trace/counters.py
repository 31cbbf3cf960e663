"""Rule counters before and after a trace: the kernel's own tally of which rule took the packet.

The snapshot taken before the trace holds every rule's packet counter (`iptables-save -c`, nft
`counter` statements); re-reading, right after the drop, the chains of that namespace which hold a
DROP/REJECT rule or a DROP policy shows which of them counted it. In a quiet namespace that is
exactly the rule; on a busy node other traffic can raise other counters too, so the model's rule
evaluation decides between several candidates, and the counter only confirms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..netfilter import HOOKS, Netfilter, RuleRef


@dataclass
class CounterDelta:
    rule: RuleRef
    packets: int  # how many more packets it counted since the snapshot

    def describe(self) -> str:
        where = f"{self.rule.backend} {self.rule.table}/{self.rule.chain}"
        num = "policy" if self.rule.is_policy else f"rule {self.rule.number}"
        return f"{where} {num}: {self.rule.text} (+{self.packets} packet{'s' if self.packets != 1 else ''})"


def _key(r: RuleRef) -> tuple:
    return (r.backend, r.family, r.table, r.chain, r.number, r.text)


def _all_refs(nf: Netfilter) -> list[RuleRef]:
    refs = list(nf.rules())
    seen = {_key(r) for r in refs}  # a set: 80,000 rules at 10,000 Services
    for hook in HOOKS:
        for p in nf.chains_at(hook):
            if _key(p) not in seen:
                seen.add(_key(p))
                refs.append(p)
    return refs


def _drops(r: RuleRef) -> bool:
    t = r.text
    if r.is_policy:
        return t.split()[-1:] == ["DROP"] or "policy drop" in t
    if r.backend == "nftables":
        return any(w in ("drop", "reject") for w in t.split())
    return " -j DROP" in t or " -j REJECT" in t


def deltas(before_host, after_host) -> list[CounterDelta]:
    """Every DROP/REJECT rule or DROP policy whose packet counter rose between two reads. Only the
    chains the second read holds are looked up in the first (it may hold 80,000 rules)."""
    new = _all_refs(Netfilter.from_host(after_host))
    before = Netfilter.from_host(before_host)
    old = {_key(r): r for r in before.rules_in({(r.backend, r.table, r.chain) for r in new})}
    for hook in HOOKS:
        for p in before.chains_at(hook):
            old.setdefault(_key(p), p)
    out = []
    for r in new:
        o = old.get(_key(r))
        if o is None or r.packets is None or o.packets is None:
            continue
        if r.packets > o.packets and _drops(r):
            out.append(CounterDelta(r, r.packets - o.packets))
    return out


# The chains a DROP/REJECT rule or a DROP policy can be in: lines of iptables-save text, by table.
_TABLE = re.compile(r"^\*(\S+)", re.M)
_DROP_LINE = re.compile(r"^(?:\[\d+:\d+\] +)?-A +(\S+) .*-j +(?:DROP|REJECT)\b", re.M)
_BUILTIN = re.compile(r"^:(\S+) +(?:ACCEPT|DROP)\b", re.M)
_DROP_POLICY = re.compile(r"^:(\S+) +DROP\b", re.M)


def drop_chains(save: str) -> dict[str, list[str]]:
    """{table: [chain]} of the chains of an iptables-save text to re-read for `deltas`: in each
    table with a DROP/REJECT rule or a DROP policy, its built-in chains (their policies, and what
    makes the table a hooked one) and every chain with such a rule (a superset of `_drops`)."""
    found: dict[str, tuple[list[str], list[str]]] = {}  # table: (built-in chains, drop chains)
    starts = [(m.start(), m.group(1)) for m in _TABLE.finditer(save)]
    for k, (at, table) in enumerate(starts):  # a table may come in several pieces (live.py)
        end = starts[k + 1][0] if k + 1 < len(starts) else len(save)
        builtins, drops = found.setdefault(table, ([], []))
        builtins += _BUILTIN.findall(save, at, end)
        drops += _DROP_LINE.findall(save, at, end) + _DROP_POLICY.findall(save, at, end)
    return {t: list(dict.fromkeys(b + d)) for t, (b, d) in found.items() if d}


def native_nft_tables(nftables: dict | None) -> list[tuple[str, str]]:
    """(family, name) of the nf_tables tables the snapshot read rules from with nft (not the bare
    entries of iptables-nft's own tables, whose rules are in iptables_save)."""
    items = (nftables or {}).get("nftables") or []
    return list(dict.fromkeys((x[k]["family"], x[k]["table"]) for x in items for k in ("chain", "rule")
                              if isinstance(x, dict) and isinstance(x.get(k), dict)
                              and "family" in x[k] and "table" in x[k]))


def reread_rules(host):
    """The rules that can have dropped a packet in one snapshot host's namespace, read again now:
    only the chains holding a DROP/REJECT rule or a DROP policy (`iptables -t T -S C -v` each) and
    the native nft tables, not the whole ruleset. At 10,000 Services that is a few small chains
    instead of 80,000 rules (1.7 s of iptables-nft-save), and `deltas` sees the same counters."""
    from ..bundle import Host
    from ..netfilter.live import read_texts
    from ..netns import run_in
    from ..snapshot.collectors import Gap, read_iptables_chains, read_nft_tables

    # a big live namespace (netfilter/live.py): the chains read before the packet was sent
    wanted = {backend: drop_chains(text) for backend, text in read_texts(host.iptables_save or {})
              if backend in ("nft", "legacy") and text}
    native = native_nft_tables(host.nftables)
    after = Host(name=host.name, kind=host.kind, node=host.node, netns=host.netns, namespace=host.namespace)

    def body() -> None:
        for backend, chains in wanted.items():
            if not chains:
                continue
            try:
                after.iptables_save[backend] = read_iptables_chains(backend, chains)
            except Gap as e:
                after.gaps["iptables" if backend == "nft" else "iptables-legacy"] = str(e)
        if native:
            after.nftables = read_nft_tables(native)

    run_in(host.netns, body)
    return after
