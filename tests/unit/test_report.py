"""`podpath report` over generated watch files (what a recorder writes, made without a kernel): the
bursts, their causes from rules and counters, the JSON contract, and bad input as one line.
The lab test (tests/lab/test_watch_report.py) runs the same report over a real recording."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from podpath.tracer.report import analyse, render_html, render_text
from podpath.tracer.watch.store import Segments

T0 = pd.Timestamp("2026-01-01T10:00:00Z")
EXE = [str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "podpath")]


def _drops(t, node, reason, n, dst="10.244.1.3", dport=53):
    return {"time": [t.value], "interval_s": [1.0], "node_name": [node], "pod_name": [None], "namespace": [None],
            "netns": [1], "ifindex": [3], "interface": ["cni0"], "drop_reason_desc": [reason], "location": [1],
            "location_symbol": ["nf_hook_slow+0x9c"], "ethertype": [2048], "l4_protocol": ["UDP"],
            "ip_source": ["10.244.0.2"], "ip_destination": [dst], "source_port": [40000],
            "destination_port": [dport], "packets": [n], "bytes": [n * 70]}


def _counter(t, node, group, name, value, obj=""):
    return {"time": [t.value], "node_name": [node], "group": [group], "name": [name], "object": [obj], "value": [value]}


def _change(t, node, kind, action, obj):
    return {"time": [t.value], "node_name": [node], "kind": [kind], "action": [action], "object": [obj], "detail": [""]}


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """Two nodes for 120 s: node-a gets a DROP rule 3 times (2 s each, every 30 s); node-b's
    conntrack insert_failed jumps once with a burst of INSERT-race drops; a trickle everywhere."""
    segs = {(n, t): Segments(tmp_path / n, t, max_bytes=1 << 30, max_seconds=1e9)
            for n in ("node-a", "node-b") for t in ("drops", "counters", "changes")}
    rule = "insert rule ip filter FORWARD ip daddr 10.244.1.3 udp dport 53 counter packets 0 bytes 0 drop"
    failed = 0
    for s in range(1, 121):
        t = T0 + pd.Timedelta(seconds=s)
        for node in ("node-a", "node-b"):
            segs[(node, "drops")].append(_drops(t, node, "NO_SOCKET", 3, "10.244.0.9", 9))
        if s in (20, 50, 80):
            segs[("node-a", "changes")].append(_change(t + pd.Timedelta(milliseconds=200), "node-a", "rule", "add", rule))
        if any(a < s <= a + 2 for a in (20, 50, 80)):
            segs[("node-a", "drops")].append(_drops(t, "node-a", "NETFILTER_DROP", 180))
        if s in (101, 102):
            failed += 40
            segs[("node-b", "drops")].append(_drops(t, "node-b", "NF_CONNTRACK_INSERT", 40, "10.96.0.10", 53))
        segs[("node-b", "counters")].append(_counter(t, "node-b", "conntrack", "insert_failed", failed))
        segs[("node-a", "counters")].append(_counter(t, "node-a", "conntrack", "insert_failed", 0))
    for s in segs.values():
        s.close()
    return tmp_path


def test_bursts_and_causes(recording):
    rep = analyse([recording])
    a = [b for b in rep.bursts if b["node"] == "node-a"]
    assert len(a) == 3 and all(b["reason"] == "NETFILTER_DROP" and b["count"] == 360 for b in a)
    assert all(b["cause"] == "DROP rule in filter/FORWARD" for b in a)
    assert [b["start"][11:19] for b in a] == ["10:00:20", "10:00:50", "10:01:20"]
    b = [x for x in rep.bursts if x["node"] == "node-b"]
    assert len(b) == 1 and b[0]["cause"].startswith("conntrack insert race")
    assert any("insert_failed rose by 80" in e for e in b[0]["evidence"])
    assert not [x for x in rep.bursts if x["reason"] == "NO_SOCKET"]  # the steady trickle is baseline
    top = rep.causes[0]
    assert top["node"] == "node-a" and top["bursts"] == 3 and "filter/FORWARD" in top["summary"]
    assert rep.totals["drops"] == 2 * 120 * 3 + 3 * 360 + 80
    assert "3 bursts" in render_text(rep)


def test_json_contract_and_html(recording, tmp_path):
    page = tmp_path / "r.html"
    r = subprocess.run(EXE + ["report", str(recording), "-o", "json", "--html", str(page)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    for b in rep["bursts"]:
        assert {"start", "end", "node", "cause", "reason", "device", "count", "flows", "evidence"} <= set(b)
    assert {"drops", "by_node", "by_reason", "by_device"} <= set(rep["totals"])
    html = page.read_text()
    assert html.count('src="data:image/png;base64,') == 3 and "http" not in html.split("<body>")[1][:200]


@pytest.mark.parametrize("args,says", [
    (["report", "/nonexistent/dir"], "is not a directory"),
    (["report", "{empty}"], "no podpath watch files"),
    (["watch", "--duration", "-3"], "--duration"),
])
def test_bad_input_is_one_line(args, says, tmp_path):
    args = [a.replace("{empty}", str(tmp_path)) for a in args]
    r = subprocess.run(EXE + args, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def _png_has_content(data: bytes) -> bool:
    import io
    import matplotlib.image as mpimg
    img = mpimg.imread(io.BytesIO(data), format="png")
    return img.shape[0] > 50 and img.shape[1] > 50 and float(img[..., :3].std()) > 0.02


def test_html_renders_in_chromium(recording, tmp_path):
    """The page opens in headless Chromium (Debian `chromium`, installed by scripts/setup.sh) and its
    screenshot and every embedded plot have content."""
    import base64
    import re
    import shutil
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("needs chromium to render the page: run scripts/setup.sh")
    page, shot = tmp_path / "report.html", tmp_path / "report.png"
    render_html(analyse([recording]), str(page))
    plots = re.findall(r'src="data:image/png;base64,([^"]+)"', page.read_text())
    assert len(plots) == 3 and all(_png_has_content(base64.b64decode(p)) for p in plots)
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert shot.exists(), r.stderr[-2000:]
    assert _png_has_content(shot.read_bytes())
    keep = Path(__file__).resolve().parents[2] / "out"  # /out/ is git-ignored: the last screenshot, to look at
    keep.mkdir(exist_ok=True)
    shutil.copy(shot, keep / "report-screenshot.png")


def test_standing_rule_and_device_change_causes():
    """The causes that need no rule insertion: a drop rule nobody inserted whose counter rose with
    the burst; an MTU lowered on the burst's path (lab: mtu-blackhole); a neighbour replaced on the
    burst's device (lab: vtep-neigh-flap). Evidence frames as a recording holds them."""
    from podpath.tracer.report.causes import explain

    start, end = T0 + pd.Timedelta(seconds=10), T0 + pd.Timedelta(seconds=12)
    rule = "filter/OUTPUT -p icmp -m icmp --icmp-type 3/4 -j DROP"
    counters = pd.concat([pd.DataFrame(_counter(T0 + pd.Timedelta(seconds=s), "node-b", "rule", "packets",
                                                v, rule)) for s, v in ((9, 4), (11, 9), (13, 12))])
    counters["time"] = pd.to_datetime(counters.time, utc=True)
    none = pd.DataFrame({c: [] for c in ("time", "node_name", "kind", "action", "object", "detail")})
    got = explain({"reason": "NETFILTER_DROP", "device": "eth0"}, start, end, "node-b", none, counters)
    assert got["cause"] == "standing DROP rule in filter/OUTPUT" and any("rose by 8" in e for e in got["evidence"])

    def change(kind, obj, detail, at=-0.05):
        return pd.DataFrame({"time": [start + pd.Timedelta(seconds=at)], "node_name": ["node-b"], "kind": [kind],
                             "action": ["new"], "object": [obj], "detail": [detail]})
    mtu = change("link", "cni0", "flags=0x11043 mtu 1450->1400")
    got = explain({"reason": "PKT_TOO_BIG", "device": "flannel.1"}, start, end, "node-b", mtu, counters.iloc[:0])
    assert got["cause"] == "MTU lowered on cni0 (1450 -> 1400)" and got["lag_ms"] == 50.0, got
    raised = change("link", "cni0", "flags=0x11043 mtu 1400->1450")
    assert "MTU" not in explain({"reason": "PKT_TOO_BIG", "device": "cni0"}, start, end, "node-b", raised,
                                counters.iloc[:0])["cause"]
    neigh = change("neigh", "10.244.1.0 lladdr=02:aa:bb:cc:dd:ee dev flannel.1", "PERMANENT")
    got = explain({"reason": "NO_TX_TARGET", "device": "flannel.1"}, start, end, "node-b", neigh, counters.iloc[:0])
    assert got["cause"] == "VTEP neighbour changed on flannel.1", got
    assert explain({"reason": "NO_TX_TARGET", "device": "cni0"}, start, end, "node-b", neigh,
                   counters.iloc[:0])["cause"] != got["cause"]  # another device's neighbour explains nothing


