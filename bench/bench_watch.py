#!/usr/bin/env python3
"""Print what `podpath watch` costs and how fast it counts (issue 12's figures). Printed, never asserted.

Builds two throwaway namespaces joined by a veth (sender 10.251.0.1, receiver 10.251.0.2; nothing
else is connected to them) and measures:
  1. a drop storm: an nft DROP rule (netdev ingress, with a counter) on the receiver's veth and a
     flood of 16-byte UDP packets from bench/flood.c (AF_PACKET + sendmmsg, one per CPU, built with
     clang here; iperf3 peaked at ~0.1-0.3 M/s): drops/s counted by watch.bpf.o, against the rule's
     own counter (must be equal);
  2. sampled events/s decoded in Python during the same flood (no rate limit), with ring buffer losses;
  3. iperf3 TCP throughput with the watch probe attached and without (no drops);
  4. `podpath report`'s analysis over generated files: 1 hour, 2 nodes.
Targets (issue 12): >= 1 M drops/s exact; >= 250 k events/s decoded; >= 99 %; < 5 s.
Run as root: `.venv/bin/python bench/bench_watch.py`. Everything it builds is removed at the end.
"""

from __future__ import annotations

import ctypes
import json
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def sh(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


def build(tag: str) -> tuple[str, str]:
    a, b = f"bw{tag}-tx", f"bw{tag}-rx"
    sh("ip", "netns", "add", a)
    sh("ip", "netns", "add", b)
    sh("ip", "-n", a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", b)
    for ns, ip in ((a, "10.251.0.1/24"), (b, "10.251.0.2/24")):
        sh("ip", "-n", ns, "addr", "add", ip, "dev", "veth0")
        sh("ip", "-n", ns, "link", "set", "veth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    return a, b


def iperf(tx: str, rx: str, *args: str, seconds: int = 5) -> dict:
    srv = subprocess.Popen(["ip", "netns", "exec", rx, "iperf3", "-s", "-1", "-B", "10.251.0.2"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = sh("ip", "netns", "exec", tx, "iperf3", "-c", "10.251.0.2", "-t", str(seconds), "-J", *args,
                 timeout=seconds + 30).stdout
        return json.loads(out)
    finally:
        srv.wait(10)


def flooder(workdir: str) -> str:
    """bench/flood.c built with clang (scripts/setup.sh installs it) into workdir."""
    exe = str(Path(workdir) / "flood")
    sh("clang", "-O2", "-o", exe, str(Path(__file__).with_name("flood.c")))
    return exe


def flood(exe: str, tx: str, rx: str, seconds: float, cpus: int) -> list[subprocess.Popen]:
    """One flooder per CPU (each pinned), sending from tx's veth0 to rx's, for seconds."""
    mac = json.loads(sh("ip", "-n", rx, "-j", "link", "show", "veth0").stdout)[0]["address"]
    return [subprocess.Popen(["ip", "netns", "exec", tx, "taskset", "-c", str(c), exe, "veth0", mac, "10.251.0.1",
                              "10.251.0.2", "5201", str(seconds)], stdout=subprocess.PIPE, text=True)
            for c in range(cpus)]


STORM_RULE = """table netdev pp_storm {
  chain in { type filter hook ingress device "veth0" priority 0; udp dport 5201 counter drop; }
}
"""


def storm_rule_packets(rx: str) -> int:
    for item in json.loads(sh("ip", "netns", "exec", rx, "nft", "-j", "list", "table", "netdev", "pp_storm").stdout)["nftables"]:
        for e in item.get("rule", {}).get("expr", []):
            if "counter" in e:
                return int(e["counter"]["packets"])
    raise RuntimeError("pp_storm's counter not found")


def load() -> str:
    return "load " + " ".join(open("/proc/loadavg").read().split()[:3])


def storm(tx: str, rx: str, seconds: int = 5) -> None:
    """The drop storm: bench/flood.c (AF_PACKET, sendmmsg, one per CPU) floods rx's veth0 with
    16-byte UDP packets that an nft netdev ingress DROP rule (with a counter) drops on arrival."""
    import os

    from podpath.tracer.netns import existing_inode
    from podpath.tracer.probes import libbpf
    from podpath.tracer.watch.kernel import DropCounter
    from podpath.tracer.watch.names import drop_reasons

    ino = existing_inode(rx)
    nf_drop = next(v for v, n in drop_reasons().items() if n == "NETFILTER_DROP")
    cpus = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as d:
        exe = flooder(d)
        sh("ip", "netns", "exec", rx, "nft", "-f", "-", input=STORM_RULE)
        try:
            with DropCounter(samples_per_sec=0) as k:
                ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                procs = flood(exe, tx, rx, seconds, cpus)
                sent = sum(int(p.communicate(timeout=seconds + 30)[0]) for p in procs)
                ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                # the whole path runs in the flooders' own context (the veth hands each packet to the
                # receiver's backlog, processed when the sender enables bottom halves): their CPU time
                # is the storm's, whatever else the machine runs
                cpu_s = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
                time.sleep(0.2)
                counted = sum(p for key, (p, _b) in k.read().items()
                              if key.netns == ino and key.dport == 5201 and key.reason == nf_drop)
                truth = storm_rule_packets(rx)
            print(f"drop storm: {counted} drops counted in {seconds} s of flood ({cpus} flooders, {sent} sent) = "
                  f"{counted / seconds / 1e6:.2f} M drops/s; the rule's counter says {truth}: "
                  f"{'EXACT' if counted == truth else 'DIFFERENT'} ({load()})")
            print(f"drop storm per CPU: the flooders used {cpu_s:.2f} CPU-s (send, veth, drop, probe) = "
                  f"{counted / max(cpu_s, 1e-9) / 1e6:.2f} M drops per CPU-second: what a quiet core does a "
                  f"second ({load()})")
            # the probe's own cost, apart: run-time stats cost two clock reads per run (a VM's are slow)
            stats_fd = libbpf.enable_stats()
            try:
                before = {i for i, n in libbpf.loaded_programs() if n == "pw_kfree_skb"}
                with DropCounter(samples_per_sec=0):
                    mine = [i for i, n in libbpf.loaded_programs() if n == "pw_kfree_skb" and i not in before]
                    for p in flood(exe, tx, rx, 2, cpus):
                        p.communicate(timeout=60)
                    prog = {}
                    if len(mine) == 1:  # this bench's program (other watches may run on the machine)
                        prog = json.loads(sh("bpftool", "prog", "show", "id", str(mine[0]), "-j").stdout)
            finally:
                if stats_fd >= 0:
                    os.close(stats_fd)
            per = prog.get("run_time_ns", 0) / max(1, prog.get("run_cnt", 1))
            if per:
                print(f"probe cost: {per:.0f} ns per drop (kernel run-time stats, {prog.get('run_cnt', 0)} runs) "
                      f"= {1e3 / per:.1f} M drops/s per CPU of probe time ({load()})")
            with DropCounter(samples_per_sec=2**31) as k:
                got = 0
                procs = flood(exe, tx, rx, seconds, max(1, cpus - 1))  # a CPU left for the decoder
                t0 = time.perf_counter()
                while any(p.poll() is None for p in procs):
                    got += len(k.poll(100))
                dt = time.perf_counter() - t0
                got += len(k.poll(0))
                for p in procs:
                    p.communicate()
                st = k.stats()
            print(f"sampled events: {got} decoded in {dt:.1f} s = {got / dt / 1e3:.0f} k events/s; "
                  f"ring buffer lost {st['ringbuf_lost']} (counted, not decoded) ({load()})")
        finally:
            sh("ip", "netns", "exec", rx, "nft", "delete", "table", "netdev", "pp_storm")


def decode_only(n: int = 1_000_000) -> None:
    """The decoder alone (the flood above may be slower than it): n records, as the ring buffer hands them."""
    from podpath.tracer.watch.kernel import RawEvent, RawKey, decode_event

    rec = bytes(RawEvent(ts_ns=1, key=RawKey(netns=1, reason=6, l3_proto=0x0800, l4_proto=17,
                                                 saddr=(ctypes.c_uint8 * 16)(10, 0, 0, 1),
                                                 daddr=(ctypes.c_uint8 * 16)(10, 0, 0, 2), sport=3, dport=4), len=64))
    t = time.perf_counter()
    for _ in range(n):
        decode_event(rec)
    dt = time.perf_counter() - t
    print(f"decoder alone: {n / dt / 1e3:.0f} k events/s ({load()})")


def throughput(tx: str, rx: str, seconds: int = 5) -> None:
    from podpath.tracer.watch.kernel import DropCounter

    def bps() -> float:
        return iperf(tx, rx, seconds=seconds)["end"]["sum_received"]["bits_per_second"]

    base = [bps(), bps()]
    with DropCounter():
        on = [bps(), bps()]
    b, w = max(base), max(on)
    print(f"iperf3 TCP: without watch {b / 1e9:.2f} Gbit/s, with watch {w / 1e9:.2f} Gbit/s = {100 * w / b:.1f} % ({load()})")


def report_time() -> None:
    import pandas as pd

    from podpath.tracer.report import analyse
    from podpath.tracer.watch.store import Segments

    t0 = pd.Timestamp.now(tz="UTC").floor("1s")
    with tempfile.TemporaryDirectory() as d:
        for node in ("node-a", "node-b"):
            drops = Segments(Path(d) / node, "drops", max_bytes=64 << 20, max_seconds=1e9)
            ctr = Segments(Path(d) / node, "counters", max_bytes=64 << 20, max_seconds=1e9)
            for minute in range(60):  # one batch per minute of 60 s x 20 keys (a busy node)
                n = 60 * 20
                secs = [t0 + pd.Timedelta(seconds=minute * 60 + i // 20) for i in range(n)]
                drops.append({
                    "time": [s.value for s in secs], "interval_s": [1.0] * n, "node_name": [node] * n,
                    "pod_name": [None] * n, "namespace": [None] * n, "netns": [1] * n, "ifindex": [3] * n,
                    "interface": ["cni0"] * n, "drop_reason_desc": [("NO_SOCKET", "NETFILTER_DROP")[i % 2] for i in range(n)],
                    "location": [1] * n, "location_symbol": ["x+0x1"] * n, "ethertype": [2048] * n,
                    "l4_protocol": ["UDP"] * n, "ip_source": [f"10.244.0.{i % 20}" for i in range(n)],
                    "ip_destination": ["10.244.1.3"] * n, "source_port": [40000 + i % 20 for i in range(n)],
                    "destination_port": [53] * n,
                    "packets": [(500 if minute % 10 == 0 and (i // 20) < 5 else 1) for i in range(n)], "bytes": [70] * n})
                m = 60 * 10
                ctr.append({"time": [(t0 + pd.Timedelta(seconds=minute * 60 + i // 10)).value for i in range(m)],
                            "node_name": [node] * m, "group": ["conntrack"] * m, "name": [f"c{i % 10}" for i in range(m)],
                            "object": [""] * m, "value": list(range(m))})
            drops.close()
            ctr.close()
        t = time.perf_counter()
        rep = analyse([d])
        dt = time.perf_counter() - t
    print(f"report: 1 h x 2 nodes ({rep.totals['drops']} drops in {len(rep.drops)} rows) analysed in {dt:.2f} s, "
          f"{len(rep.bursts)} bursts ({load()})")


def rss(tx: str, rx: str, seconds: int, rate: str = "20M") -> None:
    """`podpath watch` in the receiver's namespace through a flood of drops with changing flows
    (iperf3 -P 4 picks new source ports), its resident memory sampled every 10 s."""
    exe = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "podpath")
    rule = ["-p", "udp", "--dport", "5201", "-m", "length", "--length", "44", "-j", "DROP"]
    sh("ip", "netns", "exec", rx, "iptables", "-I", "INPUT", "1", *rule)
    with tempfile.TemporaryDirectory() as d:
        w = subprocess.Popen(["ip", "netns", "exec", rx, exe, "watch", "-o", d, "--duration", str(seconds + 5),
                              "--rotate-seconds", "60"], stderr=subprocess.PIPE, text=True)
        try:
            w.stderr.readline()
            # every datagram is dropped: the server would give up after 120 s without data (--rcv-timeout)
            srv = subprocess.Popen(["ip", "netns", "exec", rx, "iperf3", "-s", "-1", "-B", "10.251.0.2",
                                    "--rcv-timeout", str((seconds + 60) * 1000)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)
            cli = subprocess.Popen(["ip", "netns", "exec", tx, "iperf3", "-c", "10.251.0.2", "-t", str(seconds), "-u",
                                    "-b", rate, "-l", "16", "-P", "4"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            samples = []
            t0 = time.monotonic()
            while cli.poll() is None:
                time.sleep(10)
                with open(f"/proc/{w.pid}/status") as f:
                    kb = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
                samples.append((round(time.monotonic() - t0), kb // 1024))
            srv.wait(10)
        finally:
            w.wait(60)
            sh("ip", "netns", "exec", rx, "iptables", "-D", "INPUT", *rule)
    mib = [m for _s, m in samples]
    print(f"watch RSS over {seconds} s of drops at {rate}bit/s x 4 streams (s, MiB): {samples}")
    if mib:
        print(f"watch RSS: first {mib[0]} MiB, last {mib[-1]} MiB, max {max(mib)} MiB ({load()})")


def main() -> None:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rss-seconds", type=int, default=60, help="how long to watch memory (issue: 600)")
    ap.add_argument("--rss-rate", default="20M", help="iperf3 -b per stream during the RSS check")
    ap.add_argument("--only", choices=("storm", "throughput", "rss", "decode", "report"), action="append",
                    help="run only these figures (repeatable; default: all)")
    args = ap.parse_args()
    want = set(args.only or ("storm", "throughput", "rss", "decode", "report"))
    if want & {"storm", "throughput", "rss"}:
        tag = secrets.token_hex(2)
        tx, rx = build(tag)
        try:
            if "storm" in want:
                storm(tx, rx)
            if "throughput" in want:
                throughput(tx, rx)
            if "rss" in want:
                rss(tx, rx, args.rss_seconds, args.rss_rate)
        finally:
            for ns in (tx, rx):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    if "decode" in want:
        decode_only()
    if "report" in want:
        report_time()


if __name__ == "__main__":
    main()
