"""How a coordinator reaches an agent: a connected byte stream to 127.0.0.1:4244 in the agent's
node namespace. Through the API server (pods/portforward; find_agents/open_agent) or, on the node
itself, directly (`direct`). The protocol layer gets a plain socket.socket either way.
"""

from __future__ import annotations

import socket

from .protocol import PORT, AgentError


def direct(netns: str | None, port: int = PORT, timeout: float = 2.0) -> socket.socket:
    """A socket to the agent of the node whose namespace is netns (None: this one), opened from
    inside that namespace: the agent listens on its loopback only."""
    from ..netns import run_in

    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)

    try:
        sock = run_in(netns, connect)
    except OSError as e:
        where = f"network namespace {netns}" if netns else "this node"
        raise AgentError(f"no podpath agent on 127.0.0.1:{port} in {where} ({e.strerror or e}); "
                         "start one with `podpath agent`") from None
    sock.settimeout(None)
    return sock