@pytest.mark.parametrize("period", [6, 20, 120])
def test_half_duty_fault_on_a_steady_flow_is_one_burst_per_window(tmp_path, period):
    """A steady flow (200 packets/s, +-10 %) that a fault drops half the time, for 10 minutes: each
    fault window is one burst covering >= 80 % of it, however long the window is against the
    rolling baseline (60 s). A baseline that learns the fault split the 60 s windows in two."""
    import random
    rnd = random.Random(period)
    segs = {t: Segments(tmp_path / "node-b", t, max_bytes=1 << 30, max_seconds=1e9) for t in ("drops", "counters")}
    on = period / 2
    windows = [(k * period + 5.0, k * period + 5.0 + on) for k in range(int(595 // period))]
    for s in range(1, 601):
        t = T0 + pd.Timedelta(seconds=s)
        segs["drops"].append(_drops(t, "node-b", "NO_SOCKET", rnd.randint(0, 2), "10.244.0.9", 9))  # a trickle
        # the part of second (s-1, s] that the fault covered, times the flow's rate
        hit = sum(max(0.0, min(s, b) - max(s - 1, a)) for a, b in windows)
        if hit:
            segs["drops"].append(_drops(t, "node-b", "NETFILTER_DROP", max(1, round(hit * rnd.uniform(180, 220)))))
        segs["counters"].append(_counter(t, "node-b", "conntrack", "insert_failed", 0))
    for s in segs.values():
        s.close()
    rep = analyse([tmp_path])
    got = [b for b in rep.bursts if b["reason"] == "NETFILTER_DROP"]
    assert len(got) == len(windows), [(b["start"][14:19], b["end"][14:19]) for b in got]
    for (a, b), burst in zip(windows, got):
        lo = max(T0 + pd.Timedelta(seconds=a), pd.Timestamp(burst["start"]))
        hi = min(T0 + pd.Timedelta(seconds=b), pd.Timestamp(burst["end"]))
        assert (hi - lo).total_seconds() >= 0.8 * (b - a), (a, b, burst["start"], burst["end"])
    assert not [b for b in rep.bursts if b["reason"] == "NO_SOCKET"]
