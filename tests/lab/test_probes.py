"""Real BPF against real namespaces (root): tc via tcx links, tp_btf drop events, kill -9 cleanup.

Two throwaway namespaces ppbpf-<hex>-a / -b joined by one veth (TEST-NET-1 addresses, nothing in
the root namespace), deleted in the finalizer even when a test fails. After every test no podpath
program the test loaded may be left (conftest.wait_no_programs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loads BPF programs and builds namespaces"),
    pytest.mark.skipif(not shutil.which("bpftool"), reason="needs bpftool to check for leftovers"),
]

sys.path.insert(0, os.path.dirname(__file__))
from conftest import PAIR_A_IP, PAIR_B_IP, held_by, require_bpf_objects, run_cmd as sh, veth_pair, wait_no_programs  # noqa: E402

from podpath.tracer.netns import inode  # noqa: E402
from podpath.tracer.probes import NF_BRACKETS, TRACEPOINTS, Filter, Probes  # noqa: E402

PODPATH = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "podpath"

A_IP, B_IP = PAIR_A_IP, PAIR_B_IP
ICMP_ID, OTHER_ID = 0x5151, 0x6262


def netns_inode(name: str) -> int:
    ino = inode(name)
    assert ino is not None, f"namespace {name} is gone"
    return ino


@pytest.fixture
def pair():
    """(ns_a, ns_b): va 192.0.2.1/24 in a <-> vb 192.0.2.2/24 in b."""
    require_bpf_objects()
    with veth_pair("ppbpf") as (a, b):
        yield a, b
    left = wait_no_programs()
    assert not left, f"podpath BPF programs still loaded after the test: {left}"


def ping(ns: str, dst: str, ident: int, count: int = 3) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", str(count), "-i", "0.05", "-W", "1",
              "-e", str(ident), dst, check=False)


def collect(p: Probes, settle_ms: int = 200) -> list:
    p.poll(settle_ms)
    return p.events


def test_tcx_sees_exactly_the_filtered_flow(pair):
    a, b = pair
    flt = Filter(saddr=A_IP, daddr=B_IP, proto="icmp", icmp_id=ICMP_ID)
    with Probes(flt) as p:
        p.attach_tc(a, "va")
        p.attach_tc(b, "vb")
        p.attach_tracepoints()  # consume_skb/kfree_skb untrack freed skbs
        links = [l.what for l in p.links]
        assert sum(w.startswith("tcx/") for w in links) == 4, links
        assert ping(a, B_IP, ICMP_ID).returncode == 0, "ping must succeed with the probes attached"
        assert ping(a, B_IP, OTHER_ID).returncode == 0
        events = collect(p)
        assert p.lost() == 0
        timings = dict(p.timings)
    print(f"\nprobe timings: {timings}; {len(events)} events")

    tc = [e for e in events if e.kind == "tc"]
    egress_a = [e for e in tc if e.point == "egress" and e.netns == netns_inode(a)]
    ingress_b = [e for e in tc if e.point == "ingress" and e.netns == netns_inode(b)]
    assert [e.icmp_seq for e in egress_a] == [1, 2, 3]
    assert [e.icmp_seq for e in ingress_b] == [1, 2, 3]
    for e in egress_a + ingress_b:
        assert (e.saddr, e.daddr, e.proto, e.icmp_id, e.icmp_type) == (A_IP, B_IP, "icmp", ICMP_ID, 8)
        assert "matched" in e.flags and not e.inner
    # the same skb crosses the veth: B's ingress sees the skb A's egress tracked
    assert [e.skb for e in egress_a] == [e.skb for e in ingress_b]
    assert all("tracked" in e.flags for e in ingress_b)
    assert not [e for e in events if e.icmp_id == OTHER_ID], "another flow's packets were reported"
    assert len(tc) == 6, [(e.point, e.netns, e.icmp_seq, e.saddr) for e in tc]


def test_bidir_reports_the_reply(pair):
    a, b = pair
    with Probes(Filter(saddr=A_IP, daddr=B_IP, proto="icmp", icmp_id=ICMP_ID, bidir=True)) as p:
        p.attach_tc(a, "va")
        p.attach_tracepoints()
        assert ping(a, B_IP, ICMP_ID, count=2).returncode == 0
        events = [e for e in collect(p) if e.kind == "tc"]
    replies = [e for e in events if e.point == "ingress"]
    assert [(e.saddr, e.daddr, e.icmp_type, e.icmp_seq) for e in replies] == [(B_IP, A_IP, 0, 1), (B_IP, A_IP, 0, 2)]
    assert all("reply" in e.flags for e in replies)


def test_kfree_skb_netfilter_drop(pair):
    a, b = pair
    sh("ip", "netns", "exec", b, "iptables", "-A", "INPUT", "-p", "icmp", "-s", A_IP, "-j", "DROP")
    with Probes(Filter(saddr=A_IP, daddr=B_IP, proto="icmp", icmp_id=ICMP_ID)) as p:
        p.attach_tc(a, "va")
        p.attach_tracepoints()
        assert ping(a, B_IP, ICMP_ID, count=2).returncode != 0, "the DROP rule should drop the echo"
        events = collect(p)
    drops = [e for e in events if e.kind == "kfree_skb"]
    assert len(drops) == 2, [(e.kind, e.point, e.drop_reason) for e in events]
    for d in drops:
        assert d.drop_reason == "NETFILTER_DROP"
        # where netfilter frees it: nf_hook_slow, or (6.x, NF_DROP_REASON) the table walker itself
        assert d.location_sym and d.location_sym.split("+")[0] in (
            "nf_hook_slow", "nft_do_chain", "ipt_do_table"), d.location_sym
        assert d.netns == netns_inode(b)
        assert (d.saddr, d.daddr, d.icmp_id) == (A_IP, B_IP, ICMP_ID)
        assert "tracked" in d.flags  # attributed through A's tc egress
    print(f"\ndrop events: {[(d.drop_reason, d.location_sym) for d in drops]}")


def test_netfilter_links_see_the_hooks(pair):
    a, b = pair
    with Probes(Filter(saddr=A_IP, daddr=B_IP, proto="icmp", icmp_id=ICMP_ID), netfilter=True) as p:
        p.attach_netfilter(b, hooks=("prerouting", "input"))
        p.attach_netfilter(a, hooks=("output", "postrouting"), match=True)  # where the ping is created
        assert ping(a, B_IP, ICMP_ID, count=1).returncode == 0
        nf = [e for e in collect(p) if e.kind == "netfilter"]
    hooks = ["output", "postrouting", "prerouting", "input"]
    # every bracket of every hook, in priority order: bracket 0 in a matched, the rest followed the skb
    assert [(e.point, e.extra["bracket"]) for e in nf] == [(h, i) for h in hooks for i in range(len(NF_BRACKETS))]
    assert [e.nf_prio for e in nf[:len(NF_BRACKETS)]] == list(NF_BRACKETS)
    assert all("tracked" in e.flags for e in nf[1:])


def own_link_ids() -> set[int]:
    """The BPF links this process holds, from its fds' fdinfo."""
    ids = set()
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            text = Path(f"/proc/self/fdinfo/{fd}").read_text()
        except OSError:
            continue
        ids |= {int(line.split()[1]) for line in text.splitlines() if line.startswith("link_id:")}
    return ids


