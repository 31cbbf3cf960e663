"""Per-node agents and the coordinator that joins them (issue 10).

- protocol.py: the JSON-lines protocol (docs/agent-protocol.md);
- server.py: `podpath agent`, one per node, on 127.0.0.1:4244 of the node's namespace;
- client.py: one agent connection, as the coordinator holds it;
- coordinator.py: one trace across nodes (snapshot, plan per node, arm, send, join, correlate);
- watch.py: `podpath watch` across nodes (each agent records, this end writes each node's files);
- transport.py: how a coordinator reaches an agent (through the API server, or directly).
"""

from __future__ import annotations

import os
from typing import Callable

# Tests (and a node's operator) can name the agents' node namespaces directly:
# PODPATH_AGENTS_DIRECT="node-a=<netns>,node-b=<netns>" (the lab tests set it; nothing else does).
DIRECT_ENV = "PODPATH_AGENTS_DIRECT"


def direct_map(text: str) -> dict[str, str]:
    from ..errors import UsageError

    out = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        node, sep, netns = item.partition("=")
        if not sep or not node or not netns:
            raise UsageError(f"{DIRECT_ENV}: '{item}' is not NODE=NETNS; give e.g. node-a=/run/netns/x,node-b=y")
        out[node] = netns
    return out


def agent_finder(kube) -> Callable[[set[str]], dict[str, Callable]] | None:
    """find(nodes) -> {node: open()} for the nodes that have an agent; None when agents cannot be
    reached from here (no API configured, and no direct map)."""
    from ..errors import PodpathError
    from .transport import direct

    text = os.environ.get(DIRECT_ENV)
    if text:
        where = direct_map(text)
        return lambda nodes: {n: (lambda ns=where[n]: direct(ns)) for n in nodes if n in where}
    if kube is None:
        return None
    from . import transport
    find_agents, open_agent = getattr(transport, "find_agents", None), getattr(transport, "open_agent", None)
    if find_agents is None or open_agent is None:
        return None

    def find(nodes: set[str]) -> dict[str, Callable]:
        from .transport import NoAgent

        try:
            pods = find_agents(kube, set(nodes))
        except NoAgent as e:  # the nodes that have one are still traced; the others are not observed
            pods = e.found
        except PodpathError:
            return {}
        return {n: (lambda p=p: open_agent(kube, p)) for n, p in pods.items()}
    return find


def with_agents(source):
    """The source, set to trace through agents when they can be reached (a NodeSource with the API)."""
    if getattr(source, "kube", None) is None and not os.environ.get(DIRECT_ENV):
        return source
    find = agent_finder(getattr(source, "kube", None))
    if find is not None and getattr(source, "kube", None) is not None:
        from .coordinator import through_agents

        source.agents = find
        # trace() calls this without importing the agents (trace sits below them)
        source.remote_trace = lambda src, dst, **flow: through_agents(source, src, dst, **flow)
    return source
