"""The data objects the netfilter evaluator takes and returns (re-exported by evaluate.py)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from ..hooks import NF_HOOKS as HOOKS  # noqa: E402, F401 - one home for hook names; re-exported
VERDICTS = ("accept", "drop", "reject")


@dataclass
class Packet:
    src: str
    dst: str
    proto: str  # "icmp" | "tcp" | "udp"
    sport: int | None = None
    dport: int | None = None
    iif: str | None = None  # interface names; None where the hook has none
    oif: str | None = None
    mark: int = 0
    ct_state: str = "NEW"  # NEW for an original-direction first packet; ESTABLISHED for replies
    icmp_type: int | None = None  # None: echo request when NEW, echo reply otherwise
    size: int = 84


@dataclass(frozen=True)
class RuleRef:
    """Points a user at the exact rule (or chain policy) that matched."""

    backend: str  # "iptables-nft" | "iptables-legacy" | "nftables"
    table: str
    chain: str
    number: int | None  # 1-based position in the chain (iptables -L --line-numbers); None = policy
    text: str  # "-A FORWARD -s 10.244.0.0/16 -j DROP", ":FORWARD DROP", or nft rule text
    packets: int | None = None
    bytes: int | None = None
    comment: str | None = None
    family: str = "ip"
    handle: int | None = None  # nftables rule handle (what `nft delete rule` needs)

    @property
    def is_policy(self) -> bool:
        return self.number is None

    def command(self) -> str:
        """A command that removes the rule (or, for a policy, sets it to accept)."""
        if self.backend == "nftables":
            where = f"{self.family} {_q(self.table)} {_q(self.chain)}"
            if self.is_policy:
                return f"nft chain {where} '{{ policy accept; }}'"
            if self.handle is not None:
                return f"nft delete rule {where} handle {self.handle}"
            return f"nft -a list chain {where}"
        tool = "iptables-legacy" if self.backend == "iptables-legacy" else "iptables"
        if self.is_policy:
            return f"{tool} -t {self.table} -P {_q(self.chain)} ACCEPT"
        return f"{tool} -t {self.table} -D {_q(self.chain)} {self.number}"

    def show_command(self) -> str:
        """A command that lists the chain with positions/handles and counters."""
        if self.backend == "nftables":
            return f"nft -a list chain {self.family} {_q(self.table)} {_q(self.chain)}"
        tool = "iptables-legacy" if self.backend == "iptables-legacy" else "iptables"
        return f"{tool} -t {self.table} -L {_q(self.chain)} -v -n --line-numbers"

    def __str__(self) -> str:
        where = f"{self.backend} {self.table} {self.chain}"
        pos = "policy" if self.is_policy else f"#{self.number}"
        return f"{where} {pos}: {self.text}"


def _q(word: str) -> str:
    return shlex.quote(word)


@dataclass
class HookResult:
    verdict: str  # "accept" | "drop" | "reject"
    packet: Packet  # the packet after this hook (DNAT/SNAT/MASQUERADE/MARK applied)
    decided_by: RuleRef | None  # the rule or policy that dropped/rejected; None when accepted
    nat: list[RuleRef] = field(default_factory=list)  # NAT rules applied in this hook
    trail: list[RuleRef] = field(default_factory=list)  # every rule that matched, in order
    reject_with: str | None = None
    probability: float = 1.0  # of this alternative
    unsupported: list[RuleRef] = field(default_factory=list)  # rules that could not be evaluated
