"""Each intermittent fault of tracer/lab/intermittent.py, caught by `podpath watch` + `podpath report`
in the netns lab: background traffic (tracer/lab/traffic.py) runs, the fault comes and goes three
times, and the report must name its node, its drop reason and its cause, with bursts that cover
>= 80 % of each injected window; the watch's exact count must equal the kernel counter that only
that fault moves (the window's ground truth). Real BPF, real links, neighbours, conntrack, packets.
One lab for the module: every fault leaves it as it found it."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT_BPF_LAB, bpf_lab

pytestmark = ROOT_BPF_LAB

EXE = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "podpath")


@pytest.fixture(scope="module")
def lab(request):
    return bpf_lab(request, "fi")


def _watch(lab, out, *, seconds: int) -> subprocess.Popen:
    """`podpath watch` on the lab, once it says it records (the caller waits for it and reads stderr)."""
    w = subprocess.Popen([EXE, "watch", "--lab", lab.name, "--duration", str(seconds), "-o", str(out)],
                         stderr=subprocess.PIPE, text=True)
    line = w.stderr.readline()
    if "recording drops" not in line:
        w.kill()
        pytest.fail(line + w.stderr.read())
    return w


def _run(lab, tmp_path, name: str, *, rate: float, period: float = 6, duty: float = 0.5):
    from podpath.tracer.lab.intermittent import INTERMITTENT, run_intermittent
    from podpath.tracer.lab.traffic import Traffic

    f = INTERMITTENT[name]
    out = tmp_path / "watch"
    # long enough for the fault's setup (conntrack-full fills a table first) and three cycles
    w = _watch(lab, out, seconds=60)
    try:
        with Traffic(lab, rate=rate, flows=(f.flow,)) as traffic:
            time.sleep(2)  # a quiet baseline
            windows = run_intermittent(lab, name, period=period, duty=duty, cycles=3)
            time.sleep(1.5)
    finally:
        w.terminate()  # SIGTERM: a clean stop, files closed
        _, err = w.communicate(timeout=60)
    assert w.returncode == 128 + 15 and "written to" in err, err  # stopped by SIGTERM, after writing
    assert traffic.sent[f.flow] > rate * 10
    r = subprocess.run([EXE, "report", str(out), "-o", "json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return f, out, windows, json.loads(r.stdout)


def _check_bursts(f, windows, rep) -> list[dict]:
    bursts = [b for b in rep["bursts"] if b["node"] == f.node and b["reason"] == f.reason]
    assert len(bursts) == len(windows), (windows, rep["bursts"])
    for w in windows:
        best = max(min(w.end, dt.datetime.fromisoformat(b["end"]).timestamp())
                   - max(w.start, dt.datetime.fromisoformat(b["start"]).timestamp()) for b in bursts)
        assert best >= 0.8 * (w.end - w.start), (w, bursts)
    for b in bursts:
        assert f.cause in b["cause"], b
        assert b["evidence"], b
    return bursts


def _table(out):
    from podpath.tracer.watch.store import read_table
    return read_table([out], "drops").to_pandas()


def _seen(out) -> str:
    """What the watch counted, for a failure's message."""
    return _table(out).groupby(["node_name", "drop_reason_desc", "interface", "location_symbol"],
                               dropna=False).packets.sum().to_string()


def _exact(out, node: str, reason: str, **match) -> int:
    d = _table(out)
    d = d[(d.node_name == node) & (d.drop_reason_desc == reason)]
    for k, v in match.items():
        d = d[d[k] == v]
    return int(d.packets.sum())


def test_vtep_neighbour_flap(lab, tmp_path):
    from podpath.tracer.lab.topology import node
    f, out, windows, rep = _run(lab, tmp_path, "vtep-neigh-flap", rate=200)
    truth = sum(w.packets for w in windows)
    assert truth > 300
    assert _exact(out, "node-a", "NO_TX_TARGET", interface="flannel.1") == truth, _seen(out)  # = flannel.1's tx_dropped
    for b in _check_bursts(f, windows, rep):
        assert b["device"] == "flannel.1" and b["cause"] == "VTEP neighbour changed on flannel.1", b
        assert any(node("node-b").subnet_base in e and "dev flannel.1" in e for e in b["evidence"]), b
        # the first drop is stamped by the kernel, the change when the notification is read (a few
        # ms late on a busy machine): within 100 ms either way
        assert b["lag_ms"] is not None and abs(b["lag_ms"]) <= 100, b


