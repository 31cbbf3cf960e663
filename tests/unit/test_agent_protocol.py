"""The agent protocol's codec and stream reader, and the coordinator's pure parts: the per-node plan
split, the inode remap, and its join path on recorded catalog traces (no root, no probes)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import socket
import threading
from pathlib import Path

import pytest

from podpath.tracer.agent import DIRECT_ENV, direct_map
from podpath.tracer.agent import protocol as P
from podpath.tracer.agent.coordinator import (INODE_SHIFT, involved_nodes, join_nodes, merge_bundles,
                                              plan_per_node, remap_inode, watch_filter)
from podpath.tracer.agent.server import OwnNamespaces
from podpath.tracer.bundle import Bundle
from podpath.tracer.errors import UsageError
from podpath.tracer.model.topology import place
from podpath.tracer.netns import OWN_NETNS, probe_netns
from podpath.tracer.trace import VERDICT_FIELDS
from podpath.tracer.trace.session import SessionResult

SESSIONS = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "sessions").glob("*.json.gz"))
INIT_NET = 0xF0000000  # every real node's root namespace inode (init_net's fixed proc inum)


def load(name: str) -> dict:
    with gzip.open(Path(SESSIONS[0]).with_name(f"{name}.json.gz"), "rt") as f:
        return json.load(f)


# -- codec ------------------------------------------------------------------------------------------

def test_messages_round_trip_as_one_line_each():
    msg = {"type": "arm", "id": 7, "session": {"inject": {"src": "10.244.0.2", "note": "ünïcode\nnewline"}}}
    line = P.encode(msg)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert P.decode(line[:-1]) == msg


@pytest.mark.parametrize("line, code", [(b"not json", "bad_json"), (b"\xff\xfe", "bad_json"), (b"[1]", "bad_request"),
                                        (b'{"id": 1}', "bad_request"), (b'{"type": 3}', "bad_request"),
                                        (b'{"type": "ping", "id": [1]}', "bad_request"),
                                        (b'{"type": "ping", "id": true}', "bad_request")])
def test_bad_lines_become_one_protocol_error(line, code):
    with pytest.raises(P.ProtocolError) as e:
        P.decode(line)
    assert e.value.code == code and str(e.value)


def test_a_version_mismatch_names_both_versions():
    with pytest.raises(P.ProtocolError) as e:
        P.check_hello({"type": "hello", "protocol": 2, "id": 1})
    assert e.value.code == "version" and "2" in str(e.value) and str(P.PROTOCOL) in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(P.ProtocolError) as e:
        P.check_hello({"type": "snapshot", "id": 1})
    assert e.value.code == "bad_request"
    P.check_hello({"type": "hello", "protocol": P.PROTOCOL})


def test_line_reader_joins_halves_and_skips_an_over_long_line():
    a, b = socket.socketpair()
    with a, b:
        r = P.LineReader(b, limit=100)

        def feed():
            a.sendall(b'{"type": "pi')
            a.sendall(b'ng"}\n' + b"x" * 250 + b"\n" + b"y" * 150)
            a.sendall(b"y" * 100 + b"\nlast\n")
            a.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=feed)
        t.start()
        assert P.decode(r.readline()) == {"type": "ping"}
        with pytest.raises(P.ProtocolError) as e:
            r.readline()
        assert e.value.code == "too_long"
        with pytest.raises(P.ProtocolError):  # the second long line, reported once
            r.readline()
        assert r.readline() == b"last"
        assert r.readline() is None
        t.join()


def test_direct_map_parses_and_refuses_bad_items():
    assert direct_map("node-a=ns-a, node-b=/run/netns/b") == {"node-a": "ns-a", "node-b": "/run/netns/b"}
    with pytest.raises(UsageError) as e:
        direct_map("node-a")
    assert DIRECT_ENV in str(e.value)


# -- own namespaces ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Ev:
    netns: int
    cpu: int


def test_agent_keeps_its_own_namespaces_and_their_namespaceless_followers():
    keep = OwnNamespaces({10, 11})
    assert keep(Ev(10, 0)) and not keep(Ev(99, 1))
    assert keep(Ev(0, 0)), "a route lookup after our event on the same CPU is ours"
    assert not keep(Ev(0, 1)), "after another node's event it is not"
    assert not keep(Ev(0, 5)), "with nothing before it on that CPU, it is nobody's"


# -- merge, remap, plan split -----------------------------------------------------------------------

def per_node_bundles(rec: dict, clash: bool = True) -> dict[str, Bundle]:
    """The recorded lab bundle as each node's agent would send it: its own hosts, the node itself in
    "the namespace podpath runs in" (netns None), and (clash) every node's root namespace at
    init_net's inode, as on a real cluster."""
    bundle = Bundle.from_json(json.dumps(rec["bundle"]))
    out: dict[str, Bundle] = {}
    for h in bundle.hosts:
        node = place(h)[0] or h.name
        if h.kind == "node":
            h.netns = None
            if clash:
                h.inode = INIT_NET
        out.setdefault(node, Bundle(hosts=[], inventory=bundle.inventory)).hosts.append(h)
    return out