def bpftool_links() -> list[dict]:
    """Every BPF link on the machine, as bpftool lists them. bpftool fails when a link another
    process closes vanishes while it lists (parallel test workers): asked again."""
    for _ in range(10):
        p = subprocess.run(["bpftool", "link", "show", "-j"], capture_output=True, text=True)
        if p.returncode == 0:
            return json.loads(p.stdout or "[]")
        time.sleep(0.05)
    raise RuntimeError(f"bpftool link show -j failed ({p.returncode}): {p.stderr.strip()}")


def test_close_detaches_every_kind_of_link_side_by_side(pair):
    """Probes.close detaches its links concurrently (probes.close_links): none of this process's
    tcx, tracepoint or netfilter links is left, and the flow passes after."""
    a, b = pair
    p = Probes(Filter(saddr=A_IP, daddr=B_IP, proto="icmp", icmp_id=ICMP_ID), netfilter=True)
    try:
        p.attach_tc(a, "va")
        p.attach_tc(b, "vb")
        p.attach_tracepoints()
        p.attach_netfilter(b, hooks=("prerouting", "input"))
        mine = own_link_ids()
        assert len(p.links) == 4 + len(TRACEPOINTS) + 2 * len(NF_BRACKETS) == len(mine)
        assert mine <= {l["id"] for l in bpftool_links()}
    finally:
        p.close()
    assert p.links == [] and own_link_ids() == set()
    assert not mine & {l["id"] for l in bpftool_links()}
    assert ping(a, B_IP, ICMP_ID, count=1).returncode == 0


