"""`podpath diagnose` against the real netns lab (root only).

For every fault in the catalog: inject → snapshot → diagnose names the right cause at the right
node and location → clear → diagnose is clean again. Breaks the catalog does not name are made by
hand with ip/iptables/nft inside lab namespaces, as a user would. One lab per module, named
d<4 hex>, torn down in its finalizer even when tests fail; traffic never leaves the lab.
"""

from __future__ import annotations

import json
import os
import subprocess
from itertools import permutations
from pathlib import Path

import pytest
from conftest import nobody_can_run_the_checkout

from podpath.tracer.diagnose import diagnose
from podpath.tracer.lab import FAULTS
from podpath.tracer.lab.source import lab_snapshot

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces and reads them"),
]

PODS = ["pod-a", "pod-a2", "pod-b", "coredns"]
PODPATH = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "podpath")


@pytest.fixture(scope="module")
def lab(request):
    from conftest import fresh_lab

    return fresh_lab(request, "d")


@pytest.fixture
def clean_lab(lab):
    """The lab as `up` builds it, before and after the test (up repairs anything a test broke)."""
    lab.up()
    yield lab
    lab.clear_all()
    lab.up()


def flow_kwargs(flow) -> dict:
    return {"proto": flow.proto if flow.proto != "icmp" else None, "port": flow.port, "size": flow.size,
            "sport": flow.sport}


def errors(result):
    return [(f.cause, f.node, f.location) for f in result.errors]