def test_merged_bundle_moves_clashing_inodes_apart():
    rec = load("forward-drop")
    nodes = per_node_bundles(rec)
    merged, index = merge_bundles(nodes, nodes["node-a"].inventory)
    inodes = [h.inode for h in merged.hosts if h.inode]
    assert len(inodes) == len(set(inodes)) == len([h for b in nodes.values() for h in b.hosts if h.inode])
    a = next(h for h in merged.hosts if h.name == "node-a")
    assert a.inode == ((index["node-a"] + 1) << INODE_SHIFT) | INIT_NET
    assert remap_inode(0, 0) is None and remap_inode(0, None) is None  # "no namespace" stays none


@pytest.mark.parametrize("name, service", [("forward-drop", False), ("svc-no-endpoints", True),
                                           ("dns-blocked", True)])
def test_plan_splits_per_node_in_names_valid_there(name, service):
    from podpath.tracer.diagnose import diagnose
    from podpath.tracer.trace.plan import plan

    rec = load(name)
    f = rec["flow"]
    nodes = per_node_bundles(rec)
    merged, _ = merge_bundles(nodes, nodes["node-a"].inventory)
    node_of = {h.name: n for n, b in nodes.items() for h in b.hosts}
    diag = diagnose(merged, rec["src"], rec["dst"], proto=f["proto"], port=f["port"], size=f["size"], sport=f["sport"])
    reqs, src_host, _dst, src_node = plan_per_node(merged, diag, node_of, count=1, timeout=1.0)
    assert src_node == "node-a" and not reqs["node-a"].watch_only
    assert reqs["node-a"].inject.netns == probe_netns(src_host) == src_host.netns
    for node, r in reqs.items():
        valid = {probe_netns(h) for h in nodes[node].hosts}
        assert {ns for ns, _ in r.attach} <= valid, node
        assert set(r.nf_plan) <= valid, node
        if node != src_node:
            assert r.watch_only and r.dst_netns is None
    if name != "svc-no-endpoints":  # (there kube-proxy rejects on node-a: the path ends there)
        assert any(ns == OWN_NETNS for ns, _ in reqs["node-b"].attach), "node-b's own devices are probed there"
    # split and re-joined, it is the plan of the whole bundle
    whole, _, _ = plan(Bundle.from_json(json.dumps(rec["bundle"])), diagnose(
        Bundle.from_json(json.dumps(rec["bundle"])), rec["src"], rec["dst"], proto=f["proto"], port=f["port"],
        size=f["size"], sport=f["sport"]), count=1)
    assert sum(len(r.attach) for r in reqs.values()) == len(whole.attach)
    flt = watch_filter(reqs[src_node], {"sport": 40000, "icmp_id": None}, service=service)
    assert flt["saddr"] == reqs[src_node].inject.src and flt["bidir"]
    if service:
        assert flt["daddr"] is None and flt["dport"] is None, "the ClusterIP is gone after DNAT"
    else:
        assert flt["daddr"] == reqs[src_node].inject.dst


