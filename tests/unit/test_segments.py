"""DESIGN's four segments: one rule (tracer/model/segments.py) for diagnose's expected hops, trace's
observed hops and findings. The healthy lab snapshot (a real `podpath snapshot`) for the expected
paths; a trace recorded in the lab (tests/fixtures/sessions, scripts/record_sessions.py) for the
observed hops, since a unit test cannot load BPF."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from podpath.tracer.diagnose import diagnose
from podpath.tracer.model.path import SEGMENTS
from podpath.tracer.trace.replay import replay
from lab_bundle import bundle, healthy  # noqa: F401 - shared fixtures

POD_A, BETWEEN, POD_B, END_TO_END = SEGMENTS
SESSIONS = Path(__file__).resolve().parents[1] / "fixtures" / "sessions"


def request(path):
    return [h for h in path.hops if h.direction == "request"]


def segment_at(path, host, device, point):
    return next(h.segment for h in request(path) if (h.host, h.device, h.point) == (host, device, point))


@pytest.mark.parametrize("src,dst", [("pod-a", "pod-b"), ("pod-a", "pod-a2"), ("pod-a", "coredns"),
                                     ("pod-b", "pod-a"), ("pod-a", "svc/default/web:80")])
def test_request_walks_the_segments_in_order_and_the_reply_is_end_to_end(healthy, src, dst):
    for path in diagnose(healthy, src, dst, proto="tcp" if dst.startswith("svc/") else None).paths:
        order = [SEGMENTS.index(h.segment) for h in request(path)]
        assert order == sorted(order), [(h.host, h.device, h.point, h.segment) for h in request(path)]
        assert order[0] == 0 and order[-1] == 2, (path.alternative, order)
        assert {h.segment for h in path.hops if h.direction == "reply"} == {END_TO_END}


def test_cross_node_hops_are_placed_where_they_are(healthy):
    path = diagnose(healthy, "pod-a", "pod-b").paths[0]
    assert segment_at(path, "node-a", "vethae3f08fc", "ingress") == POD_A
    # host A's route to pod B's node sends it onto flannel.1: the first step between the hosts
    assert segment_at(path, "node-a", "flannel.1", "route") == BETWEEN
    assert segment_at(path, "node-a", "eth0", "egress") == BETWEEN
    assert segment_at(path, "underlay", "br0", "bridge") == BETWEEN
    # the VXLAN packet's own route on host B (to host B's address, through lo) is still between
    assert segment_at(path, "node-b", "lo", "route") == BETWEEN
    assert segment_at(path, "node-b", "flannel.1", "ingress") == BETWEEN
    assert segment_at(path, "node-b", "cni0", "route") == POD_B
    assert all(h.segment == POD_B for h in request(path) if h.host == "pod-b")


def test_same_node_destination_pod_is_host_b_to_pod_b(healthy):
    """Host A is host B: the arrival is pod A → host A, what sends it on to pod B is host B → pod B
    (before one rule, diagnose put every hop of this path, pod-a2's own, in pod A → host A)."""
    path = diagnose(healthy, "pod-a", "pod-a2").paths[0]
    assert segment_at(path, "node-a", "vethae3f08fc", "ingress") == POD_A
    assert segment_at(path, "node-a", "cni0", "bridge") == POD_B
    assert all(h.segment == POD_B for h in request(path) if h.host == "pod-a2")
    assert BETWEEN not in {h.segment for h in path.hops}


def test_service_endpoint_gone_places_its_node_by_pod_cidr(bundle):
    """A Service whose endpoint's pod is gone: the path never reaches a pod, yet its node's hops
    are host B → pod B (the endpoint's node from the pod CIDR that holds it)."""
    gone = bundle.host("pod-b")
    gone.addrs = [a for a in gone.addrs if not a.address.startswith("10.244.")]
    svc = next(s for s in bundle.inventory.services if any(e.startswith("10.244.1.2") for e in s.endpoints))
    paths = diagnose(bundle, "pod-a", f"svc/{svc.namespace}/{svc.name}", proto="tcp").paths
    path = next(p for p in paths if p.endpoint == "10.244.1.2")
    assert path.outcome != "delivered" and not any(h.host == "pod-b" for h in path.hops)
    on_b = [h.segment for h in request(path) if h.host == "node-b" and h.device == "cni0"]
    assert on_b and set(on_b) == {POD_B}


def test_trace_and_diagnose_give_one_place_one_segment():
    """The recorded healthy trace: every observed packet or route hop that diagnose also expects
    (same namespace, device, point, direction) is in the same segment."""
    with gzip.open(SESSIONS / "healthy.json.gz", "rt") as f:
        rec = json.load(f)
    t = replay(rec)
    from podpath.tracer.bundle import Bundle

    flow = rec.get("flow", {})
    d = diagnose(Bundle.from_json(json.dumps(rec["bundle"])), rec["src"], rec["dst"], proto=flow.get("proto"),
                 port=flow.get("port"))
    expected = {(h.host, h.device, h.point, h.direction): h.segment for h in d.paths[0].hops}
    pairs = [(h, expected[(h.host, h.device, h.point, h.direction)]) for h in t.hops
             if (h.host, h.device, h.point, h.direction) in expected]
    assert len(pairs) >= 10 and {s for _, s in pairs} == set(SEGMENTS), len(pairs)
    differ = [(h.host, h.device, h.point, h.direction, h.segment, s) for h, s in pairs if h.segment != s]
    assert not differ, differ
