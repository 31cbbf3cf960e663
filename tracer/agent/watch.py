"""`podpath watch` across nodes: each node's agent records (request `watch`), streams each tick's
rows (`rows` lines), and this end writes them to one directory per node under the output, with the
in-process watch's schema and rotation (watch/store.py), so `podpath report` reads them unchanged.

A node without an agent, whose agent refuses, or whose agent dies mid-watch is named not observed;
its files hold every tick it sent until then, and the other nodes' files stay complete.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PodpathError
from ..watch.store import Segments
from .protocol import AgentError


_LABELS = ("node_name", "drop_reason_desc", "interface", "namespace", "pod_name")  # Prometheus.add's


@dataclass
class NodeWatch:
    node: str
    segs: dict[str, Segments] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    client: object = None
    ticks: int = 0
    totals: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    pods: list = field(default_factory=list)
    closed: bool = False


@dataclass
class AgentWatch:
    """What a watch through agents did: per node its totals, and the nodes not observed (why)."""

    nodes: dict[str, NodeWatch] = field(default_factory=dict)
    not_observed: dict[str, str] = field(default_factory=dict)
    without_pod: list[str] = field(default_factory=list)  # nodes left out: --pod is not theirs

    @property
    def totals(self) -> dict[str, int]:
        out = {"packets": 0, "samples": 0}
        for w in self.nodes.values():
            for k in out:
                out[k] += int(w.totals.get(k, 0))
        return out

    @property
    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.nodes.values():
            for k, v in w.stats.items():
                out[k] = out.get(k, 0) + int(v)
        return out


def refused(node: str, e: PodpathError) -> str:
    """Why a node's agent did not watch, as one line."""
    if getattr(e, "code", None) == "unknown_type":
        return (f"its agent does not know `watch` (an older podpath release); run the same podpath release on "
                f"the agents, or `podpath watch --no-agents` on {node} itself")
    return str(e).removeprefix(f"agent on {node}: ")


def watch_nodes(openers: dict[str, Callable], out: str | Path, *, duration: float | None, pod: str | None = None,
                samples: int = 1000, max_bytes: int = 64 << 20, max_seconds: float = 600,
                endpoints: bool = False, stop: threading.Event | None = None,
                on_started: Callable[[list[str]], None] | None = None, res: AgentWatch | None = None,
                prometheus=None) -> AgentWatch:
    """Watch every node of openers ({node: open() -> socket}) through its agent until duration
    passes or stop is set; the nodes whose agent could not watch are in .not_observed. `res` is
    filled as it goes (an interrupted watch still says what it wrote)."""
    from .client import AgentClient

    out = Path(out)
    stop = stop or threading.Event()
    res = res if res is not None else AgentWatch()

    every: dict[str, NodeWatch] = {}  # never shrinks: a late line of a node given up on finds it closed

    def on_rows(node: str, msg: dict) -> None:
        w = every[node]
        with w.lock:
            if w.closed:
                return
            for table, cols in (msg.get("tables") or {}).items():
                seg = w.segs.get(table)
                if seg is None:
                    seg = w.segs[table] = Segments(out / node, table, max_bytes=max_bytes, max_seconds=max_seconds)
                seg.append(cols)
                if table == "drops" and prometheus is not None:
                    for i, n in enumerate(cols["packets"]):
                        prometheus.add({k: cols[k][i] for k in _LABELS}, n)
            w.ticks += 1

    def close(w: NodeWatch) -> None:
        with w.lock:
            w.closed = True
            for s in w.segs.values():
                s.close()

    failed: dict[str, str] = {}
    without_pod: set[str] = set()

    def start(node: str, opener: Callable) -> None:
        w = res.nodes[node] = every[node] = NodeWatch(node)
        try:
            w.client = AgentClient.connect(opener(), node, on_rows=on_rows)
            ans = w.client.call({"type": "watch", "pod": pod, "samples": samples, "interval": 1.0,
                                 "endpoints": endpoints}, timeout=60)
            w.pods = ans.get("pods") or []
        except (PodpathError, OSError, TimeoutError) as e:
            if getattr(e, "code", None) == "no_pod":
                without_pod.add(node)
                return
            failed[node] = refused(node, e) if isinstance(e, PodpathError) else str(e)

    try:
        starters = [threading.Thread(target=start, args=(n, o), daemon=True) for n, o in sorted(openers.items())]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        res.not_observed.update(failed)
        res.without_pod = sorted(without_pod)
        for node in [*failed, *without_pod]:
            w = res.nodes.pop(node)
            if w.client is not None:
                w.client.close()
            close(w)
        if res.nodes and on_started is not None:
            on_started(sorted(res.nodes))
        end = None if duration is None else time.monotonic() + duration
        while res.nodes and not stop.is_set():
            if end is not None and time.monotonic() >= end:
                break
            for node, w in list(res.nodes.items()):
                if w.client.dead:
                    res.not_observed[node] = (f"its agent went away mid-watch ({w.client.dead}); its files hold "
                                              f"the {w.ticks} s it sent")
                    close(res.nodes.pop(node))
                    w.client.close()
            stop.wait(0.2)
    finally:
        # a node still starting when interrupted has no client yet: nothing to stop there
        for node in [n for n, w in res.nodes.items() if w.client is None]:
            close(res.nodes.pop(node))
        stoppers = [threading.Thread(target=_stop_one, args=(res, w), daemon=True) for w in res.nodes.values()]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        for node, w in list(res.nodes.items()):
            close(w)
            w.client.close()
            if node in res.not_observed:
                del res.nodes[node]
    return res


def _stop_one(res: AgentWatch, w: NodeWatch) -> None:
    """stop: the agent writes its last tick's rows, then the totals."""
    try:
        r = w.client.call({"type": "stop"}, timeout=30)["result"]["watch"]
        w.totals, w.stats = r.get("totals", {}), r.get("stats", {})
    except (AgentError, KeyError, TypeError) as e:
        res.not_observed[w.node] = (f"its agent did not end the watch ({str(e).removeprefix(f'agent on {w.node}: ')}); "
                                    f"its files hold the {w.ticks} s it sent")


def agents_to_watch(kube, nodes: list[str] | None) -> tuple[dict[str, Callable], dict[str, str]] | None:
    """({node: open()}, {node: why not}) for a watch through agents; None when no agent can be reached
    from here (no API configured and no direct map, or no node has an agent): watch in process."""
    import os

    from . import DIRECT_ENV, agent_finder, direct_map

    find = agent_finder(kube)
    if find is None:
        return None
    if not nodes:
        text = os.environ.get(DIRECT_ENV)
        if kube is not None:
            try:
                nodes = [n["metadata"]["name"] for page in kube.pages_json("list", "nodes", kube.core.list_node)
                         for n in page]
            except PodpathError:  # the API cannot be asked: no agent can be found either
                return None
        elif text:
            nodes = sorted(direct_map(text))
    openers = find(set(nodes or ()))
    if not openers:
        return None
    return openers, {n: "no podpath agent runs there" for n in nodes if n not in openers}
