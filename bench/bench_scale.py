#!/usr/bin/env python3
"""Print how podpath grows with the number of Services a node carries (issue 14, item 1).

Builds its own lab (bs<hex>, torn down at the end), then for each size N loads, onto both nodes
with one iptables-restore each, the rules kube-proxy (iptables mode) writes for N ClusterIP
Services with two endpoints each (KUBE-SERVICES → KUBE-SVC-<hash> → statistic → KUBE-SEP-<hash>
→ DNAT; tracer/lab/kubeproxy.py renders them) on top of the lab's own, and measures:
  iptables-save lines per node; `podpath snapshot --lab L -o F` (whole process) and its bundle's
  size; `podpath diagnose pod-a pod-b --lab L` (whole process); `podpath trace pod-a pod-b --lab L`
  (cold: the first process after loading the rules); the same trace from node-a through the agents
  `lab up` runs (a chain at a time through them: agent/rules.py); `podpath diagnose pod-a pod-b
  --bundle F`.
Targets at 10,000 Services: snapshot < 1 s, diagnose < 1 s, trace < 2 s, bundle < 10 MB; every
figure should grow flat or linearly. Printed, never asserted.

The snapshot figure is `podpath snapshot -o` run the way it runs on a real node: inside node-a's
namespace, reading that node and its pods (`ip netns exec L-node-a podpath snapshot -o F`). The lab
column reads both nodes at once, which on this 2-core machine share the CPUs a real cluster's nodes
would not. A bundle holds every rule, so its floor is `iptables-nft-save -c` of the node (a column
of its own): 0.7 s at 10,000 Services, two thirds of it the kernel serialising 110,000 rules.
podpath starts that save first, before it imports the rest of itself (snapshot/early.py).
diagnose and trace read a big node's rules per chain as the walk reaches them
(tracer/netfilter/live.py).

The generated rules are what kube-proxy writes: chains declared in no order of their names (it ranges
over a Go map), and past 1,000 endpoints no comments on the endpoint rules (its large-cluster mode).
Declared in name order instead, as on a node whose rules were restored from a sorted iptables-save
dump, they meet the worst case of iptables-nft-save 1.8.9's chain sort (a quicksort on the first
element): the last line prints what the save then costs, for the same rules.
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


def save_restored_sorted(lab, name: str) -> tuple[float, float] | None:
    """`iptables-save -c` (wall, CPU) in a scratch namespace that got node-a's rules from
    `iptables-save | iptables-restore`, which declares (so creates) chains in name order."""
    from podpath.tracer.lab import nsutil

    scratch = f"{name}-sorted"
    text = nsutil.run(lab.netns("node-a"), ["iptables-save"], timeout=120).stdout
    subprocess.run(["ip", "netns", "add", scratch], check=True)
    try:
        nsutil.run(scratch, ["iptables-restore", "-w"], input=text, timeout=300)
        wall, cpu, _ = timed(["ip", "netns", "exec", scratch, "iptables-save", "-c"])
        return wall, cpu
    finally:
        subprocess.run(["ip", "netns", "del", scratch], check=False)


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
    from podpath.tracer.agent import DIRECT_ENV
    from podpath.tracer.lab.topology import NODES

    try:
        lab.up()
        os.environ[DIRECT_ENV] = ",".join(f"{node.name}={lab.netns(node.name)}" for node in NODES)
        for n in sizes:
            t0 = time.perf_counter()
            lines, save = load_services(lab, n)
            load_s = time.perf_counter() - t0
            bundle = os.path.join(tmp, f"{n}.json")
            trace_s, trace_cpu, p = timed([podpath, "trace", "pod-a", "pod-b", "--lab", name])  # cold
            if p.returncode != 0:
                notes.append(f"{n}: trace exit {p.returncode}: {p.stdout.strip()[-200:]} {p.stderr.strip()[-200:]}")
            lab_snap = median_timed([podpath, "snapshot", "--lab", name, "-o", bundle], args.runs, notes,
                                    f"{n}: snapshot --lab")
            node_bundle = os.path.join(tmp, f"{n}-node.json")
            snap = median_timed(["ip", "netns", "exec", lab.netns("node-a"), podpath, "snapshot", "-o", node_bundle],
                                args.runs, notes, f"{n}: snapshot on node-a")
            size_mb = os.path.getsize(bundle) / 1e6 if os.path.exists(bundle) else float("nan")  # both nodes
            diag = median_timed([podpath, "diagnose", "pod-a", "pod-b", "--lab", name], args.runs, notes,
                                f"{n}: diagnose")
            # through the agents `lab up` runs, from node-a, as on a cluster (warm: the agents run on)
            agents = median_timed(["ip", "netns", "exec", lab.netns("node-a"), podpath, "trace", "pod-a", "pod-b",
                                   "--kubeconfig", str(lab.kubeconfig)], args.runs, notes, f"{n}: trace through agents")
            off = median_timed([podpath, "diagnose", "pod-a", "pod-b", "--bundle", bundle], args.runs, notes,
                               f"{n}: diagnose --bundle")
            rows.append((n, lines, snap, size_mb, diag, (trace_s, trace_cpu), off, os.getloadavg()[0], save, lab_snap,
                         agents))
            print(f"  {n} Services loaded in {load_s:.1f} s; measured", flush=True)
        sorted_save = save_restored_sorted(lab, name) if sizes else None
    finally:
        lab.down()
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)

    print()
    print(f"wall seconds (median of {args.runs}; trace: one cold run), [CPU seconds incl. children]")
    print("snapshot: on node-a, as on a real node; --lab: both nodes, sharing this machine's 2 CPUs; "
          "bundle: the --lab one")
    print(f"{'Services':>9} {'save lines':>10} {'snapshot':>15} {'snapshot --lab':>15} {'bundle MB':>9} "
          f"{'diagnose':>15} {'trace cold':>15} {'trace (agents)':>15} {'diagnose --bundle':>17} {'load':>5} "
          f"{'iptables-save -c':>16}")
    for n, lines, snap, mb, diag, tr, off, load, save, lab_snap, agents in rows:
        print(f"{n:>9} {lines:>10} {cell(snap):>15} {cell(lab_snap):>15} {mb:>9.2f} {cell(diag):>15} "
              f"{cell(tr):>15} {cell(agents):>15} {cell(off):>17} {load:>5.2f} {cell(save):>16}")
    if rows:
        n, _, snap, mb, diag, tr, off, _, save, lab_snap, agents = rows[-1]
        print(f"\nat {n} Services: snapshot {snap[0]:.3f} s {mark(snap[0], TARGETS['snapshot'])} "
              f"(--lab, two nodes: {lab_snap[0]:.3f} s), "
              f"diagnose {diag[0]:.3f} s {mark(diag[0], TARGETS['diagnose'])}, trace {tr[0]:.3f} s "
              f"{mark(tr[0], TARGETS['trace'])} (through agents, warm: {agents[0]:.3f} s), bundle {mb:.2f} MB {mark(mb, TARGETS['bundle_mb'])}, "
              f"diagnose --bundle {off[0]:.3f} s; iptables-save -c alone on one node: {save[0]:.3f} s")
        if len(rows) > 1:
            first, last = rows[0], rows[-1]
            def grow(i: int) -> float:  # CPU seconds, last size over first
                return last[i][1] / first[i][1] if first[i][1] else float("nan")

            print(f"CPU growth {first[0]} → {last[0]} Services (x{last[0] / first[0]:g}): snapshot x{grow(2):.1f}, "
                  f"--lab x{grow(9):.1f}, bundle x{last[3] / first[3]:.1f} (size), diagnose x{grow(4):.1f}, "
                  f"trace x{grow(5):.1f}, through agents x{grow(10):.1f}, diagnose --bundle x{grow(6):.1f}, "
                  f"iptables-save x{grow(8):.1f}")
        if sorted_save is not None:
            print(f"the same rules restored from node-a's iptables-save (chains created in name order): "
                  f"iptables-save -c {cell(sorted_save)} against {cell(save)}: iptables-nft-save 1.8.9's "
                  "chain sort at its worst, on any node restored from a dump")
    for note in notes:
        print("note:", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
