"""`podpath trace` robustness against the real netns lab with real BPF (root only).

- `kill -9` of a trace in progress leaves no BPF program, tcx/netfilter link or clsact qdisc behind;
- two traces at once do not see each other's packets;
- with probes attached, lab traffic is delivered exactly as without.

One lab per module, named k<4 hex>, torn down in its finalizer even when tests fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT_BPF_LAB, bpf_lab, held_by, this_tests_programs, wait_no_programs

if os.geteuid() != 0:
    print("test_trace_robustness: skipped, needs root (builds network namespaces and loads BPF programs)",
          file=sys.stderr)

pytestmark = ROOT_BPF_LAB

from podpath.tracer.trace import trace  # noqa: E402
from podpath.tracer.lab.source import LabSource  # noqa: E402

PODPATH = str(Path(sys.executable).parent / "podpath")
POD_NAMES = ("pod-a", "pod-a2", "pod-b", "coredns")
TCP_SERVERS = (("pod-a2", 8080), ("pod-b", 8080), ("coredns", 53))


@pytest.fixture(scope="module")
def lab(request):
    return bpf_lab(request, "k")


def no_programs_left(timeout: float = 2.0) -> list:
    return wait_no_programs(timeout)


@pytest.fixture(autouse=True)
def clean(lab):
    yield
    lab.clear_all()
    assert no_programs_left(3.0) == [], "podpath BPF programs still loaded after the test"


def sh(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True)


def lab_devices(lab) -> dict[str, list[str]]:
    """netns → device names, for every lab namespace."""
    out = {}
    for h in lab.hosts():
        links = json.loads(sh("ip", "-n", h.netns, "-j", "link", "show").stdout or "[]")
        out[h.netns] = [l["ifname"] for l in links]
    return out


def clsact_qdiscs(lab) -> set[tuple[str, str]]:
    """(netns, device) pairs that carry a clsact qdisc, over every lab device."""
    found = set()
    for ns, devs in lab_devices(lab).items():
        for dev in devs:
            if "clsact" in sh("tc", "-n", ns, "qdisc", "show", "dev", dev).stdout:
                found.add((ns, dev))
    return found


TCX_LINK = ("tcx", 11)  # bpftool < 7.3 prints BPF_LINK_TYPE_TCX as its number


def bpf_links() -> list[dict]:
    return json.loads(sh("bpftool", "-j", "link", "show").stdout or "[]")


def pod_ips(lab) -> dict[str, str]:
    return {p.name: p.ip for p in lab.inventory().pods}


# --------------------------------------------------------------------------------------- kill -9

def test_sigkill_of_a_trace_in_progress_leaves_nothing_behind(lab):
    if not sh("which", "bpftool").stdout.strip():
        pytest.skip("needs bpftool to list BPF links")
    qdiscs_before = clsact_qdiscs(lab)
    lab.inject("fdb-wrong-dst")  # the request vanishes into a wrong VTEP: the trace waits for the timeout
    proc = subprocess.Popen([PODPATH, "trace", "pod-a", "pod-b", "--lab", lab.name, "--timeout", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr_lines: list[str] = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    ours: list[tuple[int, str]] = []
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and proc.poll() is None:
            if any("waiting up to" in l for l in stderr_lines):  # probes attached, packet sent
                ours = held_by(proc.pid)
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the trace ended before it could be killed: {''.join(stderr_lines)}"
        assert ours, f"probes never showed as attached: {''.join(stderr_lines)}"
        names = {n for _, n in ours}
        assert {"pp_tc_ingress", "pp_tc_egress", "pp_kfree_skb", "pp_fib", "pp_nf_0", "pp_nf_7"} <= names, names
        our_ids = {i for i, _ in ours}
        live = [l for l in bpf_links() if l.get("prog_id") in our_ids]
        assert any(l.get("type") in TCX_LINK for l in live), f"expected tcx links while tracing: {live}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        lab.clear("fdb-wrong-dst")
    left = no_programs_left(2.0)
    assert left == [], f"podpath programs still loaded after kill -9: {left}"
    leaked = [l for l in bpf_links() if l.get("prog_id") in our_ids]
    assert leaked == [], f"BPF links of the killed trace still exist: {leaked}"
    live_ids = this_tests_programs()  # the lab's idle agents' (loaded, never attached), if any
    assert not [l for l in bpf_links() if l.get("type") in TCX_LINK and l.get("prog_id") in live_ids]
    assert clsact_qdiscs(lab) == qdiscs_before, "a clsact qdisc was left on a lab device"
    # and the lab is healthy again afterwards: a fresh trace works
    assert trace("pod-a", "pod-b", source=LabSource(lab.name)).verdict.status == "delivered"


# --------------------------------------------------------------------------- concurrent traces

def run_two(lab, src1: str, src2: str, count: int = 3):
    """Two trace() calls to pod-b in threads, released together; both results (their runs must overlap)."""
    barrier = threading.Barrier(2)

    def run(src):
        barrier.wait()
        t0 = time.monotonic()
        t = trace(src, "pod-b", source=LabSource(lab.name), count=count, timeout=2.0)
        return t, (t0, time.monotonic())

    with ThreadPoolExecutor(max_workers=2) as ex:
        f1, f2 = ex.submit(run, src1), ex.submit(run, src2)
        (t1, i1), (t2, i2) = f1.result(timeout=30), f2.result(timeout=30)
    assert max(i1[0], i2[0]) < min(i1[1], i2[1]), "the two traces did not overlap in time"
    return t1, t2


def only_own_packets(t, count: int) -> None:
    """Every (device, point, direction, probe) saw each of this trace's `count` packets exactly once."""
    assert t.verdict.status == "delivered", (t.verdict, t.hops)
    assert t.inject.get("seqs") == list(range(1, count + 1)), t.inject
    per_place: dict[tuple, list] = {}
    # packet hops only: route lookups and neighbour events carry no skb, so no ICMP id to tell traces apart
    for h in (h for h in t.hops if h.probe not in ("fib", "neigh")):
        per_place.setdefault((h.host, h.device, h.point, h.direction, h.probe, h.inner), []).append(h.seq)
    wrong = {k: v for k, v in per_place.items() if sorted(v) != list(range(1, count + 1))}
    assert wrong == {}, f"hops seen other than once per packet (another trace's packets?): {wrong}"