def run(*args, user: str | None = None) -> subprocess.CompletedProcess:
    cmd = [PODPATH, *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_healthy_lab_has_no_error_for_any_pod_pair_or_service(clean_lab):
    bundle = lab_snapshot(clean_lab.name)
    for src, dst in permutations(PODS, 2):
        result = diagnose(bundle, src, dst)
        assert result.paths[0].outcome == "delivered", (src, dst, result.paths[0].hops[-1])
        assert errors(result) == [], (src, dst)
    for src in PODS:
        web = diagnose(bundle, src, "svc/default/web:80")
        assert {p.alternative for p in web.paths} == {"10.244.0.3:8080", "10.244.1.2:8080"}
        assert all(p.outcome == "delivered" for p in web.paths) and errors(web) == [], src
        for proto in ("udp", "tcp"):
            dns = diagnose(bundle, src, "svc/kube-system/kube-dns:53", proto=proto)
            assert dns.paths[0].outcome == "delivered" and errors(dns) == [], (src, proto)
    assert diagnose(bundle).findings == [], "node-wide checks find nothing on a healthy lab"


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_is_diagnosed_then_clean_after_clear(clean_lab, name):
    fault = FAULTS[name]
    clean_lab.inject(name)
    result = diagnose(lab_snapshot(clean_lab.name), fault.flow.src, fault.flow.dst, **flow_kwargs(fault.flow))
    assert result.paths[0].outcome != "delivered"
    assert (fault.cause, fault.node, fault.location) in errors(result), \
        f"{name}: want {fault.cause} at {fault.node}/{fault.location}, got {errors(result)}"
    blamed = next(f for f in result.errors if f.cause == fault.cause)
    assert blamed.object and blamed.fix and blamed.message
    clean_lab.clear(name)
    again = diagnose(lab_snapshot(clean_lab.name), fault.flow.src, fault.flow.dst, **flow_kwargs(fault.flow))
    assert again.paths[0].outcome == "delivered" and errors(again) == []


def sh(lab, short: str, cmd: str) -> None:
    subprocess.run(["ip", "netns", "exec", lab.netns(short), "sh", "-c", cmd], check=True, capture_output=True)


def test_hand_made_native_nftables_drop_is_named_with_its_rule(clean_lab):
    """Not in the catalog: a native nftables table (not iptables) in node-a's forward hook."""
    sh(clean_lab, "node-a", "nft add table inet ppfw && nft add chain inet ppfw podfwd "
       "'{ type filter hook forward priority -5; }' && nft add rule inet ppfw podfwd ip daddr 10.244.1.2 drop")
    try:
        result = diagnose(lab_snapshot(clean_lab.name), "pod-a", "pod-b")
        f = next(f for f in result.errors if f.cause == "iptables")
        assert f.node == "node-a" and "10.244.1.2" in f.object and f"ip netns exec {clean_lab.netns('node-a')} nft delete rule inet ppfw podfwd" in f.fix
    finally:
        sh(clean_lab, "node-a", "nft delete table inet ppfw")


def test_hand_made_blackhole_route_is_a_host_route_problem(clean_lab):
    sh(clean_lab, "node-a", "ip route add blackhole 10.244.1.2/32")
    result = diagnose(lab_snapshot(clean_lab.name), "pod-a", "pod-b")
    assert ("host_route", "node-a", "host") in errors(result)
    assert result.paths[0].outcome == "dropped"


def test_hand_made_reject_inside_the_destination_pod(clean_lab):
    sh(clean_lab, "pod-b", "iptables -A INPUT -p tcp --dport 8080 -j REJECT")
    result = diagnose(lab_snapshot(clean_lab.name), "pod-a", "pod-b", proto="tcp", port=8080)
    assert result.paths[0].outcome == "rejected"
    assert ("iptables", "node-b", "pod-b") in errors(result)


def test_hand_made_deleted_vtep_neighbour_is_an_arp_problem(clean_lab):
    sh(clean_lab, "node-b", "ip neigh del 10.244.0.0 dev flannel.1")
    result = diagnose(lab_snapshot(clean_lab.name), "pod-a", "pod-b")
    f = next(f for f in result.errors if f.cause == "arp")
    assert (f.node, f.location, f.device) == ("node-b", "host", "flannel.1")
    assert "neigh replace 10.244.0.0 lladdr" in f.fix  # the reply direction needs node-a's VTEP MAC


def test_hand_made_pod_mtu_larger_than_flannel(clean_lab):
    sh(clean_lab, "pod-a", "ip link set eth0 mtu 1500")
    result = diagnose(lab_snapshot(clean_lab.name), "pod-a", "pod-b", size=1480)
    assert any(c == "mtu" for c, _, _ in errors(result))


def test_cli_json_contract_and_exit_codes(clean_lab, tmp_path):
    ok = run("diagnose", "pod-a", "pod-b", "--lab", clean_lab.name, "-o", "json")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["findings"] == [] and data["path"] and data["outcome"] == "delivered"
    clean_lab.inject("ip-forward-off")
    bad = run("diagnose", "pod-a", "pod-b", "--lab", clean_lab.name, "-o", "json")
    assert bad.returncode == 1
    finding = json.loads(bad.stdout)["findings"][0]
    assert set(finding) >= {"cause", "severity", "node", "location", "object", "message", "fix"}
    assert finding["cause"] == "ip_forward"
    # snapshot to a file, then the same answer offline
    saved = tmp_path / "b.json"
    assert run("snapshot", "--lab", clean_lab.name, "-o", str(saved)).returncode == 0
    offline = run("diagnose", "pod-a", "pod-b", "--bundle", str(saved), "-o", "json")
    assert json.loads(offline.stdout)["findings"] == json.loads(bad.stdout)["findings"]


@pytest.mark.parametrize("args,code,needle", [
    (["diagnose", "pod-a", "nosuchpod"], 2, "unknown target 'nosuchpod'"),
    (["diagnose", "pod-a", "pod-b", "--proto", "tcp"], 2, "--port"),
    (["diagnose", "pod-a", "pod-b", "--lab", "nolab"], 6, "lab 'nolab' is not up"),
])
def test_cli_bad_input_is_one_line_without_traceback(lab, args, code, needle):
    if "--lab" not in args:
        args = [*args, "--lab", lab.name]
    r = run(*args)
    assert r.returncode == code, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_bad_files_are_one_line_errors(tmp_path):
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    r = run("diagnose", "--bundle", str(garbage))
    assert r.returncode == 3 and "not JSON" in r.stderr and "Traceback" not in r.stderr
    r = run("diagnose", "--bundle", str(tmp_path / "missing.json"))
    assert r.returncode == 3 and "does not exist" in r.stderr
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not command output at all\n")
    r = run("snapshot", "import", str(text))
    assert r.returncode == 3 and "no command output recognised" in r.stderr and "Traceback" not in r.stderr


def test_cli_without_root_says_so(lab, tmp_path):
    nobody_can_run_the_checkout()
    r = run("diagnose", "pod-a", "pod-b", "--lab", lab.name, user="65534")
    assert r.returncode == 4, r.stderr
    assert "needs root" in r.stderr and "Traceback" not in r.stderr


def test_pasted_output_diagnoses_node_wide_problems(tmp_path):
    """A ticket's pasted `arp -a` (squashed by chat) with an incomplete entry and one IP at two MACs."""
    paste = ("? (10.244.0.5) at <incomplete> on cni0 ? (10.244.0.6) at 0a:58:0a:f4:00:06 [ether] on cni0 "
             "? (10.244.0.6) at 0a:58:0a:f4:00:99 [ether] on cni0 "
             "? (192.168.56.1) at 52:54:00:12:35:02 [ether] on eth0")
    f = tmp_path / "node1.txt"
    f.write_text(paste)
    bundle = tmp_path / "node1.json"
    assert run("snapshot", "import", str(f), "-o", str(bundle)).returncode == 0
    r = run("diagnose", "--bundle", str(bundle), "-o", "json")
    findings = json.loads(r.stdout)["findings"]
    causes = {(x["cause"], x["severity"]) for x in findings}
    assert ("ip_conflict", "error") in causes and ("arp", "warning") in causes
    assert r.returncode == 1


def test_hand_made_missing_vxlan_device_is_named(clean_lab):
    """flannel.1 deleted on node-a: its routes vanish and pod traffic leaks to the underlay."""
    sh(clean_lab, "node-a", "ip link del flannel.1")
    try:
        result = diagnose(lab_snapshot(clean_lab.name), "pod-a", "pod-b")
        f = next(f for f in result.errors if f.cause == "link_down")
        assert (f.node, f.location, f.device) == ("node-a", "host", "flannel.1")
        assert result.paths[0].outcome != "delivered"
    finally:
        clean_lab.down()  # up cannot re-create a deleted VXLAN device in place of flanneld
        clean_lab.up()


def test_hand_made_vni_mismatch_is_named(clean_lab):
    sh(clean_lab, "node-b", "m=$(cat /sys/class/net/flannel.1/address); ip link del flannel.1; "
       "ip link add flannel.1 address $m type vxlan id 2 dstport 8472 local 192.168.56.12 dev eth0 nolearning; "
       "ip addr add 10.244.1.0/32 dev flannel.1; ip link set flannel.1 mtu 1450 up; "
       "ip route add 10.244.0.0/24 via 10.244.0.0 dev flannel.1 onlink")
    try:
        result = diagnose(lab_snapshot(clean_lab.name), "pod-a", "pod-b")
        f = next(f for f in result.errors if f.cause == "link_down")
        assert (f.node, f.location) == ("node-b", "host") and "VNI 2" in f.message
        assert result.paths[0].outcome == "dropped"
    finally:
        clean_lab.down()
        clean_lab.up()
