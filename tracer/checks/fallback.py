"""When the path fails and no check explains why: say where, at least."""

from __future__ import annotations

from .base import ERROR, Context, Finding, from_hop


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
        out.append(from_hop(hop, "unknown", hop.detail or hop.point,
                            f"the path ends here ({path.outcome}) and no check explains why: {hop.detail}",
                            "run `podpath trace` for the kernel's drop reason"))
        break
    return out
