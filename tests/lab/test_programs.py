"""Foreign programs on the path, for real (root only): a BPF program podpath did not load drops ICMP
to pod-b, and podpath must see it, blame it, and give the command that removes it.

The program is tests/bpf/drop_icmp.bpf.o (built by `make -C tests/bpf`, which scripts/setup.sh
runs): a stand-in for another CNI's leftover or a security agent. It is attached the ways such
tools attach: with `tc` as a clsact direct-action filter on node-b's cni0 egress (nobody holds
it), as a tcx link held by a running process, as generic XDP on pod-b's eth0, and
(nf_drop_icmp.bpf.o) as a BPF netfilter link in node-b's forward hook. One lab per
module, named fp<4 hex>, torn down even when tests fail; each test removes what it attached in a
finally block, and checks that no podpath program is left loaded.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT_BPF_LAB, bpf_lab, wait_no_programs

pytestmark = ROOT_BPF_LAB

ROOT = Path(__file__).resolve().parents[2]
PODPATH = str(ROOT / ".venv" / "bin" / "podpath")
DROP_ICMP = str(ROOT / "tests" / "bpf" / "drop_icmp.bpf.o")
NF_DROP_ICMP = str(ROOT / "tests" / "bpf" / "nf_drop_icmp.bpf.o")


@pytest.fixture(scope="module")
def lab(request):
    for obj in (DROP_ICMP, NF_DROP_ICMP):
        if not os.path.exists(obj):
            pytest.fail(f"{obj} not built: run `make -C tests/bpf` (scripts/setup.sh does)")
    return bpf_lab(request, "fp")


@pytest.fixture
def clean(lab):
    yield lab
    assert wait_no_programs() == [], "podpath BPF programs still loaded after the test"


def podpath(*args) -> subprocess.CompletedProcess:
    return subprocess.run([PODPATH, *args], capture_output=True, text=True, timeout=90)


def sh(lab, short: str, cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", lab.netns(short), "sh", "-c", cmd], check=check,
                          capture_output=True, text=True)


def snapshot_programs(lab, host: str) -> list[dict]:
    p = podpath("snapshot", "--lab", lab.name)
    assert p.returncode == 0, p.stderr
    hosts = {h["name"]: h for h in json.loads(p.stdout)["hosts"]}
    assert "programs" not in hosts[host]["gaps"], hosts[host]["gaps"]
    for h in hosts.values():  # podpath's own programs are never foreign
        assert all(a["ours"] for a in h["programs"] if (a["name"] or "").startswith("pp_")), h["programs"]
    return hosts[host]["programs"]


def tc_warning(lab, node: str, location: str, name: str) -> dict:
    p = podpath("diagnose", "pod-a", "pod-b", "--lab", lab.name, "-o", "json")
    found = [f for f in json.loads(p.stdout)["findings"] if f["cause"] == "tc"]
    assert [(f["severity"], f["node"], f["location"]) for f in found] == [("warning", node, location)], found
    assert name in found[0]["object"] and name in found[0]["message"]
    return found[0]


def trace(lab) -> dict:
    p = podpath("trace", "pod-a", "pod-b", "--lab", lab.name, "-o", "json")
    assert p.stdout, p.stderr
    t = json.loads(p.stdout)
    assert (p.returncode == 0) == (t["verdict"]["status"] == "delivered")
    return t["verdict"]


def assert_blamed(v: dict, node: str, location: str, device: str, reason: str, prog: dict) -> None:
    assert (v["status"], v["cause"], v["node"], v["location"], v["device"]) == \
        ("dropped", "tc", node, location, device), v
    assert v["drop_reason"] == reason, v
    ev = [e for e in v["evidence"] if e["kind"] == "program"]
    assert ev and f"prog {prog['id']} drop_icmp tag {prog['tag']}" in ev[0]["object"], v["evidence"]
    assert "pp_" not in " ".join(e["object"] for e in v["evidence"])


def test_clsact_filter_on_cni0_egress_is_listed_warned_blamed_and_its_fix_restores_delivery(clean):
    lab = clean
    sh(lab, "node-b", "tc qdisc add dev cni0 clsact", check=False)  # may exist: podpath's legacy path
    sh(lab, "node-b", f"tc filter add dev cni0 egress bpf da obj {DROP_ICMP} sec tc")
    try:
        (prog,) = [a for a in snapshot_programs(lab, "node-b") if not a["ours"]]
        assert (prog["device"], prog["hook"], prog["kind"], prog["name"], prog["filter"]) == \
            ("cni0", "tc_egress", "clsact", "drop_icmp", "bpf"), prog
        assert isinstance(prog["id"], int) and re.fullmatch(r"[0-9a-f]{16}", prog["tag"]), prog
        assert prog["detail"] == "direct-action" and prog["owners"] == []  # tc loaded it and exited
        bpftool = json.loads(subprocess.run(["bpftool", "-j", "prog", "show", "id", str(prog["id"])],
                                            capture_output=True, text=True, check=True).stdout)
        assert (bpftool["name"], bpftool["tag"]) == ("drop_icmp", prog["tag"])  # the kernel agrees

        f = tc_warning(lab, "node-b", "host", "drop_icmp")
        assert f["device"] == "cni0"

        v = trace(lab)
        assert_blamed(v, "node-b", "host", "cni0", "TC_EGRESS", prog)
        want = f"ip netns exec {lab.netns('node-b')} tc filter del dev cni0 egress pref {prog['priority']} " \
               f"handle {prog['handle']} bpf"
        assert v["fix"] == want == f["fix"]
        subprocess.run(v["fix"], shell=True, check=True)  # verbatim, as a user pastes it
        assert trace(lab)["status"] == "delivered"
        assert [a for a in snapshot_programs(lab, "node-b") if not a["ours"]] == []
    finally:
        sh(lab, "node-b", "tc filter del dev cni0 egress pref 49152", check=False)


def test_tcx_link_held_by_a_process_names_the_holder_and_detaching_it_restores_delivery(clean):
    lab = clean
    # The holder is a child process (podpath never counts its own fds as holders).
    holder = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", HOLD_TCX, lab.netns("node-b"), DROP_ICMP],
        stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "attached"
        (prog,) = [a for a in snapshot_programs(lab, "node-b") if not a["ours"]]
        assert (prog["device"], prog["hook"], prog["kind"], prog["name"]) == ("cni0", "tcx_egress", "tcx",
                                                                              "drop_icmp"), prog
        assert prog["owners"] == [f"{holder.pid}/python"] and prog["link_id"], prog
        tc_warning(lab, "node-b", "host", "drop_icmp")

        v = trace(lab)
        assert_blamed(v, "node-b", "host", "cni0", "TC_EGRESS", prog)
        assert v["fix"].startswith(f"bpftool link detach id {prog['link_id']}  # held by {holder.pid}/python")
        subprocess.run(v["fix"], shell=True, check=True)
        assert trace(lab)["status"] == "delivered"
    finally:
        holder.stdin.close()  # the holder closes its link and exits
        holder.wait(timeout=10)


# A process holding a tcx link on cni0 egress in the namespace argv[1], until stdin closes.
HOLD_TCX = """
import sys
from podpath.tracer.probes import libbpf
from podpath.tracer.netns import run_in
netns, path = sys.argv[1], sys.argv[2]
obj = libbpf.BpfObject(path, autoload=["drop_icmp"])
idx = libbpf.ifindex_in(netns, "cni0")
link = run_in(netns, lambda: libbpf.attach_tcx(obj.program_fd("drop_icmp"), idx, "egress"))
print("attached", flush=True)
sys.stdin.read()
link.close()
obj.close()
"""


def test_generic_xdp_on_pod_b_eth0_is_listed_and_warned_with_the_command_that_removes_it(clean):
    lab = clean
    sh(lab, "pod-b", f"ip link set dev eth0 xdpgeneric obj {DROP_ICMP} sec xdp")
    try:
        (prog,) = [a for a in snapshot_programs(lab, "pod-b") if not a["ours"]]
        assert (prog["device"], prog["hook"], prog["name"], prog["detail"]) == \
            ("eth0", "xdp", "xdp_drop_icmp", "mode xdpgeneric"), prog
        f = tc_warning(lab, "node-b", "pod-b", "xdp_drop_icmp")
        assert f["fix"] == f"ip -n {lab.netns('pod-b')} link set dev eth0 xdpgeneric off"
        v = trace(lab)
        assert v["status"] != "delivered" and v["cause"] == "tc" and v["location"] == "pod-b", v
        subprocess.run(f["fix"], shell=True, check=True)
        assert trace(lab)["status"] == "delivered"
    finally:
        sh(lab, "pod-b", "ip link set dev eth0 xdpgeneric off", check=False)


def test_netfilter_link_is_placed_by_its_holder_warned_and_blamed_for_its_drop(clean):
    """The kernel does not say which namespace a BPF netfilter link hooks: podpath places it by the
    namespace of the process holding it (here one started inside node-b's namespace). Its program
    drops ICMP in node-b's forward hook, where no iptables or nftables chain sits."""
    lab = clean
    holder = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns("node-b"), str(ROOT / ".venv" / "bin" / "python"), "-c", HOLD_NF,
         NF_DROP_ICMP], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "attached"
        (prog,) = [a for a in snapshot_programs(lab, "node-b") if not a["ours"]]
        assert (prog["hook"], prog["kind"], prog["name"], prog["priority"], prog["device"]) == \
            ("netfilter", "nf-link", "nf_drop_icmp", -123, None), prog
        assert prog["detail"].startswith("ip forward; netns of holder") and prog["owners"] == [f"{holder.pid}/python"]
        assert [a for a in snapshot_programs(lab, "node-a") if not a["ours"]] == []  # not node-a's
        f = tc_warning(lab, "node-b", "host", "nf_drop_icmp")
        assert f["fix"].startswith(f"bpftool link detach id {prog['link_id']}  # held by {holder.pid}/python")

        v = trace(lab)
        assert (v["status"], v["cause"], v["node"], v["hook"], v["drop_reason"]) == \
            ("dropped", "tc", "node-b", "forward", "NETFILTER_DROP"), v
        assert f"BPF netfilter link {prog['link_id']} (nf_drop_icmp, priority -123)" in v["table"], v
        assert any(e["kind"] == "program" and "nf_drop_icmp" in e["object"] for e in v["evidence"]), v
        subprocess.run(v["fix"], shell=True, check=True)
        assert trace(lab)["status"] == "delivered"
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)