def test_two_traces_at_once_do_not_see_each_others_packets(lab):
    pods = {p.name: p for p in lab.inventory().pods}
    ta, ta2 = run_two(lab, "pod-a", "pod-a2")
    assert ta.inject["icmp_id"] != ta2.inject["icmp_id"]
    for t, own, other in ((ta, "pod-a", "pod-a2"), (ta2, "pod-a2", "pod-a")):
        only_own_packets(t, 3)
        assert t.flow.get("src") == pods[own].ip, t.flow
        hosts = {h.host for h in t.hops}
        devices = {h.device for h in t.hops}
        assert own in hosts, (own, hosts)
        assert other not in hosts, f"{own}'s trace has hops in {other}'s namespace: " \
                                   f"{[(h.host, h.device, h.point, h.direction) for h in t.hops if h.host == other]}"
        assert pods[other].host_veth not in devices, f"{own}'s trace saw {other}'s veth {pods[other].host_veth}"
        assert pods[own].host_veth in devices


def test_two_traces_of_the_same_flow_at_once_stay_apart(lab):
    """Same source, destination and probed devices twice over: only the ICMP id tells them apart."""
    solo = trace("pod-a", "pod-b", source=LabSource(lab.name), count=3, timeout=2.0)
    only_own_packets(solo, 3)
    t1, t2 = run_two(lab, "pod-a", "pod-a")
    assert t1.inject["icmp_id"] != t2.inject["icmp_id"]
    for t in (t1, t2):
        only_own_packets(t, 3)
        packet_hops = [h for h in t.hops if h.probe not in ("fib", "neigh")]
        assert len(packet_hops) == len([h for h in solo.hops if h.probe not in ("fib", "neigh")])


# ------------------------------------------------------------------- traffic with probes attached

def reachability(lab) -> dict[tuple, bool]:
    ips = pod_ips(lab)
    res = {}
    for src in POD_NAMES:
        ns = lab.netns(src)
        for dst in POD_NAMES:
            if dst == src:
                continue
            p = sh("ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", "3", "-i", "0.05", "-W", "1", ips[dst])
            res[("icmp", src, dst)] = p.returncode == 0
        for dst, port in TCP_SERVERS:
            if dst == src:
                continue
            p = sh("ip", "netns", "exec", ns, "timeout", "3", "bash", "-c",
                   f"exec 3<>/dev/tcp/{ips[dst]}/{port}")
            res[("tcp", src, f"{dst}:{port}")] = p.returncode == 0
    return res


