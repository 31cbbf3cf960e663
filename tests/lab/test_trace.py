"""`podpath trace` against the real netns lab with real BPF (root only).

One lab per module, named r<4 hex>, torn down in its finalizer even when tests fail. Each test
traces one flow (healthy, or with one catalog fault injected and cleared again) and checks the
verdict, the observed hops, and that no podpath BPF program is left loaded afterwards.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT_BPF_LAB, bpf_lab, nobody_can_run_the_checkout, wait_no_programs

pytestmark = ROOT_BPF_LAB

from podpath.tracer.trace import trace  # noqa: E402
from podpath.tracer.lab.source import LabSource  # noqa: E402


@pytest.fixture(scope="module")
def lab(request):
    return bpf_lab(request, "r")


def no_programs_left(timeout: float = 3.0) -> list:
    return wait_no_programs(timeout)


@pytest.fixture
def traced(lab):
    """trace(...) in the lab; after the test: faults cleared and no podpath program loaded."""
    def run(src, dst, fault=None, **kw):
        if fault:
            lab.inject(fault)
        try:
            return trace(src, dst, source=LabSource(lab.name), **kw)
        finally:
            if fault:
                lab.clear(fault)
    yield run
    lab.clear_all()
    assert no_programs_left() == [], "podpath BPF programs still loaded after the trace"


def where(h) -> tuple:
    return (h.node, h.location, h.device, h.point)


def in_order(hops, wanted) -> bool:
    """wanted (node, location, device, point) tuples appear in hops in this order."""
    it = iter(where(h) for h in hops)
    return all(any(w == got for got in it) for w in wanted)


def test_healthy_cross_node_delivered_with_every_hop_and_the_reply(lab, traced):
    pods = {p.name: p for p in lab.inventory().pods}
    veth_a, veth_b = pods["pod-a"].host_veth, pods["pod-b"].host_veth
    t = traced("pod-a", "pod-b")
    v = t.verdict
    assert v.status == "delivered" and v.cause is None, (v, t.hops)
    req = [h for h in t.hops if h.direction == "request"]
    assert in_order(req, [
        ("node-a", "pod-a", "eth0", "egress"),
        ("node-a", "host", veth_a, "ingress"),
        ("node-a", "host", "cni0", "ingress"),
        ("node-a", "host", None, "forward"),  # the netfilter brackets' hop
        ("node-a", "host", "flannel.1", "egress"),
        ("node-a", "host", "eth0", "egress"),
        ("node-b", "host", "eth0", "ingress"),
        ("node-b", "host", "flannel.1", "ingress"),
        ("node-b", "host", None, "forward"),
        ("node-b", "host", "cni0", "egress"),
        ("node-b", "host", veth_b, "egress"),
        ("node-b", "pod-b", "eth0", "ingress"),
    ]), [where(h) for h in req]
    underlay = [h for h in req if h.node in ("node-a", "node-b") and h.device == "eth0" and h.location == "host"
                and h.point in ("ingress", "egress")]
    assert all(h.inner for h in underlay), "the underlay carries the test packet inside VXLAN"
    reply = [h for h in t.hops if h.direction == "reply"]
    reply_dev = [h for h in reply if h.point in ("ingress", "egress")]
    assert where(reply_dev[0]) == ("node-b", "pod-b", "eth0", "egress")
    assert ("node-a", "host", None, "forward") in [where(h) for h in reply]
    assert where(reply_dev[-1]) == ("node-a", "pod-a", "eth0", "ingress")
    segments = {h.segment for h in t.hops}
    assert None not in segments and len(segments) == 4, segments
    routes = [h.detail for h in req if h.point == "route"]
    # the kernel's own route decisions, from fib:fib_table_lookup
    b_ip = pods["pod-b"].ip
    vtep_b = next(n.pod_cidr.split("/")[0] for n in lab.inventory().nodes if n.name == "node-b")
    assert f"table main: {b_ip} via {vtep_b} dev flannel.1" in routes, routes
    assert f"table main: {b_ip} local" in routes, routes
    assert [h.time for h in t.hops] == sorted(h.time for h in t.hops) and t.hops[0].time == 0
    assert t.lost_events == 0
    d = t.to_dict()
    json.dumps(d)
    for k in ("status", "cause", "node", "location", "device", "hook", "drop_reason", "evidence", "fix"):
        assert k in d["verdict"]
    assert all({"node", "location", "device", "point", "direction", "time"} <= set(h) for h in d["hops"])
    print(f"\ncommand to verdict: {t.timings['verdict_ms']:.0f} ms ({len(t.hops)} hops)")


def test_same_node_delivered(traced):
    t = traced("pod-a", "pod-a2")
    assert t.verdict.status == "delivered", t.verdict
    assert {h.node for h in t.hops} == {"node-a"}
    dev_hops = [h for h in t.hops if h.point in ("ingress", "egress")]
    assert where(dev_hops[0]) == ("node-a", "pod-a", "eth0", "egress")
    assert ("node-a", "pod-a2", "eth0", "ingress") in [where(h) for h in t.hops]
    assert where([h for h in dev_hops if h.direction == "reply"][-1]) == ("node-a", "pod-a", "eth0", "ingress")
    assert ("node-a", "host", None, "forward") in [where(h) for h in t.hops if h.direction == "request"]


def test_forward_drop_is_dropped_at_node_b_by_the_rule(traced):
    t = traced("pod-a", "pod-b", fault="forward-drop")
    v = t.verdict
    assert (v.status, v.node, v.location, v.drop_reason, v.cause, v.hook) == \
        ("dropped", "node-b", "host", "NETFILTER_DROP", "iptables", "forward"), v
    assert any(e["kind"] == "rule" and "-A FORWARD -d 10.244.1.0/24 -j DROP" in e["object"] for e in v.evidence), v
    assert v.fix and "FORWARD" in v.fix
    assert t.hops[-1].point == "drop" and not [h for h in t.hops if h.direction == "reply"]
    print(f"\ndrop: command to verdict {t.timings['verdict_ms']:.0f} ms, attach {t.timings['attach_ms']:.0f} ms")


def test_pod_route_missing_is_unsent(traced):
    t = traced("pod-a", "pod-b", fault="pod-route-missing")
    v = t.verdict
    assert (v.status, v.cause, v.node, v.location) == ("unsent", "pod_route", "node-a", "pod-a"), v
    assert v.errno == "ENETUNREACH"
    assert v.evidence and v.fix


def test_fdb_wrong_dst_is_blamed_on_node_a_fdb(traced):
    t = traced("pod-a", "pod-b", fault="fdb-wrong-dst")
    v = t.verdict
    assert v.status in ("lost", "dropped") and (v.cause, v.node) == ("fdb", "node-a"), v
    assert any(e["kind"] == "fdb" and "192.168.56.99" in e["object"] for e in v.evidence), v
    assert not [h for h in t.hops if h.node == "node-b"], "nothing reaches node-b"


def test_service_reaches_both_endpoints_through_the_cluster_ip(traced):
    """kube-proxy picks an endpoint at random: trace until both were chosen, each with its DNAT."""
    seen = {}
    for _ in range(16):
        t = traced("pod-a", "svc/default/web:80")
        svc = t.service
        assert t.verdict.status == "delivered", t.verdict
        assert svc["endpoint_pod"] in ("pod-a2", "pod-b") and svc["node"] == "node-a", svc
        assert svc["chain"][1].startswith("nat/KUBE-SERVICES") and "KUBE-SVC-" in svc["chain"][2], svc
        assert svc["chain"][-1].endswith(f"--to-destination {svc['endpoint']}"), svc
        assert svc["reverse_nat"] and svc["reverse_nat"].split(" at ")[0].endswith("10.96.0.100:80"), svc
        dnat = [h for h in t.hops if h.detail and h.detail.startswith("DNAT 10.96.0.100:80")]
        assert dnat and (dnat[0].node, dnat[0].point) == ("node-a", "prerouting"), t.hops
        assert (svc["endpoint_pod"], "eth0", "ingress") in [(h.host, h.device, h.point) for h in t.hops]
        seen[svc["endpoint_pod"]] = t
        if len(seen) == 2:
            break
    assert set(seen) == {"pod-a2", "pod-b"}, f"only {set(seen)} chosen in 16 traces"
    same_node = seen["pod-a2"]  # pod-a2 is on node-a: no hop may reach node-b
    assert not [h for h in same_node.hops if h.node == "node-b"]


def test_dns_service_over_udp(traced):
    t = traced("pod-a", "svc/kube-system/kube-dns:53", proto="udp", port=53)
    assert t.verdict.status == "delivered", t.verdict
    assert t.service["endpoint_pod"] == "coredns" and t.service["endpoint"].endswith(":53"), t.service


def test_tcp_and_udp(traced):
    ok = traced("pod-a", "pod-b", proto="tcp", port=8080)
    assert ok.verdict.status == "delivered", ok.verdict
    refused = traced("pod-a", "pod-b", proto="tcp", port=9999)
    assert (refused.verdict.status, refused.verdict.cause) == ("rejected", "no_listener"), refused.verdict
    udp = traced("pod-a", "pod-b", proto="udp", port=9999)
    assert (udp.verdict.status, udp.verdict.drop_reason, udp.verdict.cause) == \
        ("dropped", "NO_SOCKET", "no_listener"), udp.verdict


PODPATH = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "podpath")


def cli(*args, user=None):
    cmd = [PODPATH, *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_cli_json_and_exit_codes(lab):
    p = cli("trace", "pod-a", "pod-b", "--lab", lab.name, "-o", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["verdict"]["status"] == "delivered" and d["hops"]
    lab.inject("forward-drop")
    try:
        p = cli("trace", "pod-a", "pod-b", "--lab", lab.name)
    finally:
        lab.clear("forward-drop")
    assert p.returncode == 1, p.stderr
    assert "NETFILTER_DROP" in p.stdout and "-A FORWARD -d 10.244.1.0/24 -j DROP" in p.stdout
    assert "host A → host B" in p.stdout and "probes" in p.stderr
    assert no_programs_left() == []


def test_cli_without_root_points_at_diagnose(lab):
    nobody_can_run_the_checkout()
    p = cli("trace", "pod-a", "pod-b", "--lab", lab.name, user="65534")
    assert p.returncode == 4 and "podpath diagnose" in p.stderr and p.stderr.count("\n") == 1, p.stderr
