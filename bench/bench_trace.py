#!/usr/bin/env python3
"""Print what `podpath trace` costs on this machine: time to verdict, ns per probe run, throughput.

Targets (issue 3), measured in the same run on a throwaway lab (bt<hex>, torn down at the end):
  - time from command to verdict for a drop with a kernel drop event (forward-drop): under 1 s
  - cost per probe run (kernel.bpf_stats_enabled, run_time_ns / run_cnt per program): under 150 ns
  - lab iperf3 TCP throughput pod-a → pod-b with probes attached / without: at least 97%
Printed, never asserted. Run as root: `.venv/bin/python bench/bench_trace.py [--runs N] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from podpath.tracer.lab.source import LabSource  # noqa: E402

IPERF_PORT = 5201


def median_time(fn, runs: int):
    times, results = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        results.append(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), results


def median_timings(traces) -> dict:
    keys = ("snapshot_ms", "diagnose_ms", "load_ms", "attach_ms", "send_ms", "wait_ms", "verdict_ms", "close_ms")
    out = {}
    for k in keys:
        vals = [t.timings[k] for t in traces if k in t.timings]
        if vals:
            out[k] = statistics.median(vals)
    return out


def cli_to_verdict(cli: list[str], markers=("verdict:",)):
    """Run the CLI; seconds from spawn until its verdict line is on stdout (it is printed before the
    probes are closed), and the process with its exit code and total wall time."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    at = None
    for line in proc.stdout:
        if at is None and line.startswith(markers):
            at = time.perf_counter() - t0
    proc.wait()
    proc.wall = time.perf_counter() - t0
    return (at if at is not None else float("inf")), proc


def median_cli(cli: list[str], runs: int, markers=("verdict:",)):
    got = [cli_to_verdict(cli, markers) for _ in range(runs)]
    return statistics.median(g[0] for g in got), statistics.median(g[1].wall for g in got), [g[1] for g in got]


def sysctl_get(key: str) -> str:
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return f.read().strip()


def sysctl_set(key: str, value: str) -> None:
    with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(value)


def prog_stats() -> dict[int, dict]:
    """id → bpftool prog entry, for podpath's programs only."""
    from podpath.tracer.probes import PROGRAM_NAMES
    names = {n[:15] for n in PROGRAM_NAMES}
    progs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True).stdout or "[]")
    return {p["id"]: p for p in progs if p.get("name") in names}


def stats_delta(before: dict[int, dict], after: dict[int, dict]) -> dict[str, tuple[int, int]]:
    """name → (run_time_ns, run_cnt) accumulated between two snapshots, summed over programs of that name."""
    out: dict[str, list[int]] = {}
    for pid, p in after.items():
        b = before.get(pid, {})
        rt = p.get("run_time_ns", 0) - b.get("run_time_ns", 0)
        rc = p.get("run_cnt", 0) - b.get("run_cnt", 0)
        acc = out.setdefault(p["name"], [0, 0])
        acc[0] += rt
        acc[1] += rc
    return {k: (v[0], v[1]) for k, v in sorted(out.items())}


