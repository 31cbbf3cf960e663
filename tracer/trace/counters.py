"""Rule counters before and after a trace: the kernel's own tally of which rule took the packet.

The snapshot taken before the trace holds every rule's packet counter (`iptables-save -c`, nft
`counter` statements); re-reading the rules of the namespace where the packet was dropped, right
after the drop, shows which DROP/REJECT rule (or DROP policy) counted it. In a quiet namespace that
is exactly the rule; on a busy node other traffic can raise other counters too, so the model's rule
evaluation decides between several candidates, and the counter only confirms.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..netfilter import Netfilter, RuleRef

RULE_COLLECTORS = ("iptables", "iptables-legacy", "nftables")


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
    from ..netfilter.results import HOOKS
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
    """Every DROP/REJECT rule or DROP policy whose packet counter rose between two reads."""
    old = {_key(r): r for r in _all_refs(Netfilter.from_host(before_host))}
    out = []
    for r in _all_refs(Netfilter.from_host(after_host)):
        o = old.get(_key(r))
        if o is None or r.packets is None or o.packets is None:
            continue
        if r.packets > o.packets and _drops(r):
            out.append(CounterDelta(r, r.packets - o.packets))
    return out


def reread_rules(host):
    """The rules of one snapshot host's namespace, read again now (same collectors as the snapshot)."""
    from ..snapshot.live import collect_host
    from ..targets import HostRef
    ref = HostRef(host.name, host.kind, host.node, host.netns, host.namespace)
    return collect_host(ref, only=RULE_COLLECTORS)
