"""Breaks the lab's fault catalog does not name, made by hand with ip/iptables/nft, traced with
real BPF (root only). Each break is undone in a finally block, even when the test fails.
"""

from __future__ import annotations

import contextlib
import subprocess

import pytest
from conftest import ROOT_BPF_LAB, bpf_lab, wait_no_programs

pytestmark = ROOT_BPF_LAB

from podpath.tracer.trace import trace  # noqa: E402
from podpath.tracer.trace.nftrace import TABLE_PREFIX  # noqa: E402
from podpath.tracer.lab.source import LabSource  # noqa: E402


@pytest.fixture(scope="module")
def lab(request):
    return bpf_lab(request, "h")


def sh(*argv: str, input: str | None = None) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=30)
    assert p.returncode == 0, f"{' '.join(argv)}: {p.stderr}"
    return p.stdout


@contextlib.contextmanager
def broken(lab, host: str, do: list[str], undo: list[str], stdin: str | None = None):
    ns = lab.netns(host)
    try:
        for cmd in do:
            sh("ip", "netns", "exec", ns, *cmd.split(), input=stdin)
        yield ns
    finally:
        for cmd in undo:
            subprocess.run(["ip", "netns", "exec", ns, *cmd.split()], capture_output=True)
    assert wait_no_programs() == []


def ip_of(lab, pod: str) -> str:
    return next(p.ip for p in lab.inventory().pods if p.name == pod)


def test_native_nftables_chain_drop_names_the_chain_and_the_rule(lab):
    b_ip = ip_of(lab, "pod-b")
    script = ("table inet pp_handmade {\n chain fwd_guard { type filter hook forward priority 10;\n"
              f"  ip daddr {b_ip} counter drop\n }}\n}}\n")
    with broken(lab, "node-b", ["nft -f -"], ["nft delete table inet pp_handmade"], stdin=script):
        t = trace("pod-a", "pod-b", source=LabSource(lab.name), nftrace=True)
    v = t.verdict
    assert (v.status, v.node, v.location, v.hook, v.drop_reason) == \
        ("dropped", "node-b", "host", "forward", "NETFILTER_DROP"), v
    assert "fwd_guard" in v.table and "priority 10" in v.table, v.table  # between filter (0) and security (50)
    assert v.counter and "fwd_guard" in v.counter, v
    assert v.nftrace and "pp_handmade fwd_guard" in v.nftrace and "drop" in v.nftrace, v
    assert "nft delete rule inet pp_handmade fwd_guard handle" in v.fix, v.fix
    assert TABLE_PREFIX not in sh("ip", "netns", "exec", lab.netns("node-b"), "nft", "list", "tables")


def test_rule_the_model_cannot_evaluate_is_named_by_counters_and_nftrace(lab):
    """-m string matches the test packet's payload: the model treats it as not matching, the kernel
    counts it, and nftrace names it."""
    rule = "-m string --algo bm --string podpath-trace -j DROP"
    with broken(lab, "node-b", [f"iptables -I FORWARD 1 {rule}"], [f"iptables -D FORWARD {rule}"]):
        t = trace("pod-a", "pod-b", source=LabSource(lab.name), nftrace=True)
    v = t.verdict
    assert (v.status, v.cause, v.hook) == ("dropped", "iptables", "forward"), v
    assert v.counter and "--string" in v.counter, v
    assert v.nftrace and "xt match string" in v.nftrace, v
    assert v.fix.startswith(f"ip netns exec {lab.netns('node-b')} iptables -t filter -D FORWARD 1"), v.fix


def test_reject_inside_the_destination_pod(lab):
    rule = "-p icmp -j REJECT --reject-with icmp-host-prohibited"
    with broken(lab, "pod-b", [f"iptables -I INPUT 1 {rule}"], [f"iptables -D INPUT {rule}"]):
        t = trace("pod-a", "pod-b", source=LabSource(lab.name))
    v = t.verdict
    assert (v.status, v.cause, v.node, v.location, v.hook) == ("rejected", "iptables", "node-b", "pod-b", "input"), v
    assert any("REJECT" in e["object"] for e in v.evidence), v


def test_blackhole_route_on_the_source_node(lab):
    b_ip = ip_of(lab, "pod-b")
    with broken(lab, "node-a", [f"ip route add blackhole {b_ip}/32"], [f"ip route del blackhole {b_ip}/32"]):
        t = trace("pod-a", "pod-b", source=LabSource(lab.name))
    v = t.verdict
    assert (v.status, v.cause, v.node, v.location) == ("dropped", "host_route", "node-a", "host"), v
    assert any("blackhole" in e["object"] for e in v.evidence), v
    assert not [h for h in t.hops if h.node == "node-b"]