def iperf(lab, seconds: int) -> tuple[float, str]:
    """TCP throughput pod-a → pod-b in bits/s (receiver side), server in pod-b; ('', error) on failure."""
    dst_ip = next(p.ip for p in lab.inventory().pods if p.name == "pod-b")
    srv = subprocess.Popen(["ip", "netns", "exec", lab.netns("pod-b"), "iperf3", "-s", "-1", "-p", str(IPERF_PORT),
                            "-B", dst_ip], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        cli = None
        for _ in range(40):  # wait for the server to listen
            time.sleep(0.1)
            cli = subprocess.run(["ip", "netns", "exec", lab.netns("pod-a"), "iperf3", "-c", dst_ip, "-p",
                                  str(IPERF_PORT), "-t", str(seconds), "-J"], capture_output=True, text=True)
            if cli.returncode == 0 or "Connection refused" not in (cli.stdout + cli.stderr):
                break
        data = json.loads(cli.stdout or "{}")
        if cli.returncode != 0 or "error" in data:
            return 0.0, data.get("error") or cli.stderr.strip()
        return float(data["end"]["sum_received"]["bits_per_second"]), ""
    finally:
        try:
            srv.wait(timeout=5)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


def path_plan(lab):
    """The session request a trace of pod-a → pod-b makes: devices for tc, netfilter brackets."""
    from podpath.tracer.diagnose import diagnose
    from podpath.tracer.lab.source import lab_snapshot
    from podpath.tracer.trace import plan
    bundle = lab_snapshot(lab.name)
    req, _, _ = plan(bundle, diagnose(bundle, "pod-a", "pod-b"))
    return req


def attached_probes(lab, req, icmp_id: int, tc: bool = True, tracepoints: bool = True,
                    netfilter: bool = True, pool=None):
    """Probes as a trace of pod-a → pod-b ICMP loads them: tc on every path device, the netfilter
    brackets in every namespace of the path, and the tracepoints (with the path's next hops).
    pool: an agent's ProbePool (its build of the objects, the filter written after load)."""
    from podpath.tracer.probes import Filter, Probes
    pods = {p.name: p for p in lab.inventory().pods}
    p = Probes(Filter(saddr=pods["pod-a"].ip, daddr=pods["pod-b"].ip, proto="icmp", icmp_id=icmp_id, bidir=True,
                      neigh_addrs=tuple(lab.path_nexthops(["pod-a", "pod-b"]))), netfilter=netfilter, pool=pool)
    try:
        for ns, dev in req.attach if tc else ():
            p.attach_tc(ns, dev)
        if netfilter:
            for ns, spec in req.nf_plan.items():
                p.attach_netfilter(ns, spec["hooks"], match=spec["match"])
        if tracepoints:
            p.attach_tracepoints()
    except BaseException:
        p.close()
        raise
    return p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="repetitions per time-to-verdict figure (median)")
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 -t")
    ap.add_argument("--rounds", type=int, default=2,
                    help="iperf3 without/with rounds (alternating; median of each side)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (builds network namespaces, loads BPF programs)", file=sys.stderr)
        return 4
    from podpath.tracer.lab import Lab
    from podpath.tracer.probes import loaded_podpath_programs
    from podpath.tracer.trace import trace

    name = "bt" + secrets.token_hex(2)[:3]
    lab = Lab(name)
    rows: list[tuple[str, str, str]] = []  # label, figure, target+verdict
    notes: list[str] = []
    stats_key = "kernel.bpf_stats_enabled"
    stats_before = None
    cli = [os.path.join(os.path.dirname(sys.executable), "podpath"), "trace", "pod-a", "pod-b", "--lab", name]
    try:
        t0 = time.perf_counter()
        lab.up()
        rows.append(("lab up (cold)", f"{time.perf_counter() - t0:.3f} s", ""))

        # (a) time from command to verdict ----------------------------------------------------------
        def verdict_row(label, secs, target=None):
            mark = "" if target is None else f"< {target:g} s {'ok' if secs < target else 'OVER'}"
            rows.append((label, f"{secs:.3f} s", mark))

        trace("pod-a", "pod-b", source=LabSource(name))  # warm-up (imports, page cache)
        t, healthy = median_time(lambda: trace("pod-a", "pod-b", source=LabSource(name)), args.runs)
        verdict_row(f"trace healthy, in process (median of {args.runs})", t)
        statuses = {x.verdict.status for x in healthy}
        if statuses != {"delivered"}:
            notes.append(f"healthy trace verdicts: {statuses}")
        t, wall, procs = median_cli(cli, args.runs)
        verdict_row("`podpath trace pod-a pod-b` healthy, CLI command to verdict", t)
        verdict_row("  same, CLI exit (after closing the probes)", wall)
        lab.inject("forward-drop")
        try:
            t, dropped = median_time(lambda: trace("pod-a", "pod-b", source=LabSource(name)), args.runs)
            verdict_row("trace forward-drop (kernel drop event), in process", t, 1.0)
            statuses = {(x.verdict.status, x.verdict.drop_reason) for x in dropped}
            if statuses != {("dropped", "NETFILTER_DROP")}:
                notes.append(f"forward-drop verdicts: {statuses}")
            t, wall, procs = median_cli(cli, args.runs)
            verdict_row("`podpath trace pod-a pod-b` forward-drop, CLI command to verdict", t, 1.0)
            verdict_row("  same, CLI exit (after closing the probes)", wall)
            if {p.returncode for p in procs} != {1}:
                notes.append(f"CLI exit codes with forward-drop: {[p.returncode for p in procs]} (expected 1)")
        finally:
            lab.clear("forward-drop")
        # time to a DNS verdict: `podpath dns pod-a web`, answered and with DNS blocked on node-b
        dns_cli = [cli[0], "dns", "pod-a", "web", "--lab", name]
        t, wall, procs = median_cli(dns_cli, args.runs, ("answer:", "lookup failed:"))
        verdict_row("`podpath dns pod-a web` answered, command to answer", t)
        lab.inject("dns-blocked")
        try:
            t, wall, procs = median_cli(dns_cli, args.runs, ("answer:", "lookup failed:"))
            verdict_row("`podpath dns pod-a web` dns-blocked, command to verdict (1 s timeout)", t)
            if {p.returncode for p in procs} != {1}:
                notes.append(f"dns exit codes with dns-blocked: {[p.returncode for p in procs]} (expected 1)")
        finally:
            lab.clear("dns-blocked")
        for label, traces in (("healthy", healthy), ("forward-drop", dropped)):
            mt = median_timings(traces)
            rows.append((f"  breakdown {label} (median ms)", "", " ".join(f"{k[:-3]}={v:.0f}" for k, v in mt.items())))

        # (b) cost per probe run, (c) throughput with / without -------------------------------------
        devices = path_plan(lab)
        rows.append(("path devices probed (tc ingress+egress each)", str(len(devices.attach)), ""))
        rows.append(("netfilter bracket links (fitted to each namespace's tables)",
                     str(sum(len(b) for spec in devices.nf_plan.values() for b in spec["hooks"].values())), ""))
        t0 = time.perf_counter()
        p = attached_probes(lab, devices, icmp_id=0x7A7A)
        t_attach = time.perf_counter() - t0
        t0 = time.perf_counter()
        p.close()
        rows.append(("  load+attach probes / close (detach+unload)",
                     f"{t_attach:.3f} s", f"close {time.perf_counter() - t0:.3f} s"))

        # (c) throughput, with kernel.bpf_stats_enabled as it was (stats accounting costs time per run)
        bps = {"without": [], "with": []}
        for rnd in range(args.rounds):
            b, err = iperf(lab, args.seconds)
            if err:
                notes.append(f"iperf3 without probes (round {rnd + 1}): {err}")
            bps["without"].append(b)
            p = attached_probes(lab, devices, icmp_id=0x7A7A)
            try:
                b, err = iperf(lab, args.seconds)
            finally:
                p.close()
            if err:
                notes.append(f"iperf3 with probes (round {rnd + 1}): {err}")
            bps["with"].append(b)

        # where the cost is: tc probes alone, tracepoints alone (one run each, for attribution only)
        parts = {}
        for label, kw in (("tc only", dict(tracepoints=False, netfilter=False)),
                          ("netfilter brackets only", dict(tc=False, tracepoints=False)),
                          ("tracepoints only", dict(tc=False, netfilter=False))):
            p = attached_probes(lab, devices, icmp_id=0x7A7A, **kw)
            try:
                parts[label], _ = iperf(lab, args.seconds)
            finally:
                p.close()

        # (b) cost per probe run: stats on, one iperf3 run (not matched) and one ping flood (matched)
        stats_before = sysctl_get(stats_key)
        sysctl_set(stats_key, "1")
        p = attached_probes(lab, devices, icmp_id=0x7A7A)
        try:
            s0 = prog_stats()
            b, err = iperf(lab, args.seconds)
            if err:
                notes.append(f"iperf3 with probes and stats: {err}")
            per_prog = stats_delta(s0, prog_stats())
            rows.append(("iperf3 with probes and bpf_stats_enabled=1", f"{b / 1e9:.2f} Gb/s", ""))
            s0 = prog_stats()
            ping = subprocess.Popen(["ip", "netns", "exec", lab.netns("pod-a"), "ping", "-q", "-f", "-c", "3000",
                                     "-e", str(0x7A7A), "-W", "1",
                                     next(x.ip for x in lab.inventory().pods if x.name == "pod-b")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while ping.poll() is None:
                p.poll(20)
                p.events.clear()
            p.poll(20)
            flood = stats_delta(s0, prog_stats())
            lost = p.lost()
        finally:
            p.close()
            sysctl_set(stats_key, stats_before)

        rows.append(("cost per probe run, iperf3 traffic (not matched)", "", ""))
        for k, (rt, rc) in per_prog.items():
            ns = rt / rc if rc else float("nan")
            rows.append((f"  {k} ({rc} runs)", f"{ns:.0f} ns", f"< 150 ns {'ok' if ns < 150 else 'OVER'}"))
        rows.append(("cost per probe run, ping -f with the trace's id (matched)", "", ""))
        for k, (rt, rc) in flood.items():
            ns = rt / rc if rc else float("nan")
            rows.append((f"  {k} ({rc} runs)", f"{ns:.0f} ns", f"< 150 ns {'ok' if ns < 150 else 'OVER'}"))
        rows.append(("  ring buffer reservations lost during the flood", str(lost), "(this script's Python reader)"))
        wo, wi = statistics.median(bps["without"]), statistics.median(bps["with"])
        rows.append((f"iperf3 pod-a → pod-b without probes (median of {args.rounds} x {args.seconds} s)",
                     f"{wo / 1e9:.2f} Gb/s", " ".join(f"{x / 1e9:.2f}" for x in bps["without"])))
        rows.append(("iperf3 pod-a → pod-b with probes on the path devices", f"{wi / 1e9:.2f} Gb/s",
                     " ".join(f"{x / 1e9:.2f}" for x in bps["with"])))
        ratio = wi / wo if wo else float("nan")
        rows.append(("  ratio with / without", f"{ratio * 100:.1f} %", f">= 97 % {'ok' if ratio >= 0.97 else 'OVER'}"))
        for label, b in parts.items():
            rows.append((f"  attribution: {label} (1 x {args.seconds} s)", f"{b / 1e9:.2f} Gb/s",
                         f"{b / wo * 100:.1f} % of without" if wo else ""))
    finally:
        if stats_before is not None:
            sysctl_set(stats_key, stats_before)
        t0 = time.perf_counter()
        lab.down()
        rows.append(("lab down", f"{time.perf_counter() - t0:.3f} s", ""))
        left = loaded_podpath_programs()
        if left:
            notes.append(f"podpath programs still loaded at the end: {left}")
    print(f"{'measure':<62} {'figure':>11}  target")
    for label, fig, target in rows:
        print(f"{label:<62} {fig:>11}  {target}")
    for n in notes:
        print(f"note: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
