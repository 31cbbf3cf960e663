"""`podpath lab fault inject NAME --here` run inside a netns-lab node, as on a kind or Vagrant node.

podpath is started in the node's namespace (`ip netns exec`, the same way scripts/kind-fault.sh
enters a kind node with nsenter): it knows nothing of the lab, discovers the node's flannel state
and pods itself, renders the catalog's plan from that, and enters pods with `nsenter -t PID -n`.
Each fault that `--here` supports must break its flow, and `clear --here` must leave exactly what
`lab up` built (no drift). Faults that need the API or a runtime must be refused in one line.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import fresh_lab, podpath_on_node  # noqa: E402

from podpath.tracer.lab.faults import FAULTS, IPVS_FAULTS  # noqa: E402
from podpath.tracer.lab.plans import lab_facts  # noqa: E402

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces, veths and VXLAN"),
]

HERE = sorted(n for n, f in FAULTS.items() if f.here is None)
REFUSED = sorted(n for n, f in FAULTS.items() if f.here is not None)
# Pods on the other node: a real node cannot see them, so the operator names their address.
PARAMS = {"dns-reply-dropped": ["--param", "coredns=10.244.1.3"], "rp-filter-strict": ["--param", "pod-a=10.244.0.2"]}


@pytest.fixture(scope="module")
def lab(request):
    return fresh_lab(request, "fh")


def test_facts_discovered_on_a_node_are_the_topologys(lab):
    """What a real node's discovery reads equals what the lab's topology says it built."""
    from podpath.tracer.lab.here import node_facts
    from podpath.tracer.netns import run_in

    for name in ("node-a", "node-b"):
        want = lab_facts(name)
        got = run_in(lab.netns(name), node_facts)
        local = {k: v for k, v in want.pods.items() if v.local}
        assert {k: (v.ip, v.mac, v.host_veth) for k, v in got.pods.items()} == \
            {k: (v.ip, v.mac, v.host_veth) for k, v in local.items()}
        assert all(p.pid for p in got.pods.values())
        for field in ("pod_cidr", "gateway", "subnet_base", "vtep_mac", "underlay_dev", "underlay_ip",
                      "underlay_mtu", "cluster_cidr", "vxlan_port", "peers", "sysctls"):
            assert getattr(got, field) == getattr(want, field), field


@pytest.mark.parametrize("name", HERE)
def test_inject_here_breaks_the_flow_and_clear_here_restores_the_lab(lab, name):
    f = FAULTS[name]
    assert lab.probe(f.flow).ok, "the flow must work before the fault"
    r = podpath_on_node(lab, f.role, "lab", "fault", "inject", name, "--here", *PARAMS.get(name, []))
    try:
        assert r.returncode == 0, r.stderr
        assert f"injected {name}" in r.stdout
        assert not lab.probe(f.flow).ok, f"{name} injected with --here must break {f.flow.text()}"
        assert lab.drift(), "the break must show as drift from what `lab up` builds"
        again = podpath_on_node(lab, f.role, "lab", "fault", "inject", name, "--here")
        assert again.returncode == 0 and "already injected" in again.stderr
    finally:
        c = podpath_on_node(lab, f.role, "lab", "fault", "clear", name, "--here")
    assert c.returncode == 0, c.stderr
    assert lab.drift() == [], f"clear --here must restore exactly what up built ({name})"
    assert lab.probe(f.flow).ok


@pytest.mark.parametrize("name", REFUSED)
def test_faults_that_need_the_api_or_a_runtime_are_refused_in_one_line(lab, name):
    r = podpath_on_node(lab, FAULTS[name].role, "lab", "fault", "inject", name, "--here")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and f"{name} cannot be injected with --here" in r.stderr
    assert lab.drift() == []


def test_a_node_without_the_pod_a_fault_needs_is_refused_naming_its_pods(lab):
    """pod-eth0-down acts on pod-b; node-a does not host it: the error lists node-a's pods."""
    r = podpath_on_node(lab, "node-a", "lab", "fault", "inject", "pod-eth0-down", "--here")
    assert r.returncode == 5 and "no pod 'pod-b' on this node" in r.stderr
    assert "pod-a, pod-a2" in r.stderr and "Traceback" not in r.stderr
    assert lab.drift() == []


def test_a_node_without_flannel_is_refused(lab):
    r = podpath_on_node(lab, "cp", "lab", "fault", "inject", "forward-drop", "--here")
    assert r.returncode == 5 and "not a flannel VXLAN node" in r.stderr


def test_dry_run_prints_the_commands_and_changes_nothing(lab):
    r = podpath_on_node(lab, "node-a", "lab", "fault", "inject", "pod-route-missing", "--here", "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "nsenter -t <pod-a> -n ip route del default via 10.244.0.1 dev eth0"
    assert "# clear:" in lines and "nsenter -t <pod-a> -n ip route replace 10.244.0.0/16 via 10.244.0.1 dev eth0" in lines
    assert lab.drift() == []


@pytest.mark.parametrize("name", sorted(IPVS_FAULTS))
def test_ipvs_faults_refuse_a_node_without_ipvs(lab, name):
    """The netns lab runs kube-proxy in iptables mode: no virtual service to break, said in one line."""
    r = podpath_on_node(lab, "node-a", "lab", "fault", "inject", name, "--here")
    assert r.returncode == 5 and r.stderr.count("\n") == 1
    assert "no IPVS virtual service TCP 10.96.0.100:80" in r.stderr and "IPVS mode" in r.stderr
    assert lab.drift() == []


def test_an_inject_that_fails_midway_undoes_what_it_did_and_keeps_no_state(lab):
    """pod-route-missing deletes two routes; with the second already gone, the first deletion is
    undone, no undo file is left (so a later inject works), and the error says so in one line."""
    from podpath.tracer.lab import nsutil

    nsutil.run(lab.netns("pod-a"), ["ip", "route", "del", "10.244.0.0/16", "via", "10.244.0.1", "dev", "eth0"])
    try:
        r = podpath_on_node(lab, "node-a", "lab", "fault", "inject", "pod-route-missing", "--here")
        assert r.returncode == 5 and r.stderr.count("\n") == 1, r.stderr
        assert "injecting pod-route-missing failed" in r.stderr and "undone" in r.stderr
        assert lab.drift() == [], "the default route it had deleted is back, and the missing one too"
        again = podpath_on_node(lab, "node-a", "lab", "fault", "inject", "pod-route-missing", "--here")
        assert again.returncode == 0 and "already injected" not in again.stderr, again.stderr
    finally:
        podpath_on_node(lab, "node-a", "lab", "fault", "clear", "pod-route-missing", "--here")
        lab.up()
    assert lab.drift() == []
