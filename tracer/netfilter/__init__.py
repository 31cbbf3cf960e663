"""Netfilter rulesets: parse iptables-save / `nft -j` output and evaluate packets through a hook.

    nf = Netfilter.from_host(host)
    for alt in nf.evaluate("forward", Packet("10.244.1.2", "10.244.2.3", "icmp",
                                             iif="cni0", oif="flannel.1"), local_addrs, iface_addrs):
        alt.verdict, alt.decided_by, alt.probability

Modules: iptables.py (iptables-save parser), nft.py (nft JSON parser), evaluate.py (Netfilter),
results.py (Packet, RuleRef, HookResult), engine.py + compile_*.py (the shared chain walker).
"""

from .evaluate import Netfilter
from .iptables import Chain, IptRule, Ruleset, Table, parse_save
from .nft import NftChain, NftRule, NftRuleset, parse_json
from .results import HOOKS, HookResult, Packet, RuleRef

__all__ = [
    "Netfilter", "Packet", "RuleRef", "HookResult", "HOOKS",
    "parse_save", "Ruleset", "Table", "Chain", "IptRule",
    "parse_json", "NftRuleset", "NftChain", "NftRule",
]