def test_pod_cidr_half_routed_out_of_the_underlay_blames_the_route_not_arp(lab):
    """A /25 of node-b's pod CIDR routed out of node-a's eth0: the packet dies on the underlay
    because nothing there answers ARP for a pod address. That ARP failure is the symptom; the
    route is the cause, and the one thing to fix."""
    import ipaddress
    b_ip = ip_of(lab, "pod-b")
    half = ipaddress.ip_network(f"{b_ip}/25", strict=False)
    with broken(lab, "node-a", [f"ip route add {half} dev eth0"],
                [f"ip route del {half} dev eth0", f"ip neigh flush to {b_ip} dev eth0"]):
        t = trace("pod-a", "pod-b", source=LabSource(lab.name))
    v = t.verdict
    assert v.status != "delivered" and (v.cause, v.node, v.location) == ("host_route", "node-a", "host"), v
    assert any(f"{half} dev eth0" in e["object"] for e in v.evidence), v.evidence
    # the narrower route goes and flannel's is put back; no ARP entry to add
    assert f"route del {half} dev eth0" in v.fix and "via" in v.fix and "dev flannel.1" in v.fix, v.fix


def test_deleted_vtep_neighbour(lab):
    vtep_b = next(n.pod_cidr.split("/")[0] for n in lab.inventory().nodes if n.name == "node-b")
    with broken(lab, "node-a", [f"ip neigh del {vtep_b} dev flannel.1"], []):
        try:
            t = trace("pod-a", "pod-b", source=LabSource(lab.name))
        finally:
            lab.up()  # reconcile: flannel's permanent neighbour back
    v = t.verdict
    assert v.status != "delivered" and (v.cause, v.node, v.location) == ("arp", "node-a", "host"), v
    assert v.device == "flannel.1" or any("flannel.1" in e["object"] for e in v.evidence), v


# ------------------------------------------------------------------ Services and DNS, by hand

def test_dns_blocked_inside_the_coredns_pod(lab):
    """A NetworkPolicy-like drop in the DNS pod itself (not on a node): podpath dns names the pod."""
    from podpath.tracer.dns import lookup
    rule = "-p udp -m udp --dport 53 -j DROP"
    with broken(lab, "coredns", [f"iptables -I INPUT 1 {rule}"], [f"iptables -D INPUT {rule}"]):
        r = lookup("pod-a", "web", source=LabSource(lab.name))
    v = r.trace["verdict"]
    assert r.status == "timeout" and not r.ok, r.attempts
    assert (v["status"], v["cause"], v["node"], v["location"], v["hook"]) == \
        ("dropped", "dns", "node-b", "coredns", "input"), v
    assert v["counter"] and "--dport 53" in v["counter"], v


def test_dns_answers_dropped_in_the_client_pod(lab):
    """The answers are dropped where they arrive: the query's way out is fine, the reply dies in pod-a."""
    from podpath.tracer.dns import lookup
    rule = "-p udp -m udp --sport 53 -j DROP"
    with broken(lab, "pod-a", [f"iptables -I INPUT 1 {rule}"], [f"iptables -D INPUT {rule}"]):
        r = lookup("pod-a", "web", source=LabSource(lab.name))
    v = r.trace["verdict"]
    assert r.status == "timeout", r.attempts
    assert (v["status"], v["node"], v["location"], v["hook"], v["direction"]) == \
        ("dropped", "node-a", "pod-a", "input", "reply"), v
    assert v["cause"] in ("dns", "iptables") and any("--sport 53" in e["object"] for e in v["evidence"]), v


def test_service_target_port_nobody_listens_on(lab):
    """kube-proxy DNATs web to pod-b:9090 (a wrong targetPort): the endpoint pod answers with a RST."""
    b_ip = ip_of(lab, "pod-b")
    ns = lab.netns("node-a")
    chain = next(line.split()[1] for line in sh("ip", "netns", "exec", ns, "iptables-save", "-t", "nat").splitlines()
                 if line.startswith("-A KUBE-SEP-") and f"--to-destination {b_ip}:8080" in line)
    rule = f"-p tcp -m tcp -j DNAT --to-destination {b_ip}:9090"
    with broken(lab, "node-a", [f"iptables -t nat -I {chain} 1 {rule}"], [f"iptables -t nat -D {chain} {rule}"]):
        for _ in range(16):  # kube-proxy picks pod-b half of the time
            t = trace("pod-a", "svc/default/web:80", source=LabSource(lab.name))
            if t.service and t.service["endpoint_pod"] == "pod-b":
                break
    assert t.service["endpoint"] == f"{b_ip}:9090", t.service
    v = t.verdict
    assert (v.status, v.cause, v.node, v.location) == ("rejected", "no_listener", "node-b", "pod-b"), v
