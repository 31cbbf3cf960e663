"""The nf_tables tables a namespace holds, listed over netlink (~1 ms, no child process): what the
snapshot asks before running iptables-nft-save or nft, and how a killed run's --nftrace tables
are found. Call it from a thread already inside the namespace."""

from __future__ import annotations

NFPROTO_NAMES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}


def list_tables() -> list[tuple[str, str, int | None]]:
    """(family, name, handle) of every nf_tables table in the calling thread's namespace."""
    from pyroute2.nftables.main import NFTables

    with NFTables(nfgen_family=0) as nl:  # NFPROTO_UNSPEC: every family
        msgs = nl.get_tables()
    out = []
    for m in msgs:
        family = NFPROTO_NAMES.get(m.get("nfgen_family"))
        if family is not None and m.get("NFTA_TABLE_NAME"):
            out.append((family, m.get("NFTA_TABLE_NAME"), m.get("NFTA_TABLE_HANDLE")))
    return out
