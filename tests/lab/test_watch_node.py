"""`podpath watch` on one node, run the way an operator runs it: inside a throwaway network
namespace that plays the node (so only its own drops are in scope), with real UDP packets to a
closed port (each one a NO_SOCKET drop), then killed with SIGKILL or scraped by Prometheus."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT_BPF_LAB, wait_no_programs

pytestmark = ROOT_BPF_LAB

EXE = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "podpath")


@pytest.fixture
def node_ns(request):
    name = "pwn" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True)
    request.addfinalizer(lambda: subprocess.run(["ip", "netns", "del", name], check=False))
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return name


def _send(netns: str, n: int, port: int = 9, dst: str = "127.0.0.1") -> None:
    from podpath.tracer.netns import run_in

    def body():
        with socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(n):
                s.sendto(b"podpath", (dst, port))
    run_in(netns, body)


def _watch(netns: str, *args: str) -> subprocess.Popen:
    p = subprocess.Popen(["ip", "netns", "exec", netns, EXE, "watch", *args], stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    assert "recording drops" in line, line + p.stderr.read()
    return p


def _pw_programs() -> list:
    """`podpath watch` programs this test left (others' watches on this machine are theirs)."""
    return wait_no_programs(0, names=("pw_kfree_skb",))


def test_sigkill_leaves_every_drop_readable(node_ns, tmp_path):
    from podpath.tracer.watch.store import OPEN_SUFFIX, read_table, recover
    out = tmp_path / "w"
    p = _watch(node_ns, "-o", str(out), "--rotate-seconds", "1")
    try:
        _send(node_ns, 500)
        time.sleep(1.5)  # the drops are in a tick
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # kill when a file was rotated and another one is open
            if list(out.rglob("*.parquet")) and list(out.rglob(f"*{OPEN_SUFFIX}")):
                break
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)  # ip netns exec execs podpath: this is podpath's pid
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    node_dir = next(out.iterdir())
    import pyarrow.parquet as pq
    closed = list(node_dir.glob("*.parquet"))
    assert closed and all(pq.ParquetFile(f).metadata.num_rows >= 1 for f in closed)
    assert list(node_dir.glob(f"*{OPEN_SUFFIX}")), "the killed watch had a segment open"
    def count():
        d = read_table([out], "drops").to_pandas()
        return int(d[(d.destination_port == 9) & (d.drop_reason_desc == "NO_SOCKET")].packets.sum())
    assert count() == 500  # the open segment is read up to its last batch
    recover(out)
    assert not list(node_dir.glob(f"*{OPEN_SUFFIX}")) and count() == 500
    deadline = time.monotonic() + 3
    while _pw_programs() and time.monotonic() < deadline:  # the kernel frees a dead process's links
        time.sleep(0.05)
    assert not _pw_programs()


def test_prometheus_counts_every_drop(node_ns, tmp_path):
    port = 20000 + secrets.randbelow(20000)
    p = _watch(node_ns, "-o", str(tmp_path / "w"), "--duration", "4", "--prometheus", f"127.0.0.1:{port}")
    try:
        _send(node_ns, 321)
        time.sleep(2)
        # the exporter listens inside the node's namespace: scrape it from there
        from podpath.tracer.netns import run_in
        text = run_in(node_ns, lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                      .read().decode())
    finally:
        p.wait(30)
    line = next(l for l in text.splitlines() if l.startswith("podpath_drops_total{") and 'reason="NO_SOCKET"' in l)
    assert 'device="lo"' in line and float(line.split()[-1]) == 321
    assert p.returncode == 0


def test_ipv6_drops_keyed_by_their_flow(node_ns, tmp_path):
    """IPv6 flows are keyed like IPv4 ones: addresses, protocol, ports (the probe reads the IPv6 header)."""
    from podpath.tracer.watch.store import read_table
    out = tmp_path / "w"
    p = _watch(node_ns, "-o", str(out), "--duration", "3")
    _send(node_ns, 77, port=9, dst="::1")
    _send(node_ns, 33, port=9)
    p.wait(30)
    assert p.returncode == 0
    d = read_table([out], "drops").to_pandas()
    v6 = d[(d.drop_reason_desc == "NO_SOCKET") & (d.ethertype == 0x86DD)]
    assert int(v6.packets.sum()) == 77
    assert set(zip(v6.ip_source, v6.ip_destination, v6.l4_protocol, v6.destination_port)) == {("::1", "::1", "UDP", 9)}
    v4 = d[(d.drop_reason_desc == "NO_SOCKET") & (d.ethertype == 0x0800)]
    assert int(v4.packets.sum()) == 33 and set(v4.ip_destination) == {"127.0.0.1"}