def test_involved_nodes_from_the_inventory():
    inv = Bundle.from_json(json.dumps(load("dns-blocked")["bundle"])).inventory
    assert involved_nodes(inv, "pod-a", "default/pod-b") == ("node-a", {"node-b"}, False)
    src, ends, svc = involved_nodes(inv, "default/pod-a", "svc/kube-system/kube-dns:53")
    assert (src, ends, svc) == ("node-a", {"node-b"}, True)
    assert involved_nodes(inv, "nope", "10.244.1.2")[0] is None


# -- the coordinator's join path --------------------------------------------------------------------

@pytest.mark.parametrize("path", SESSIONS, ids=lambda p: p.name.removesuffix(".json.gz"))
def test_coordinator_join_with_clashing_inodes_and_far_clocks_gives_the_recorded_verdict(path):
    """Each node's session as its agent sends it (own inodes, root at init_net's, own arm clock, one
    node a day ahead), through the coordinator's remap and join: the verdict is the recorded one."""
    from podpath.tracer.diagnose import diagnose
    from podpath.tracer.trace.correlate import correlate
    from podpath.tracer.trace.join import packet_key, shift, split

    rec = load(path.name.removesuffix(".json.gz"))
    whole = Bundle.from_json(json.dumps(rec["bundle"]))
    real_ino = {h.name: h.inode for h in whole.hosts}
    parts = split(SessionResult.from_dict(rec["session"]), whole)
    nodes = per_node_bundles(rec)
    # the agents' events carry their own inodes: the node's root one is init_net's on every node
    to_agent = {real_ino[h.name]: h.inode for b in nodes.values() for h in b.hosts if real_ino[h.name]}
    day = 86_400 * 10**9
    sent = {n: shift(dataclasses.replace(r, events=[dataclasses.replace(e, netns=to_agent.get(e.netns, e.netns))
                                                    for e in r.events]), (i + 1) * day)
            for i, (n, r) in enumerate(sorted(parts.items()))}
    merged, index = merge_bundles(nodes, whole.inventory)
    joined, offsets = join_nodes(sent, index, "node-a")
    with_packets = {n for n, r in parts.items() if any(packet_key(e) for e in r.events)}
    assert with_packets <= set(offsets)
    f = rec["flow"]
    diag = diagnose(merged, rec["src"], rec["dst"], proto=f["proto"], port=f["port"], size=f["size"],
                    sport=f["sport"])
    node_of = {h.name: n for n, b in nodes.items() for h in b.hosts}
    _reqs, src_host, dst_host, _ = plan_per_node(merged, diag, node_of, count=f.get("count") or 1, timeout=1.0)
    t = correlate(session=joined, bundle=merged, diagnosis=diag, src_host=src_host, dst_host=dst_host,
                  src=rec["src"], dst=rec["dst"])
    assert {k: getattr(t.verdict, k) for k in VERDICT_FIELDS} == rec["verdict"], path.name


# -- the protocol's doc -----------------------------------------------------------------------------

def test_protocol_doc_shows_every_message_code_and_limit():
    """docs/agent-protocol.md has an example line of every message type, a row for every error
    code, and the version, line limit and heartbeat figures the code uses."""
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "agent-protocol.md").read_text()
    examples = {json.loads(line).get("type") for line in re.findall(r"^(\{.*\})$", doc, re.M)}
    types = set(P.REQUESTS) | set(P.ANSWERS.values()) | set(P.UNSOLICITED)
    assert not types - examples, f"docs/agent-protocol.md: no example line of {sorted(types - examples)}"
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", doc, re.M))
    assert not set(P.ERROR_CODES) - rows, f"docs/agent-protocol.md: no row for error codes {set(P.ERROR_CODES) - rows}"
    assert f"# The agent protocol (version {P.PROTOCOL})" in doc
    assert f"{P.MAX_LINE // (1024 * 1024)} MiB" in doc and f"HEARTBEAT_S` = {P.HEARTBEAT_S:g} s" in doc
    assert f"DEAD_AFTER_S` = {P.DEAD_AFTER_S:g} s" in doc and f"127.0.0.1:{P.PORT}" in doc


@pytest.mark.parametrize("name, kept", [("healthy", True), ("forward-drop", True), ("dns-blocked", True),
                                        ("no-listener", True), ("svc-no-endpoints", False)])
