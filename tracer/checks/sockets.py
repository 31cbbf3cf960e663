"""Local delivery: the packet arrived, but does anything listen?"""

from __future__ import annotations

from .causes import Cause
from ..model.reasons import Reason
from .base import Context, Finding, from_hop, ns_cmd


def no_listener(ctx: Context) -> list[Finding]:
    out = []
    if ctx.is_dns:
        return out  # the dns check owns the DNS server's socket
    for _, hop in ctx.hops(Reason.NO_LISTENER):
        host = ctx.host(hop.host)
        listening = ", ".join(hop.payload.listening or []) or "nothing"
        out.append(from_hop(hop, Cause.NO_LISTENER, f"{hop.payload.proto} port {hop.payload.port} in {host.name}",
                            f"{hop.detail}; listening: {listening}",
                            ns_cmd(host, "ss -lntup") + "  # start the server, or point the Service's targetPort "
                            "at the port it listens on"))
    return out
