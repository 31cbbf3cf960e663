"""One trace from per-node sessions: each node's events on its own clock, joined by packet identity.

On a cluster every node's agent observes its own kernel and stamps events relative to its own arm
time, so no two nodes' clocks are ever compared. The coordinator aligns them the way the packet
does: the same packet (addresses, protocol, IP id, ICMP/TCP sequence — the inner header survives
VXLAN) seen leaving one node and arriving at the next. The node closer to the source is the
reference; a request packet last seen there is first seen on the next node just after (ε), an
answer the other way round. The error is at most the wire time, which keeps every event in order.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from ..model.topology import place
from .session import SessionResult

EPSILON_NS = 1_000  # what the join assumes a hop between nodes takes (below any real wire time)


def packet_key(e) -> tuple | None:
    """What identifies one packet on every node it crosses (None for route/neighbour events)."""
    if e.kind in ("fib", "neigh") or not e.saddr or not e.daddr:
        return None
    return (e.saddr, e.daddr, e.proto, e.ip_id, e.icmp_seq, e.tcp_seq, "reply" in e.flags)


def shift(result: SessionResult, delta: int) -> SessionResult:
    """The session on a clock `delta` ns away: its events and its send times (an agent stamps both)."""
    inj = result.inject
    inj = dataclasses.replace(inj, t_first_send_ns=None if inj.t_first_send_ns is None else inj.t_first_send_ns + delta,
                              send_windows=[(a + delta, b + delta) for a, b in inj.send_windows])
    return dataclasses.replace(result, inject=inj,
                               events=[dataclasses.replace(e, ts_ns=e.ts_ns + delta) for e in result.events])


def split(result: SessionResult, bundle) -> dict[str, SessionResult]:
    """The session as each node's agent would have recorded it: its own namespaces' events, stamped
    from its own first event. Events without a namespace (some route lookups) go with the event
    before them on the same CPU. (Lab tests and fixtures: the lab holds every node in one kernel.)"""
    node_of = {h.inode: place(h)[0] or h.name for h in bundle.hosts if h.inode is not None}
    parts: dict[str, list] = {}
    last_on_cpu: dict[int, str] = {}
    for e in sorted(result.events, key=lambda x: x.ts_ns):
        node = node_of.get(e.netns) if e.netns else last_on_cpu.get(e.cpu)
        if node is None:
            continue
        last_on_cpu[e.cpu] = node
        parts.setdefault(node, []).append(e)
    for node in set(node_of.values()):  # a node that saw nothing still has an agent (and a clock)
        parts.setdefault(node, [])
    t_send = result.inject.t_first_send_ns or 0
    return {node: shift(dataclasses.replace(result, events=events), -(events[0].ts_ns if events else t_send))
            for node, events in parts.items()}


def join(parts: dict[str, SessionResult], source_node: str) -> tuple[SessionResult, dict[str, int]]:
    """One session on the source node's clock, and each node's offset. A node that shares no packet
    with the aligned ones is left out (not observed), never guessed."""
    keys = {n: {} for n in parts}  # node -> key -> (first ts, last ts)
    for n, r in parts.items():
        for e in r.events:
            k = packet_key(e)
            if k is not None:
                first, last = keys[n].get(k, (e.ts_ns, e.ts_ns))
                keys[n][k] = (min(first, e.ts_ns), max(last, e.ts_ns))
    offsets = {source_node: 0}
    todo = deque([source_node])
    while todo:
        x = todo.popleft()
        for y in parts:
            if y in offsets:
                continue
            shared = set(keys[x]) & set(keys[y])
            if not shared:
                continue
            requests = [k for k in shared if not k[-1]]
            if requests:  # a request goes from x (aligned, nearer the source) to y: y sees it after x
                offsets[y] = max(keys[x][k][1] + offsets[x] + EPSILON_NS - keys[y][k][0] for k in requests)
            else:  # only answers: they go from y to x, so y saw each before x did
                offsets[y] = min(keys[x][k][0] + offsets[x] - EPSILON_NS - keys[y][k][1] for k in shared)
            todo.append(y)
    events = [dataclasses.replace(e, ts_ns=e.ts_ns + offsets[n]) for n, r in parts.items() if n in offsets
              for e in r.events]
    src = parts[source_node]  # its send times are on its own clock: the joined one
    return dataclasses.replace(src, events=sorted(events, key=lambda e: e.ts_ns)), offsets
