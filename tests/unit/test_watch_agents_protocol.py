"""The coordinator's side of `watch` through agents (tracer/agent/watch.py), against scripted agents
over socket pairs: rows become each node's files (read back by the report's reader), an agent of an
older release (no `watch` request) is one line, one that dies mid-watch is named and the other
node's files stay whole. The scripted peers stand in for agents only to play these exact
sequences without root; the real agents are tests/lab/test_watch_agents.py's."""

from __future__ import annotations

import json
import socket
import threading

from podpath.tracer.agent import protocol as P
from podpath.tracer.agent.watch import watch_nodes
from podpath.tracer.watch.store import read_table

T0 = 1_764_460_800_000_000_000  # 2025-11-30T00:00:00Z in ns


def _counters(node: str, tick: int) -> dict:
    return {"time": [T0 + tick * 10**9], "node_name": [node], "group": ["softnet"], "name": ["dropped"],
            "object": ["cpu0"], "value": [tick]}


def _drops(node: str, tick: int, n: int) -> dict:
    cols = {"time": [T0 + tick * 10**9], "interval_s": [1.0], "node_name": [node], "pod_name": [None],
            "namespace": [None], "netns": [4026531840], "ifindex": [3], "interface": ["cni0"],
            "drop_reason_desc": ["NETFILTER_DROP"], "location": [2**64 - 5], "location_symbol": ["nf_hook_slow+0x9c"],
            "ethertype": [2048], "l4_protocol": ["UDP"], "ip_source": ["10.244.0.2"],
            "ip_destination": ["10.244.1.3"], "source_port": [40000], "destination_port": [53],
            "packets": [n], "bytes": [n * 70]}
    return cols


def _agent(node: str, script: str, ticks: int = 3) -> socket.socket:
    """A scripted peer: "watch" (rows each tick, a last tick and the totals on stop), "old" (answers
    watch with unknown_type, as a release without it does), "dies" (its ticks, then closes)."""
    ours, theirs = socket.socketpair()

    def send(msg: dict) -> None:
        theirs.sendall(json.dumps(msg).encode() + b"\n")

    def run() -> None:
        f = theirs.makefile("rb")
        hello = json.loads(f.readline())
        send({"type": "hello", "id": hello["id"], "protocol": P.PROTOCOL, "node": node})
        req = json.loads(f.readline())
        if script == "old":
            send(P.error("unknown_type", f"unknown message type {req['type']!r}; requests are hello, snapshot",
                         req["id"]))
            f.readline()
            return
        send({"type": "watching", "id": req["id"], "node": node, "pods": []})
        for t in range(1, ticks + 1):
            send({"type": "rows", "id": req["id"], "node": node,
                  "tables": {"drops": _drops(node, t, 10 * t), "counters": _counters(node, t)}})
        if script == "dies":
            theirs.close()
            return
        stop = json.loads(f.readline())
        send({"type": "rows", "id": req["id"], "node": node, "tables": {"counters": _counters(node, ticks + 1)}})
        send({"type": "result", "id": stop["id"], "result": {"watch": {"totals": {"packets": 10 * ticks * (ticks + 1) // 2,
                                                                                   "samples": 0},
                                                                        "stats": {"ringbuf_lost": 0}}}})
        f.readline()

    threading.Thread(target=run, daemon=True).start()
    return ours


def test_rows_become_each_nodes_files(tmp_path):
    res = watch_nodes({"node-a": lambda: _agent("node-a", "watch"), "node-b": lambda: _agent("node-b", "watch", 2)},
                      tmp_path, duration=0.5)
    assert sorted(res.nodes) == ["node-a", "node-b"] and not res.not_observed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node-a", "node-b"]
    d = read_table([tmp_path], "drops").to_pandas()
    assert d.groupby("node_name").packets.sum().to_dict() == {"node-a": 60, "node-b": 30}
    c = read_table([tmp_path / "node-b"], "counters").to_pandas()
    assert sorted(c.value) == [1, 2, 3]  # the last tick, written on stop, is there
    assert res.totals["packets"] == 60 + 30


def test_an_older_agent_is_one_line_and_the_other_node_is_watched(tmp_path):
    res = watch_nodes({"node-a": lambda: _agent("node-a", "watch"), "node-b": lambda: _agent("node-b", "old")},
                      tmp_path, duration=0.3)
    assert list(res.nodes) == ["node-a"]
    why = res.not_observed["node-b"]
    assert "does not know `watch`" in why and "\n" not in why, why
    assert [p.name for p in tmp_path.iterdir()] == ["node-a"]


def test_an_agent_that_dies_is_named_and_the_others_files_stay_whole(tmp_path):
    res = watch_nodes({"node-a": lambda: _agent("node-a", "watch"), "node-b": lambda: _agent("node-b", "dies", 2)},
                      tmp_path, duration=1.0)
    assert list(res.nodes) == ["node-a"]
    assert res.not_observed["node-b"].startswith("its agent went away mid-watch (connection closed by the agent)")
    d = read_table([tmp_path], "drops").to_pandas()
    assert d.groupby("node_name").packets.sum().to_dict() == {"node-a": 60, "node-b": 30}


def test_nothing_to_watch_returns_at_once(tmp_path):
    res = watch_nodes({}, tmp_path, duration=60)
    assert not res.nodes and not res.not_observed and not list(tmp_path.iterdir())
