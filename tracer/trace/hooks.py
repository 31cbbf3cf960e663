"""What the netfilter brackets saw: one hop per hook pass, NAT as it happened, and which hook and
table took a dropped packet.

The probes put one BPF netfilter link at the start of every hook, one just before each table's
base chain priority there and one at the end (plan.nf_brackets; probes.NF_BRACKETS without a
snapshot). A pass of a packet through a hook is the
run of bracket events of one skb in one namespace with rising bracket numbers; a pass that stops
at bracket i was taken by a base chain whose priority lies between bracket i and bracket i+1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import BundleError
from ..probes import NF_BRACKETS


@dataclass
class HookPass:
    netns: int
    skb: int
    hook: str
    events: list = field(default_factory=list)  # probes.Event, brackets rising

    @property
    def first(self):
        return self.events[0]

    @property
    def last(self):
        return self.events[-1]

    @property
    def complete(self) -> bool:
        """The packet left the hook (the end bracket saw it)."""
        return bool(self.last.extra.get("last"))

    @property
    def direction(self) -> str:
        return "reply" if "reply" in self.first.flags else "request"

    def stopped_between(self) -> tuple[int, int]:
        """The priorities between which the packet was taken (it passed lo and never reached hi)."""
        hi = self.last.extra.get("next_prio")
        return self.last.nf_prio, (hi if hi is not None else NF_BRACKETS[-1] + 1)

    def nat(self) -> str | None:
        """'DNAT 10.96.0.100:80 → 10.244.1.2:8080' when the tuple changed inside this pass."""
        a, b = self.first, self.last
        if None in (a.saddr, b.saddr) or a.inner != b.inner:
            return None
        parts = []
        if (a.daddr, a.dport) != (b.daddr, b.dport):
            parts.append(f"DNAT {_ep(a.daddr, a.dport, a.proto)} → {_ep(b.daddr, b.dport, b.proto)}")
        if (a.saddr, a.sport) != (b.saddr, b.sport):
            parts.append(f"SNAT {_ep(a.saddr, a.sport, a.proto)} → {_ep(b.saddr, b.sport, b.proto)}")
        return ", ".join(parts) or None


def _ep(addr, port, proto) -> str:
    return f"{addr}:{port}" if proto in ("tcp", "udp") and port else str(addr)


def hook_passes(events) -> list[HookPass]:
    """Group netfilter events into passes, in time order."""
    open_: dict[tuple, HookPass] = {}
    out: list[HookPass] = []
    for e in sorted((e for e in events if e.kind == "netfilter"), key=lambda e: e.ts_ns):
        key = (e.netns, e.skb, e.point)
        cur = open_.get(key)
        if cur is None or e.extra.get("bracket", 0) <= cur.last.extra.get("bracket", 0):
            cur = HookPass(e.netns, e.skb, e.point)  # bracket numbers start again: a new pass
            open_[key] = cur
            out.append(cur)
        cur.events.append(e)
    return out


def pass_before(passes: list[HookPass], drop) -> HookPass | None:
    """The incomplete pass of the dropped skb, in the drop's namespace, that was open at the drop."""
    cands = [p for p in passes if p.netns == drop.netns and p.skb == drop.skb and not p.complete
             and p.last.ts_ns <= drop.ts_ns]
    return cands[-1] if cands else None


def chains_in_gap(host, hook: str, lo: int, hi: int) -> list[str]:
    """The base chains of a snapshot host between two priorities at a hook, as 'backend table/CHAIN'."""
    from ..netfilter import Netfilter
    try:
        nf = Netfilter.from_host(host)
    except BundleError:  # an unreadable ruleset is reported by diagnose; here it only names less
        return []
    return [f"{ref.backend} {ref.table}/{ref.chain} (priority {prio})" for prio, ref in nf.chains_between(hook, lo, hi)]


def nf_links_in_gap(host, hook: str, lo: int, hi: int) -> list:
    """Foreign BPF netfilter links (snapshot Attachments) at a hook between two priorities."""
    return [a for a in (host.programs if host is not None else []) if a.hook == "netfilter" and not a.ours
            and (a.detail or "").split(";")[0].split(" ")[-1] == hook and a.priority is not None
            and lo < a.priority < hi]
