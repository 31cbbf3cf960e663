#!/usr/bin/env python3
"""Print how long `snapshot import` takes on generated pastes: 1k and 8k `ip r` lines, 2 MB and 20 MB.

Target (issue 14): linear time, a 20 MB paste in under 10 s. Printed, never asserted. No root needed:
`.venv/bin/python bench/bench_import.py [--runs N] [--skip-20mb]`.

The large pastes are what an operator collects from a big node: `ip a` with many pod veths, `ip r`,
`ip neigh`, `bridge fdb`, `iptables-save` as kube-proxy writes it (KUBE-SVC → KUBE-SEP, two endpoints
per Service), `ipvsadm -Ln` and `sysctl -a`, each behind its shell prompt, repeated until the size is reached.
"""

from __future__ import annotations

import argparse
import statistics
import time


def routes(n: int) -> str:
    lines = ["$ ip r", "default via 192.168.56.1 dev eth0 proto dhcp metric 100"]
    for i in range(n):
        lines.append(f"10.{(i >> 8) & 255}.{i & 255}.0/24 via 10.{(i >> 8) & 255}.{i & 255}.0 dev flannel.1 onlink")
    return "\n".join(lines) + "\n"


def node_block(seed: int, services: int = 200, pods: int = 100) -> str:
    """One node's checklist; `seed` keeps every block's objects distinct, as on a big cluster."""
    a, b = (seed >> 8) & 255, seed & 255
    out = [f"[root@node{seed} ~]# ip a",
           "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000",
           "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00",
           "    inet 127.0.0.1/8 scope host lo"]
    for p in range(pods):
        out += [f"{p + 10}: veth{seed:04x}{p:04x}@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue "
                "master cni0 state UP group default",
                f"    link/ether 0a:{a:02x}:{b:02x}:00:{p >> 8:02x}:{p & 255:02x} brd ff:ff:ff:ff:ff:ff "
                f"link-netnsid {p}"]
    out.append(f"[root@node{seed} ~]# ip r")
    out += [f"10.{a}.{b}.{p}/32 via 10.{a}.{b}.1 dev cni0 metric {p}" for p in range(pods)]
    out.append(f"[root@node{seed} ~]# ip neigh")
    out += [f"10.{a}.{b}.{p} dev cni0 lladdr 0a:58:{a:02x}:{b:02x}:00:{p:02x} REACHABLE" for p in range(min(pods, 250))]
    out.append(f"[root@node{seed} ~]# bridge fdb")
    out += [f"0a:58:{a:02x}:{b:02x}:01:{p:02x} dev flannel.1 dst 192.168.{a}.{p} self permanent"
            for p in range(min(pods, 250))]
    out += [f"[root@node{seed} ~]# iptables-save", "*nat", ":PREROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]"]
    for s in range(services):
        svc = f"KUBE-SVC-{seed:06X}{s:010X}"
        vip = f"10.{96 + (s >> 16)}.{(s >> 8) & 255}.{s & 255}"
        out += [f":{svc} - [0:0]",
                f'-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment "ns/svc{s}:http cluster IP" '
                f"-m tcp --dport 80 -j {svc}"]
        for e in range(2):
            sep = f"KUBE-SEP-{seed:06X}{s:08X}{e:02X}"
            jump = f"-A {svc} -m statistic --mode random --probability 0.5 -j {sep}" if e == 0 else f"-A {svc} -j {sep}"
            out += [f":{sep} - [0:0]", jump,
                    f"-A {sep} -p tcp -m tcp -j DNAT --to-destination 10.{a}.{b}.{e + 2}:8080"]
    out += ["COMMIT", f"[root@node{seed} ~]# ipvsadm -Ln",
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"]
    for s in range(services // 4):
        out += [f"TCP  10.{96 + (s >> 16)}.{(s >> 8) & 255}.{s & 255}:80 rr",
                f"  -> 10.{a}.{b}.2:8080              Masq    1      0          0"]
    out += [f"[root@node{seed} ~]# sysctl -a | grep net.ipv4",
            "net.ipv4.ip_forward = 1", "net.ipv4.conf.all.rp_filter = 0"]
    return "\n".join(out) + "\n"


def paste_of_size(size: int) -> str:
    blocks, total, seed = [], 0, 1
    while total < size:
        block = node_block(seed)
        blocks.append(block)
        total += len(block)
        seed += 1
    return "".join(blocks)


def timed(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="repetitions for the small cases (median)")
    ap.add_argument("--skip-20mb", action="store_true", help="leave out the 20 MB paste")
    args = ap.parse_args()
    from podpath.tracer.snapshot.importers import import_texts

    cases = [("ip r, 1,000 lines", routes(1000), args.runs), ("ip r, 8,000 lines", routes(8000), args.runs),
             ("2 MB paste", paste_of_size(2 << 20), 1)]
    if not args.skip_20mb:
        cases.append(("20 MB paste", paste_of_size(20 << 20), 1))
    print(f"{'case':<20} {'size':>10} {'hosts':>6} {'seconds':>9}")
    for label, text, runs in cases:
        bundle = None

        def run():
            nonlocal bundle
            bundle = import_texts([("paste.txt", text)])
        seconds = timed(run, runs)
        print(f"{label:<20} {len(text) / 1e6:>8.2f}MB {len(bundle.hosts):>6} {seconds:>9.2f}")
    print("target: 20 MB paste < 10 s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
