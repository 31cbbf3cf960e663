#!/usr/bin/env python3
"""Print how podpath grows with the number of Services a node carries (issue 14, item 1).

Builds its own lab (bs<hex>, torn down at the end), then for each size N loads, onto both nodes
with one iptables-restore each, the rules kube-proxy (iptables mode) writes for N ClusterIP
Services with two endpoints each (KUBE-SERVICES → KUBE-SVC-<hash> → statistic → KUBE-SEP-<hash>
→ DNAT; tracer/lab/kubeproxy.py renders them) on top of the lab's own, and measures:
  iptables-save lines per node; `podpath snapshot --lab L -o F` (whole process) and its bundle's
  size; `podpath diagnose pod-a pod-b --lab L` (whole process); `podpath trace pod-a pod-b --lab L`
  (cold: the first process after loading the rules); `podpath diagnose pod-a pod-b --bundle F`.
Targets at 10,000 Services: snapshot < 1 s, diagnose < 1 s, trace < 2 s, bundle < 10 MB; every
figure should grow flat or linearly. Printed, never asserted.

From 1,000 chains in a namespace's iptables-nft tables (about 300 Services) diagnose and trace read
its rules per chain as the walk reaches them (tracer/netfilter/live.py); `snapshot -o` reads every
rule (a bundle must hold them all), each node's in one iptables-nft-save in its own namespace thread,
both nodes at once (snapshot.live.whole_rules), so its floor is iptables-save itself (the last column).
That floor grows faster than linearly: iptables-nft-save 1.8.9 spends user time quadratic in the
number of chains (libnftnl chain lookups: 0.11 s at 15,000 chains, 1.07 s at 30,000).
Run as root: `.venv/bin/python bench/bench_scale.py [--sizes 100,1000,5000,10000]`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time

TARGETS = {"snapshot": 1.0, "diagnose": 1.0, "trace": 2.0, "bundle_mb": 10.0}
BENCH_NET = "10.100.0.0"  # synthetic ClusterIPs (inside the lab's 10.96.0.0/12 service CIDR)


def synthetic_services(n: int):
    """n ClusterIP Services (TCP 80 → 8080), two endpoints each, in namespace `bench`."""
    from podpath.tracer.lab import topology as T

    base = int(ipaddress.ip_address(BENCH_NET))
    out = []
    for i in range(n):
        spec = T.ServiceSpec(f"svc-{i}", "bench", str(ipaddress.ip_address(base + i)),
                             (T.ServicePort("http", 80, "TCP", 8080),), ())
        subnet = f"10.244.{2 + (i // 250) % 200}"
        eps = [T.Endpoint(f"{subnet}.{i % 250 + 2}", 8080), T.Endpoint(f"{subnet}.{i % 250 + 3}", 8080)]
        out.append(T.ServiceRules(spec, {"http": eps}))
    return out


def load_services(lab, n: int) -> tuple[int, tuple[float, float]]:
    """Make both nodes' filter and nat tables the lab's rules plus n synthetic Services, as
    kube-proxy would (one iptables-restore per node). Returns iptables-save lines on node-a and
    what `iptables-save -c` alone costs there (wall, CPU): the floor of any live snapshot."""
    from podpath.tracer.lab import kubeproxy, nsutil
    from podpath.tracer.lab.topology import NODES, service_rules

    services = service_rules() + synthetic_services(n)
    lines = 0
    for node in NODES:
        ns = lab.netns(node.name)
        live = kubeproxy.parse_save(nsutil.run(ns, ["iptables-save"], timeout=120).stdout)
        existing = {name: set(t.chains) for name, t in live.items()}
        text = kubeproxy.restore_text(kubeproxy.render_node(node, services), existing)
        nsutil.run(ns, ["iptables-restore", "--noflush", "-w"], input=text, timeout=300)
        if node.name == "node-a":
            lines = nsutil.run(ns, ["iptables-save"], timeout=120).stdout.count("\n")
            wall, cpu, _ = timed(["ip", "netns", "exec", ns, "iptables-save", "-c"])
    return lines, (wall, cpu)


def timed(argv: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds (user + system of the process and everything it waited for:
    iptables-save, nft...; less sensitive than wall time to others' load on a shared machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, p


def median_timed(argv: list[str], runs: int, notes: list[str], label: str) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu, p = timed(argv)
        walls.append(wall)
        cpus.append(cpu)
        if p.returncode not in (0, 1):  # 1: diagnose found a problem (not expected here)
            notes.append(f"{label}: exit {p.returncode}: {(p.stderr or p.stdout).strip()[-200:]}")
    return statistics.median(walls), statistics.median(cpus)


def cell(t: tuple[float, float]) -> str:
    return f"{t[0]:6.3f} [{t[1]:5.2f}]"


def mark(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return f"(< {target:g} {'ok' if value < target else 'OVER'})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,5000,10000", help="Services per node, comma-separated")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of snapshot and diagnose (median)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if os.geteuid() != 0:
        print("bench: needs root (builds network namespaces, loads BPF programs)", file=sys.stderr)
        return 4
    from podpath.tracer.lab import Lab

    name = "bs" + secrets.token_hex(2)[:3]
    podpath = os.path.join(os.path.dirname(sys.executable), "podpath")
    lab = Lab(name)
    rows = []
    notes = []
    tmp = tempfile.mkdtemp(prefix="podpath-bench-scale-")
    print(f"lab {name}; load average before: {os.getloadavg()[0]:.2f} (2 CPUs shared)", flush=True)
    try:
        lab.up()
        for n in sizes:
            t0 = time.perf_counter()
            lines, save = load_services(lab, n)
            load_s = time.perf_counter() - t0
            bundle = os.path.join(tmp, f"{n}.json")
            trace_s, trace_cpu, p = timed([podpath, "trace", "pod-a", "pod-b", "--lab", name])  # cold
            if p.returncode != 0:
                notes.append(f"{n}: trace exit {p.returncode}: {p.stdout.strip()[-200:]} {p.stderr.strip()[-200:]}")
            snap = median_timed([podpath, "snapshot", "--lab", name, "-o", bundle], args.runs, notes, f"{n}: snapshot")
            size_mb = os.path.getsize(bundle) / 1e6 if os.path.exists(bundle) else float("nan")
            diag = median_timed([podpath, "diagnose", "pod-a", "pod-b", "--lab", name], args.runs, notes,
                                f"{n}: diagnose")
            off = median_timed([podpath, "diagnose", "pod-a", "pod-b", "--bundle", bundle], args.runs, notes,
                               f"{n}: diagnose --bundle")
            rows.append((n, lines, snap, size_mb, diag, (trace_s, trace_cpu), off, os.getloadavg()[0], save))
            print(f"  {n} Services loaded in {load_s:.1f} s; measured", flush=True)
    finally:
        lab.down()
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)

    print()
    print(f"wall seconds (median of {args.runs}; trace: one cold run), [CPU seconds incl. children]")
    print(f"{'Services':>9} {'save lines':>10} {'snapshot':>15} {'bundle MB':>9} {'diagnose':>15} "
          f"{'trace cold':>15} {'diagnose --bundle':>17} {'load':>5} {'iptables-save -c':>16}")
    for n, lines, snap, mb, diag, tr, off, load, save in rows:
        print(f"{n:>9} {lines:>10} {cell(snap):>15} {mb:>9.2f} {cell(diag):>15} {cell(tr):>15} "
              f"{cell(off):>17} {load:>5.2f} {cell(save):>16}")
    if rows:
        n, _, snap, mb, diag, tr, off, _, save = rows[-1]
        print(f"\nat {n} Services: snapshot {snap[0]:.3f} s {mark(snap[0], TARGETS['snapshot'])}, "
              f"diagnose {diag[0]:.3f} s {mark(diag[0], TARGETS['diagnose'])}, trace {tr[0]:.3f} s "
              f"{mark(tr[0], TARGETS['trace'])}, bundle {mb:.2f} MB {mark(mb, TARGETS['bundle_mb'])}, "
              f"diagnose --bundle {off[0]:.3f} s; iptables-save -c alone on one node: {save[0]:.3f} s")
        if len(rows) > 1:
            first, last = rows[0], rows[-1]
            def grow(i: int) -> float:  # CPU seconds, last size over first
                return last[i][1] / first[i][1] if first[i][1] else float("nan")

            print(f"CPU growth {first[0]} → {last[0]} Services (x{last[0] / first[0]:g}): snapshot x{grow(2):.1f}, "
                  f"bundle x{last[3] / first[3]:.1f} (size), diagnose x{grow(4):.1f}, trace x{grow(5):.1f}, "
                  f"diagnose --bundle x{grow(6):.1f}")
    for note in notes:
        print("note:", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