def test_netfilter_bracket_priority_held_by_another_trace_moves(pair):
    """Two traces in one namespace: BPF links may not share a priority, so the second one shifts."""
    a, _ = pair
    flt = Filter(saddr=A_IP, daddr=B_IP, proto="icmp", icmp_id=ICMP_ID)
    with Probes(flt, netfilter=True, tracepoints=False) as p1, Probes(flt, netfilter=True, tracepoints=False) as p2:
        p1.attach_netfilter(a, hooks=("output",))
        p2.attach_netfilter(a, hooks=("output",))
        ino = netns_inode(a)
        first, second = p1.nf_priorities[(ino, 3)], p2.nf_priorities[(ino, 3)]
    assert first == list(NF_BRACKETS)
    assert all(x != y and abs(x - y) < 16 for x, y in zip(first, second)), second


KILLED_LOADER = r"""
import sys, time
from podpath.tracer.probes import Filter, Probes
a, b = sys.argv[1], sys.argv[2]
p = Probes(Filter(proto="icmp", icmp_id=0x5151), netfilter=True)
p.attach_tc(a, "va"); p.attach_tc(b, "vb"); p.attach_tracepoints(); p.attach_netfilter(b)
print("ready", len(p.links), flush=True)
time.sleep(60)
"""


def test_sigkill_leaves_nothing_behind(pair):
    a, b = pair
    proc = subprocess.Popen([sys.executable, "-c", KILLED_LOADER, a, b], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready"), proc.stderr.read() if proc.poll() is not None else line
        assert int(line.split()[1]) == 4 + len(TRACEPOINTS) + 5 * len(NF_BRACKETS)
        held = held_by(proc.pid)
        assert {n for _, n in held} >= {"pp_tc_ingress", "pp_tc_egress", "pp_kfree_skb", "pp_nf_0", "pp_nf_7"}
        ours = {i for i, _ in held}
        before = bpftool_links()
        assert [l for l in before if l.get("prog_id") in ours], "the loader's links should be visible"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert wait_no_programs() == [], "the kernel should release fd-owned links and programs"
    links = bpftool_links()
    # any link type (bpftool 7.1 prints tcx as 11): none may still point at the dead loader's programs
    assert not [l for l in links if l.get("prog_id") in ours]
    assert ping(a, B_IP, ICMP_ID, count=1).returncode == 0


def test_vxlan_inner_packet_is_recognised(pair):
    """flannel-style VXLAN (UDP 8472) over the veth: the underlay probe sees the inner flow."""
    a, b = pair
    inner = {a: "198.51.100.1", b: "198.51.100.2"}
    for ns, local, remote in ((a, A_IP, B_IP), (b, B_IP, A_IP)):
        sh("ip", "-n", ns, "link", "add", "vx0", "type", "vxlan", "id", "1", "dstport", "8472",
           "local", local, "remote", remote, "dev", "va" if ns == a else "vb")
        sh("ip", "-n", ns, "addr", "add", f"{inner[ns]}/24", "dev", "vx0")
        sh("ip", "-n", ns, "link", "set", "vx0", "up")
    with Probes(Filter(saddr=inner[a], daddr=inner[b], proto="icmp", icmp_id=ICMP_ID)) as p:
        p.attach_tc(a, "va")   # the underlay: only encapsulated packets cross it
        p.attach_tc(a, "vx0")  # the VXLAN device: the plain inner packet
        p.attach_tracepoints()
        assert ping(a, inner[b], ICMP_ID, count=2).returncode == 0
        tc = [e for e in collect(p) if e.kind == "tc" and e.point == "egress"]
    under = [e for e in tc if e.inner]
    plain = [e for e in tc if not e.inner]
    assert [e.icmp_seq for e in under] == [1, 2] and [e.icmp_seq for e in plain] == [1, 2]
    for e in under:
        assert (e.saddr, e.daddr, e.outer_saddr, e.outer_daddr) == (inner[a], inner[b], A_IP, B_IP)


def test_clsact_fallback_and_sweep(pair):
    """The legacy path works too, and leaves no filter behind on close (or after a sweep)."""
    from podpath.tracer.probes import sweep_clsact

    a, b = pair
    with Probes(Filter(saddr=A_IP, daddr=B_IP, proto="icmp", icmp_id=ICMP_ID)) as p:
        p.attach_tc(a, "va", mode="clsact")
        p.attach_tracepoints()
        assert "pp_tc_egress" in sh("ip", "netns", "exec", a, "tc", "filter", "show", "dev", "va", "egress").stdout
        assert ping(a, B_IP, ICMP_ID, count=2).returncode == 0
        tc = [e for e in collect(p) if e.kind == "tc"]
    assert [e.icmp_seq for e in tc if e.point == "egress"] == [1, 2]
    for d in ("ingress", "egress"):
        assert "pp_tc" not in sh("ip", "netns", "exec", a, "tc", "filter", "show", "dev", "va", d).stdout
    # a filter a killed process left behind is removed by the sweep
    p = Probes(Filter(proto="icmp"), tracepoints=False)
    p.attach_tc(b, "vb", mode="clsact")
    p.links.clear()  # forget it, as a killed process would
    p.close()
    assert "pp_tc" in sh("ip", "netns", "exec", b, "tc", "filter", "show", "dev", "vb", "ingress").stdout
    assert sweep_clsact(b, ["vb"]) == 2
    assert "pp_tc" not in sh("ip", "netns", "exec", b, "tc", "filter", "show", "dev", "vb", "ingress").stdout


@pytest.mark.serial  # asserts it is the only podpath running; `podpath cleanup` sweeps every lab
def test_leftover_clsact_filter_swept_at_start_and_by_cleanup(pair):
    """A killed clsact run's filter: the next podpath alone on the node sweeps it before attaching
    on that device; `podpath cleanup` removes it from every namespace."""
    a, b = pair

    def leave_filter(ns, dev):
        p = Probes(Filter(proto="icmp"), tracepoints=False)
        p.attach_tc(ns, dev, mode="clsact")
        p.links.clear()  # forget it, as a killed process would
        p.close()
        assert "pp_tc" in sh("ip", "netns", "exec", ns, "tc", "filter", "show", "dev", dev, "ingress").stdout

    leave_filter(a, "va")
    with Probes(Filter(saddr=A_IP, daddr=B_IP, proto="icmp", icmp_id=ICMP_ID)) as p:
        assert p._lock.alone
        p.attach_tc(a, "va", mode="clsact")  # would fail with EEXIST on the leftover
        assert ping(a, B_IP, ICMP_ID, count=1).returncode == 0
        assert [e.icmp_seq for e in collect(p) if e.kind == "tc" and e.point == "egress"] == [1]
    assert "pp_tc" not in sh("ip", "netns", "exec", a, "tc", "filter", "show", "dev", "va", "egress").stdout

    leave_filter(b, "vb")
    sh("ip", "netns", "exec", b, "nft", "add", "table", "ip", "podpath_nftrace_dead")  # a killed --nftrace run's
    out = subprocess.run([str(PODPATH), "cleanup", "-o", "json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"{b}/vb" in json.loads(out.stdout)["filters_removed"]
    assert f"{b}/podpath_nftrace_dead" in json.loads(out.stdout)["tables_removed"]
    assert "podpath" not in sh("ip", "netns", "exec", b, "nft", "list", "tables").stdout
    assert "pp_tc" not in sh("ip", "netns", "exec", b, "tc", "filter", "show", "dev", "vb", "ingress").stdout


def test_a_second_podpath_does_not_sweep_a_running_ones_filter(pair):
    """Two podpath processes: the second one is not alone, so it leaves the first one's filter."""
    a, _ = pair
    with Probes(Filter(proto="icmp"), tracepoints=False) as first:
        first.attach_tc(a, "va", mode="clsact")
        with Probes(Filter(proto="udp"), tracepoints=False) as second:
            assert not second._lock.alone
        assert "pp_tc" in sh("ip", "netns", "exec", a, "tc", "filter", "show", "dev", "va", "ingress").stdout