def test_traffic_is_delivered_exactly_as_without_probes(lab):
    from podpath.tracer.diagnose import diagnose
    from podpath.tracer.probes import Filter, Probes
    from podpath.tracer.lab.source import lab_snapshot
    from podpath.tracer.trace import plan

    without = reachability(lab)
    assert all(without.values()), f"the healthy lab should connect every pair: {without}"
    bundle = lab_snapshot(lab.name)
    devices: list[tuple[str, str]] = []
    for src in POD_NAMES:
        for dst in POD_NAMES:
            if src != dst:
                req, _, _ = plan(bundle, diagnose(bundle, src, dst))
                devices += [d for d in req.attach if d not in devices]
    ips = pod_ips(lab)
    # a trace's filter (pod-a → pod-b ICMP, bidir) on every device any pod pair crosses, the netfilter
    # brackets in every namespace, plus the tracepoints
    with Probes(Filter(saddr=ips["pod-a"], daddr=ips["pod-b"], proto="icmp", icmp_id=0x4B4B, bidir=True,
                       neigh_addrs=tuple(ips.values())), netfilter=True) as p:
        for ns, dev in devices:
            p.attach_tc(ns, dev)
        namespaces = list(dict.fromkeys(ns for ns, _ in devices))
        for ns in namespaces:
            p.attach_netfilter(ns)
        p.attach_tracepoints()
        assert sum(l.what.startswith("tcx/") for l in p.links) == 2 * len(devices)
        assert sum(l.what.startswith("netfilter/") for l in p.links) == 5 * 8 * len(namespaces)
        with_probes = reachability(lab)
        # and the trace's own flow passes too, while its events are read
        ping = sh("ip", "netns", "exec", lab.netns("pod-a"), "ping", "-n", "-q", "-c", "3", "-i", "0.05",
                  "-W", "1", "-e", str(0x4B4B), ips["pod-b"])
        p.poll(100)
        assert ping.returncode == 0
        assert any(e.kind == "tc" for e in p.events), "the probes should have seen the matching flow"
    changed = {k: (without[k], with_probes[k]) for k in without if without[k] != with_probes.get(k)}
    assert changed == {}, f"delivery differs with probes attached: {changed}"


# ------------------------------------------------------------------ SIGTERM and SIGKILL, --nftrace

def nftrace_tables(lab) -> list[str]:
    from podpath.tracer.probes.nftables import podpath_tables
    return [f"{ns}/{t}" for ns in lab.names.all_netns for _, t in podpath_tables(ns)]


def monitors_in(lab) -> list[int]:
    """`nft monitor trace` processes inside the lab's namespaces."""
    inodes = {os.stat(f"/run/netns/{ns}").st_ino for ns in lab.names.all_netns}
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            if b"monitor" in cmd and any(c.endswith(b"nft") for c in cmd) and \
                    os.stat(f"/proc/{pid}/ns/net").st_ino in inodes:
                out.append(int(pid))
        except OSError:
            continue
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("nftrace", [False, True], ids=["plain", "nftrace"])
def test_a_killed_trace_leaves_no_table_filter_program_or_process(lab, sig, nftrace):
    """SIGTERM runs the normal cleanup (exit 143). SIGKILL cannot: the kernel drops every fd-owned
    attachment, the `nft monitor` children die with podpath (PDEATHSIG), and the --nftrace tables,
    named after their owner's pid, show as drift in `lab status` until the next trace sweeps them."""
    lab.inject("fdb-wrong-dst")  # the packet vanishes: the trace waits for its timeout
    argv = [PODPATH, "trace", "pod-a", "pod-b", "--lab", lab.name, "--timeout", "6"] + (["--nftrace"] if nftrace else [])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("waiting up to" in l for l in lines):
            time.sleep(0.02)
        assert proc.poll() is None and held_by(proc.pid), "".join(lines)
        if nftrace:
            assert nftrace_tables(lab) and monitors_in(lab), "the --nftrace tables and monitors were not there"
        proc.send_signal(sig)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        lab.clear("fdb-wrong-dst")
    assert proc.returncode == (143 if sig == signal.SIGTERM else -signal.SIGKILL), "".join(lines)
    assert no_programs_left(3.0) == []
    deadline = time.monotonic() + 2
    while monitors_in(lab) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert monitors_in(lab) == [], "an `nft monitor trace` outlived podpath"
    left = nftrace_tables(lab)
    if sig == signal.SIGTERM:
        assert left == [], f"SIGTERM left --nftrace tables: {left}"
    elif nftrace:
        assert left, "SIGKILL cannot delete tables; they should still be there"
        drift = lab.drift()
        assert any("--nftrace table" in d and "is dead" in d for d in drift), drift
        # the next trace through those namespaces sweeps the dead run's tables
        assert trace("pod-a", "pod-b", source=LabSource(lab.name)).verdict.status == "delivered"
        assert nftrace_tables(lab) == []


def test_a_pod_to_itself_is_delivered(lab):
    """Loopback inside the pod: no veth, no tc hop, and the socket's own answer says delivered."""
    for proto, port in (("icmp", None), ("tcp", 8080)):
        src = "pod-a" if proto == "icmp" else "pod-a2"
        t = trace(src, src, source=LabSource(lab.name), proto=proto, port=port)
        assert t.verdict.status == "delivered", (proto, t.verdict)