def test_the_api_view_arms_what_the_snapshot_plans(name, kept):
    """The session armed before any snapshot (from the API's inventory) is the one the merged
    snapshot's plan wants: the same packets and every neighbour entry the plan watches. A Service
    without endpoints is planned out of the node's default route, whose gateway only the snapshot
    knows: that one is re-armed."""
    from podpath.tracer.agent.coordinator import early_request, fits
    from podpath.tracer.diagnose import diagnose

    rec = load(name)
    f = rec["flow"]
    nodes = per_node_bundles(rec)
    inv = nodes["node-a"].inventory
    early = early_request(inv, rec["src"], rec["dst"], set(nodes) & {"node-a", "node-b"}, proto=f["proto"],
                          port=f["port"], size=f["size"], sport=f["sport"], count=1, timeout=1.0)
    assert early is not None and early.inject.netns is None, "the agent finds the source pod's namespace"
    merged, _ = merge_bundles(nodes, inv)
    node_of = {h.name: n for n, b in nodes.items() for h in b.hosts}
    diag = diagnose(merged, rec["src"], rec["dst"], proto=f["proto"], port=f["port"], size=f["size"], sport=f["sport"])
    reqs, _src, _dst, src_node = plan_per_node(merged, diag, node_of, count=1, timeout=1.0)
    planned = reqs[src_node]
    assert fits(early, {"netns": planned.inject.netns}, planned) == kept, (early.neigh_addrs, planned.neigh_addrs)
    assert not fits(early, {"netns": "another-pod"}, planned)


def _through_agents_without_underlay(name: str, observed: list[str] | None):
    """A recorded lab trace as two nodes' agents would send it on a cluster: the underlay (the lab's
    switch namespace) is the physical network there, which no agent observes."""
    from podpath.tracer.diagnose import diagnose
    from podpath.tracer.trace.correlate import correlate
    from podpath.tracer.trace.join import split

    rec = load(name)
    whole = Bundle.from_json(json.dumps(rec["bundle"]))
    parts = {n: r for n, r in split(SessionResult.from_dict(rec["session"]), whole).items() if n != "underlay"}
    nodes = {n: b for n, b in per_node_bundles(rec).items() if n != "underlay"}
    merged, index = merge_bundles(nodes, whole.inventory)
    joined, _offsets = join_nodes(parts, index, "node-a")
    joined.observed_nodes = observed
    f = rec["flow"]
    diag = diagnose(merged, rec["src"], rec["dst"], proto=f["proto"], port=f["port"], size=f["size"], sport=f["sport"])
    node_of = {h.name: n for n, b in nodes.items() for h in b.hosts}
    _reqs, src_host, dst_host, _ = plan_per_node(merged, diag, node_of, count=f.get("count") or 1, timeout=1.0)
    return correlate(session=joined, bundle=merged, diagnosis=diag, src_host=src_host, dst_host=dst_host,
                     src=rec["src"], dst=rec["dst"]).verdict


def test_lost_between_two_watching_agents_is_explained_by_the_far_node():
    """mtu-mismatch on a cluster: node-b's underlay MTU refuses node-a's full-size VXLAN packets on
    the wire. node-b's agent watched and saw nothing arrive, so the packet was lost between the nodes
    and node-b's MTU (the snapshot's finding there) is the cause. Without that knowledge (one
    process, which cannot tell silence from not looking) the verdict stays unexplained."""
    v = _through_agents_without_underlay("mtu-mismatch", ["node-a", "node-b"])
    assert (v.status, v.cause, v.node, v.device) == ("lost", "mtu", "node-a", "eth0"), v.message
    assert "node-b, whose agent saw it never arrive" in v.message, v.message
    assert v.fix, "the MTU finding's fix travels with the verdict"
    v = _through_agents_without_underlay("mtu-mismatch", None)
    assert (v.status, v.cause) == ("lost", "unknown"), v.message


def test_observed_nodes_round_trip_in_a_session_result():
    rec = load("healthy")
    r = SessionResult.from_dict(rec["session"])
    assert r.observed_nodes is None  # recorded before agents: one process
    r.observed_nodes = ["node-a", "node-b"]
    assert SessionResult.from_dict(json.loads(json.dumps(r.to_dict()))).observed_nodes == ["node-a", "node-b"]
