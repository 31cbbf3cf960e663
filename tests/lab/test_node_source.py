"""podpath run as on a real node: inside a lab node's namespace, no --lab.

The node's namespace is the node; pod namespaces are found by their veth peers, named by the API
(stand-in server) or kubelet's hostname or their IP; the other node is known only from the
cluster's facts, so a path to it ends where the packet leaves this node, never guessed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import ROOT_BPF_LAB, bpf_lab, podpath_on_node as on_node  # noqa: E402

pytestmark = ROOT_BPF_LAB


@pytest.fixture(scope="module")
def lab(request):
    return bpf_lab(request, "nd")


def pod_ip(lab, pod: str) -> str:
    return next(p.ip for p in lab.inventory().pods if p.name == pod)


def test_discovery_finds_exactly_the_nodes_pods(lab):
    from podpath.tracer.sources.discovery import discover

    for node in ("node-a", "node-b"):
        found = discover(lab.netns(node))
        want = {p.netns for p in lab.inventory().pods if p.node == node}
        got = {ns.name for ns in found}
        assert got == want, f"{node}: discovered {got}, the lab built {want}"
        assert all(ns.host_veth and ns.host_veth.startswith("veth") for ns in found)


def test_snapshot_on_a_node_holds_the_node_and_its_pods_only(lab):
    r = on_node(lab, "node-a", "snapshot")
    assert r.returncode == 0, r.stderr
    bundle = json.loads(r.stdout)
    kinds = sorted((h["kind"], tuple(a["address"] for a in h["addrs"] if a["ifname"] == "eth0")) for h in bundle["hosts"])
    assert [k for k, _ in kinds].count("node") == 1
    pod_ips = {ip for k, ips in kinds if k == "pod" for ip in ips}
    assert pod_ips == {pod_ip(lab, "pod-a"), pod_ip(lab, "pod-a2")}
    node = next(h for h in bundle["hosts"] if h["kind"] == "node")
    assert node["netns"] is None and node["inode"], "the node is the namespace podpath runs in"
    # without the API, kubelet's hostname in each pod's holder names it, and its resolv.conf is the pod's
    pods = {h["name"]: h for h in bundle["hosts"] if h["kind"] == "pod"}
    assert set(pods) == {"pod-a", "pod-a2"} and {p["identified_by"] for p in pods.values()} == {"hostname"}
    assert all(p["pids"] and p["host_veth"] for p in pods.values())


def test_diagnose_on_a_node_ends_where_the_packet_leaves_it(lab):
    a, b = pod_ip(lab, "pod-a"), pod_ip(lab, "pod-b")
    r = on_node(lab, "node-a", "diagnose", a, b, "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(r.stdout)
    assert d["outcome"] == "unobserved"
    req = [h for h in d["path"] if h["direction"] == "request"]
    assert req[-1]["point"] == "leave" and req[-1]["device"] == "eth0"
    # the answer is modelled coming back over VXLAN from the other node, and walked here to pod-a
    rep = [h for h in d["path"] if h["direction"] == "reply"]
    assert rep[0]["point"] == "arrive" and rep[-1]["point"] == "deliver"
    assert not [f for f in d["findings"] if f["severity"] == "error"]
    # on node-b, the same flow is modelled arriving from node-a; its FORWARD drop is found there,
    # and the fix runs on the node as it is: no `ip netns exec <node>` prefix
    lab.inject("forward-drop")
    try:
        r = on_node(lab, "node-b", "diagnose", a, b, "-o", "json")
    finally:
        lab.clear("forward-drop")
    f = next(f for f in json.loads(r.stdout)["findings"] if f["cause"] == "iptables")
    assert f["fix"].startswith("iptables ") and "-D FORWARD" in f["fix"], f["fix"]


def test_trace_on_a_node_delivered_and_lost_left_node(lab):
    a, b = pod_ip(lab, "pod-a"), pod_ip(lab, "pod-b")
    r = on_node(lab, "node-a", "trace", a, b, "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    t = json.loads(r.stdout)
    assert t["verdict"]["status"] == "delivered"
    assert {h["location"] for h in t["hops"]} <= {"host", "pod-a"}, "only node-a's namespaces are observed"
    lab.inject("forward-drop")  # dropped on node-b, which this node cannot see
    try:
        r = on_node(lab, "node-a", "trace", a, b, "-o", "json")
    finally:
        lab.clear("forward-drop")
    assert r.returncode == 1
    v = json.loads(r.stdout)["verdict"]
    node = socket.gethostname()  # without the API, the node is named as the machine is
    assert (v["status"], v["node"], v["location"], v["device"]) == ("lost", node, f"left {node}", "eth0")
    assert "not observed" in v["message"]


def test_unreachable_api_falls_back_to_node_discovery(lab, tmp_path):
    """A kubeconfig whose server refuses (192.168.56.1 is the lab's switch, nothing listens on 6443):
    one warning naming the URL, then the node's own names."""
    cfg = tmp_path / "kubeconfig"
    cfg.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://192.168.56.1:6443', "
                   "insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, "
                   "context: {cluster: c, user: u}}]\ncurrent-context: x\n")
    a, b = pod_ip(lab, "pod-a"), pod_ip(lab, "pod-a2")
    r = on_node(lab, "node-a", "diagnose", a, b, "--kubeconfig", str(cfg), "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "https://192.168.56.1:6443" in r.stderr and "from this node alone" in r.stderr
    assert "Traceback" not in r.stderr
    assert json.loads(r.stdout)["outcome"] == "delivered"


def test_missing_kubeconfig_is_one_line(lab):
    r = on_node(lab, "node-a", "diagnose", "--kubeconfig", "/nonexistent/kubeconfig")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "kubeconfig" in r.stderr


@pytest.fixture
def intruder(lab):
    """A namespace the lab did not build, attached to node-b's cni0, holding pod-b's IP."""
    ns = f"{lab.name}-intruder"
    ip = pod_ip(lab, "pod-b")
    veth = f"vx{lab.name[-4:]}"
    cmds = [["ip", "netns", "add", ns],
            ["ip", "-n", lab.netns("node-b"), "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
            ["ip", "-n", lab.netns("node-b"), "link", "set", veth, "master", "cni0", "up"],
            ["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"],
            ["ip", "-n", ns, "link", "set", "eth0", "up"]]
    try:
        for c in cmds:
            subprocess.run(c, check=True, capture_output=True)
        yield ns, veth
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_unknown_namespace_with_a_pods_ip_is_an_ip_conflict(lab, intruder):
    ns, veth = intruder
    from podpath.tracer.diagnose import diagnose
    from podpath.tracer.lab.source import lab_snapshot

    # the lab, as a node agent sees it: every namespace attached to a node, known or not
    d = diagnose(lab_snapshot(lab.name))
    f = next(f for f in d.findings if f.cause == "ip_conflict" and ns in f.object)
    assert f.node == "node-b" and f.severity == "error" and veth in f.object
    assert pod_ip(lab, "pod-b") in f.object
    # and on node-b itself
    r = on_node(lab, "node-b", "diagnose", "-o", "json")
    found = [f for f in json.loads(r.stdout)["findings"] if f["cause"] == "ip_conflict" and ns in f["object"]]
    assert found and veth in found[0]["object"], r.stdout


def test_discovery_told_the_likely_namespaces_still_finds_an_unknown_one(lab, intruder):
    """Asked first for the lab's own pods (and done once every pod veth's namespace is found),
    discovery still reaches a namespace nobody expected, and answers exactly as without the hint."""
    from podpath.tracer.netns import inode
    from podpath.tracer.sources.discovery import discover

    ns, veth = intruder
    likely = {inode(p.netns) for p in lab.inventory().pods}
    def seen(found): return [(n.inode, n.name, n.host_veth, n.path) for n in found]
    hinted = discover(lab.netns("node-b"), likely=likely)
    assert seen(hinted) == seen(discover(lab.netns("node-b")))
    assert (ns, veth) in {(n.name, n.host_veth) for n in hinted}
    assert {n.name for n in discover(lab.netns("node-a"), likely=likely)} == \
        {p.netns for p in lab.inventory().pods if p.node == "node-a"}


# ---------------------------------------------------------------- with the (stand-in) Kubernetes API


def k(lab) -> list[str]:
    return ["--kubeconfig", str(lab.kubeconfig)]


def test_api_names_the_node_and_its_pods(lab):
    r = on_node(lab, "node-a", "snapshot", *k(lab))
    assert r.returncode == 0, r.stderr
    hosts = {h["name"]: h for h in json.loads(r.stdout)["hosts"]}
    assert set(hosts) == {"node-a", "pod-a", "pod-a2"}
    assert {(h["namespace"], h["identified_by"]) for n, h in hosts.items() if n != "node-a"} == {("default", "api")}
    assert "warning" not in r.stderr


def test_diagnose_trace_and_dns_by_cluster_names(lab):
    r = on_node(lab, "node-a", "diagnose", "default/pod-a", "default/pod-b", *k(lab), "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(r.stdout)
    assert d["outcome"] == "unobserved" and d["flow"]["dst"] == pod_ip(lab, "pod-b")
    r = on_node(lab, "node-a", "trace", "default/pod-a", "default/pod-a2", *k(lab), "-o", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["verdict"]["status"] == "delivered", r.stdout + r.stderr
    r = on_node(lab, "node-b", "dns", "default/pod-b", "web", *k(lab), "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout)
    assert res["status"] == "answered" and res["server_name"] == "svc/kube-system/kube-dns"
    assert res["resolv"]["search"][0] == "default.svc.cluster.local", "the pod's own resolv.conf, from its holder"


def test_stale_vtep_mac_named_at_the_node_holding_it(lab):
    """node-b's flannel.1 came back with a new MAC (its annotation says so); node-a's neighbour and
    FDB entry agree with each other on the old one. Only the annotation can tell node-a."""
    lab.inject("vtep-mac-stale")
    try:
        r = on_node(lab, "node-a", "diagnose", *k(lab), "-o", "json")
        # node-a alone, as this test is about (the lab's agents would show node-b too)
        t = on_node(lab, "node-a", "trace", "default/pod-a", "default/pod-b", "--no-agents", *k(lab), "-o", "json")
        clean_b = on_node(lab, "node-b", "diagnose", *k(lab), "-o", "json")
    finally:
        lab.clear("vtep-mac-stale")
    assert r.returncode == 1, r.stdout + r.stderr
    f = next(f for f in json.loads(r.stdout)["findings"] if f["cause"] == "arp")
    assert (f["node"], f["location"], f["device"], f["severity"]) == ("node-a", "host", "flannel.1", "error")
    new_mac = next(n.vtep_mac for n in lab.inventory().nodes if n.name == "node-b")  # cleared: the old one again
    assert "flannel.alpha.coreos.com/backend-data" in f["message"] and "FDB entry agrees" in f["message"]
    assert {e["kind"] for e in f["evidence"]} == {"neigh", "fdb"} and new_mac in f["object"]
    assert "neigh replace 10.244.1.0 lladdr" in f["fix"] and "ip netns exec" not in f["fix"]
    v = json.loads(t.stdout)["verdict"]
    assert (v["status"], v["cause"], v["location"]) == ("lost", "arp", "left node-a"), v
    assert not [f for f in json.loads(clean_b.stdout)["findings"] if f["cause"] == "arp"], "node-b holds nothing stale"


def test_missing_rbac_is_one_line_naming_verb_resource_and_rule(lab):
    r = on_node(lab, "node-a", "diagnose", "default/pod-a", "default/pod-a2", "--kubeconfig",
                str(lab.kubeconfig_limited), "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line for line in r.stderr.splitlines() if "403" in line]
    assert any("list on endpointslices" in line and 'apiGroups: [discovery.k8s.io]' in line and "verbs: [list]" in line
               for line in lines), r.stderr
    assert any("configmaps" in line for line in lines), r.stderr
    assert json.loads(r.stdout)["outcome"] == "delivered"


def test_rejected_credentials_are_one_line(lab, tmp_path):
    text = lab.kubeconfig.read_text()
    import re
    bad = tmp_path / "kubeconfig"
    bad.write_text(re.sub(r"token: \S+", "token: not-a-token", text))
    r = on_node(lab, "node-a", "diagnose", "--kubeconfig", str(bad))
    assert r.returncode == 7 and r.stderr.count("\n") == 1, r.stderr
    assert "401" in r.stderr and "list nodes" in r.stderr
