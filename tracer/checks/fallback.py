"""When the path fails and no check explains why: say where, at least. When it leaves for a node
this snapshot does not hold: say that the rest is not observed, without guessing."""

from __future__ import annotations

from .causes import Cause
from ..model.reasons import Reason
from .base import ERROR, INFO, Context, Finding, from_hop, missing_tables, pasted


def unknown(ctx: Context, found: list[Finding]) -> list[Finding]:
    out = []
    for path in ctx.paths:
        left = next((h for h in path.hops if h.reason == Reason.LEFT_NODE), None)
        if path.outcome == "unobserved" and left is not None:
            remote = left.payload.remote
            out.append(from_hop(left, Cause.UNKNOWN, f"{remote}: not observed", left.detail,
                                f"run podpath on {remote} too (or trace through the per-node agents)",
                                severity=INFO))
            break
    if any(f.severity == ERROR for f in found):
        return out
    for path in ctx.paths:
        if path.outcome in ("delivered", "unobserved"):
            continue
        hop = next((h for h in path.hops if h.status == "fail"), path.hops[-1] if path.hops else None)
        if hop is None:
            continue
        host = ctx.topo.hosts.get(hop.host)
        gaps = missing_tables(host) if host is not None and pasted(host) else []
        if gaps:  # from partial data the walk may end where a table simply was not pasted
            out.append(from_hop(hop, Cause.UNKNOWN, hop.detail or hop.point,
                                f"the path ends here ({path.outcome}) from partial data: {hop.host} has no "
                                f"{', '.join(gaps)} in the paste, so this is not a verdict", "paste the missing "
                                f"tables from {hop.host} (see `diagnose`'s not-pasted list)", severity=INFO))
            break
        out.append(from_hop(hop, Cause.UNKNOWN, hop.detail or hop.point,
                            f"the path ends here ({path.outcome}) and no check explains why: {hop.detail}",
                            "run `podpath trace` for the kernel's drop reason"))
        break
    return out
