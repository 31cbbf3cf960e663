"""An index over long jump lists (kube-proxy's KUBE-SERVICES: one rule per Service port).

A walk through such a chain tests every rule in turn, though a packet can match only the rules
for its own destination. Each rule gets a key, (destination, protocol, port) or (destination,
None, None), that it provably cannot match outside of (iptables.jump_key reads it from the rule
text); rules without a key stay in every walk. The walk then visits, in rule order, only the
rules whose key fits the packet plus the unkeyed ones, and evaluates each exactly as before: the
verdict, trail, rule numbers and unsupported-rule reports are those of the linear walk, because
every skipped rule would have failed on its destination, protocol or port (never "unknown").

Built once per chain, on the first walk into it; the chain is cached with its snapshot.
"""

from __future__ import annotations

from . import values as V

MIN_RULES = 32  # shorter chains are walked linearly
MAX_UNKEYED_SHARE = 0.25  # when more rules than this have no key, the index saves little


class JumpIndex:
    __slots__ = ("by_key", "by_dst", "dst_only", "unkeyed")

    def __init__(self, keys: list) -> None:
        self.by_key: dict[tuple, list[int]] = {}  # (dst, proto, dport) -> positions
        self.by_dst: dict[int, list[int]] = {}  # dst -> every keyed position with this dst
        self.dst_only: dict[int, list[int]] = {}  # dst -> positions keyed by destination only
        self.unkeyed: list[int] = []
        for i, key in enumerate(keys):
            if key is None:
                self.unkeyed.append(i)
                continue
            dst, proto, port = key
            self.by_dst.setdefault(dst, []).append(i)
            if proto is None:
                self.dst_only.setdefault(dst, []).append(i)
            else:
                self.by_key.setdefault(key, []).append(i)

    def candidates(self, st) -> list[int]:
        """Positions, rising, of the rules this packet could match."""
        dst = st.dst
        if st.proto is None or (st.proto in V.PORT_PROTOS and st.dport is None):
            # A keyed rule's protocol or port test would answer "unknown", not "no": keep them.
            hit = self.by_dst.get(dst, [])
        elif st.proto in V.PORT_PROTOS:
            hit = self.by_key.get((dst, st.proto, st.dport), []) + self.dst_only.get(dst, [])
        else:  # ICMP and others never match a rule keyed on a port protocol
            hit = self.dst_only.get(dst, [])
        if not hit:
            return self.unkeyed
        if not self.unkeyed:
            return sorted(hit)
        return sorted(self.unkeyed + hit)


def build_index(keys: list) -> JumpIndex | None:
    """The index of a chain given one key (or None) per rule; None when it would not help."""
    if len(keys) < MIN_RULES:
        return None
    unkeyed = sum(1 for k in keys if k is None)
    if unkeyed > len(keys) * MAX_UNKEYED_SHARE:
        return None
    return JumpIndex(keys)
