"""When the path fails and no check explains why: say where, at least."""

from __future__ import annotations

from .base import ERROR, INFO, Context, Finding, from_hop, missing_tables, pasted


def unknown(ctx: Context, found: list[Finding]) -> list[Finding]:
    if any(f.severity == ERROR for f in found):
        return []
    out = []
    for path in ctx.paths:
        if path.outcome == "delivered":
            continue
        hop = next((h for h in path.hops if h.status == "fail"), path.hops[-1] if path.hops else None)
        if hop is None:
            continue
        host = ctx.topo.hosts.get(hop.host)
        gaps = missing_tables(host) if host is not None and pasted(host) else []
        if gaps:  # from partial data the walk may end where a table simply was not pasted
            out.append(from_hop(hop, "unknown", hop.detail or hop.point,
                                f"the path ends here ({path.outcome}) from partial data: {hop.host} has no "
                                f"{', '.join(gaps)} in the paste, so this is not a verdict", "paste the missing "
                                f"tables from {hop.host} (see `diagnose`'s not-pasted list)", severity=INFO))
            break
        out.append(from_hop(hop, "unknown", hop.detail or hop.point,
                            f"the path ends here ({path.outcome}) and no check explains why: {hop.detail}",
                            "run `podpath trace` for the kernel's drop reason"))
        break
    return out