# A process holding a BPF netfilter link (ip forward, priority -123) in its own namespace.
HOLD_NF = """
import sys
from podpath.tracer.probes import libbpf
obj = libbpf.BpfObject(sys.argv[1], prog_types={"nf_drop_icmp": (libbpf.BPF_PROG_TYPE_NETFILTER, libbpf.BPF_NETFILTER)})
link = libbpf.attach_netfilter(obj.program_fd("nf_drop_icmp"), "forward", -123)
print("attached", flush=True)
sys.stdin.read()
link.close()
obj.close()
"""


def test_without_the_capability_to_list_bpf_objects_the_snapshot_says_so_as_a_gap():
    """Run as root with CAP_SYS_ADMIN, CAP_BPF and CAP_PERFMON dropped (setpriv), in this namespace
    (entering another needs CAP_SYS_ADMIN): the programs collector records why it saw nothing."""
    code = ("from pyroute2 import IPRoute\n"
            "from podpath.tracer.bundle import Host\n"
            "from podpath.tracer.snapshot.collectors import CollectCtx, run_collectors\n"
            "h = Host(name='here')\n"
            "with IPRoute() as ipr:\n"
            "    run_collectors(CollectCtx(host=h, ipr=ipr), {'programs'})\n"
            "print(h.gaps.get('programs', ''))\n")
    caps = "-sys_admin,-bpf,-perfmon"
    p = subprocess.run(["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}",
                        str(ROOT / ".venv" / "bin" / "python"), "-c", code],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert p.returncode == 0, p.stderr
    assert "cannot list BPF links: Operation not permitted; run podpath as root" in p.stdout, p.stdout