def test_mtu_black_hole_for_large_packets_only(lab, tmp_path):
    f, out, windows, rep = _run(lab, tmp_path, "mtu-blackhole", rate=200)
    truth = sum(w.packets for w in windows)
    assert truth > 300
    assert _exact(out, "node-b", "PKT_TOO_BIG") == truth, _seen(out)  # = node-b's Ip FragFails
    for b in _check_bursts(f, windows, rep):
        assert b["cause"] == "MTU lowered on cni0 (1450 -> 1400)", b
        assert b["flows"][0]["dst"] == "10.244.1.2" and b["flows"][0]["proto"] == "UDP", b
    # the frag-needed errors node-b sends back die in its OUTPUT chain: the sender never learns
    assert _exact(out, "node-b", "NETFILTER_DROP", l4_protocol="ICMP") > 0


def test_conntrack_table_full(lab, tmp_path):
    from podpath.tracer.lab.topology import DNS_SERVICE_IP
    f, out, windows, rep = _run(lab, tmp_path, "conntrack-full", rate=50)
    truth = sum(w.packets for w in windows)
    assert truth > 100
    # = node-a's conntrack `drop` statistic: every packet that needed a new entry while the table was
    # full, mostly new DNS flows (dropped before DNAT), also replies and VXLAN packets whose entry
    # early_drop had evicted
    assert _exact(out, "node-a", "NETFILTER_DROP") == truth, _seen(out)
    assert _exact(out, "node-a", "NETFILTER_DROP", ip_destination=DNS_SERVICE_IP) > truth / 2, _seen(out)
    for b in _check_bursts(f, windows, rep):
        assert b["flows"][0]["dst"] == DNS_SERVICE_IP and b["flows"][0]["dport"] == 53, b
        assert b["cause"].startswith("conntrack table full"), b
        assert any("conntrack count reached its max" in e for e in b["evidence"]), b


def test_conntrack_insert_race_is_real(lab, tmp_path):
    """glibc's parallel A + AAAA from one socket (two threads on two CPUs, lab flow `dns-parallel`)
    really race to insert one conntrack entry in node-a: the watch's counters see it. Since 5.6 the
    kernel resolves a UDP clash (`clashres`) instead of dropping the loser (`insert_failed`, `drop`);
    either way every packet conntrack dropped is in the watch's exact count."""
    from podpath.tracer.lab.traffic import Traffic
    from podpath.tracer.watch.store import read_table

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("the race needs two CPUs sending at once")
    out = tmp_path / "watch"
    w = _watch(lab, out, seconds=8)
    try:
        with Traffic(lab, rate=500, flows=("dns-parallel",)) as traffic:
            time.sleep(5)
    finally:
        _, err = w.communicate(timeout=60)
    assert w.returncode == 0, err
    assert traffic.sent["dns-parallel"] > 2000
    c = read_table([out], "counters").to_pandas()
    ct = c[(c.node_name == "node-a") & (c.group == "conntrack")].groupby("name").value
    rose = (ct.max() - ct.min()).to_dict()
    assert rose["clashres"] + rose["insert_failed"] > 0, rose  # the race happened
    assert _exact(out, "node-a", "NETFILTER_DROP") == rose["drop"], (rose, _seen(out))
    r = subprocess.run([EXE, "report", str(out), "-o", "json"], capture_output=True, text=True, timeout=60)
    seen = json.loads(r.stdout)["totals"]["conntrack"]["node-a"]
    assert seen.get("clashres", 0) + seen.get("insert_failed", 0) == rose["clashres"] + rose["insert_failed"], seen
