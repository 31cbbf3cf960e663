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
Run as root: `.venv/bin/python bench/bench_scale.py [--sizes 100,1000,5000,10000]`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
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


def load_services(lab, n: int) -> int:
    """Make both nodes' filter and nat tables the lab's rules plus n synthetic Services, as
    kube-proxy would (one iptables-restore per node). Returns iptables-save lines on node-a."""
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
    return lines


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True)
    return time.perf_counter() - t0, p


def mark(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return f"(< {target:g} {'ok' if value < target else 'OVER'})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,5000,10000", help="Services per node, comma-separated")
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
            lines = load_services(lab, n)
            load_s = time.perf_counter() - t0
            bundle = os.path.join(tmp, f"{n}.json")
            trace_s, p = timed([podpath, "trace", "pod-a", "pod-b", "--lab", name])  # cold first
            if p.returncode != 0:
                notes.append(f"{n}: trace exit {p.returncode}: {p.stdout.strip()[-200:]} {p.stderr.strip()[-200:]}")
            snap_s, p = timed([podpath, "snapshot", "--lab", name, "-o", bundle])
            if p.returncode != 0:
                notes.append(f"{n}: snapshot exit {p.returncode}: {p.stderr.strip()[-200:]}")
            size_mb = os.path.getsize(bundle) / 1e6 if os.path.exists(bundle) else float("nan")
            diag_s, p = timed([podpath, "diagnose", "pod-a", "pod-b", "--lab", name])
            if p.returncode != 0:
                notes.append(f"{n}: diagnose exit {p.returncode}: {p.stdout.strip()[-200:]}")
            off_s, p = timed([podpath, "diagnose", "pod-a", "pod-b", "--bundle", bundle])
            if p.returncode != 0:
                notes.append(f"{n}: diagnose --bundle exit {p.returncode}: {p.stdout.strip()[-200:]}")
            rows.append((n, lines, snap_s, size_mb, diag_s, trace_s, off_s, os.getloadavg()[0]))
            print(f"  {n} Services loaded in {load_s:.1f} s; measured", flush=True)
    finally:
        lab.down()
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)

    print()
    print(f"{'Services':>9} {'save lines':>10} {'snapshot s':>10} {'bundle MB':>9} {'diagnose s':>10} "
          f"{'trace s':>8} {'offline s':>9} {'load':>5}")
    for n, lines, snap, mb, diag, tr, off, load in rows:
        print(f"{n:>9} {lines:>10} {snap:>10.3f} {mb:>9.2f} {diag:>10.3f} {tr:>8.3f} {off:>9.3f} {load:>5.2f}")
    if rows:
        n, _, snap, mb, diag, tr, off, _ = rows[-1]
        print(f"\nat {n} Services: snapshot {snap:.3f} s {mark(snap, TARGETS['snapshot'])}, "
              f"diagnose {diag:.3f} s {mark(diag, TARGETS['diagnose'])}, trace {tr:.3f} s "
              f"{mark(tr, TARGETS['trace'])}, bundle {mb:.2f} MB {mark(mb, TARGETS['bundle_mb'])}, "
              f"diagnose --bundle {off:.3f} s")
        if len(rows) > 1:
            (n0, _, s0, m0, d0, t0_, o0, _), (n1, _, s1, m1, d1, t1, o1, _) = rows[0], rows[-1]
            print(f"growth {n0} → {n1} Services (x{n1 / n0:g}): snapshot x{s1 / s0:.1f}, bundle x{m1 / m0:.1f}, "
                  f"diagnose x{d1 / d0:.1f}, trace x{t1 / t0_:.1f}, offline x{o1 / o0:.1f}")
    for note in notes:
        print("note:", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
