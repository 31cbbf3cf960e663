#!/usr/bin/env python3
"""Print how long the static half takes on this machine: lab up, snapshot, diagnose, lab down.

Targets (issue 2): lab up, snapshot and diagnose each under 2 s on a 2-core machine. Printed,
never asserted. Run as root: `.venv/bin/python bench/bench_static.py [--runs N]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid


def timed(fn, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="repetitions for snapshot and diagnose (median)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (builds network namespaces)", file=sys.stderr)
        return 4
    from podpath.tracer.diagnose import diagnose
    from podpath.tracer.lab import Lab
    from podpath.tracer.lab.source import lab_snapshot

    name = "b" + uuid.uuid4().hex[:4]
    lab = Lab(name)
    rows = []
    try:
        t0 = time.perf_counter()
        lab.up()
        rows.append(("lab up (cold)", time.perf_counter() - t0, 2.0))
        t, _ = timed(lab.up, 1)
        rows.append(("lab up (already up)", t, 2.0))
        t, bundle = timed(lambda: lab_snapshot(name), args.runs)
        rows.append((f"snapshot ({len(bundle.hosts)} namespaces)", t, 2.0))
        t, _ = timed(lambda: diagnose(bundle, "pod-a", "pod-b"), args.runs)
        rows.append(("diagnose pod-a → pod-b (bundle in memory)", t, 2.0))
        t, _ = timed(lambda: diagnose(bundle, "pod-a", "svc/default/web:80"), args.runs)
        rows.append(("diagnose pod-a → svc/default/web (2 endpoints)", t, 2.0))
        t, _ = timed(lambda: diagnose(lab_snapshot(name), "pod-a", "pod-b"), args.runs)
        rows.append(("snapshot + diagnose (in process)", t, 2.0))
        cli = [os.path.join(os.path.dirname(sys.executable), "podpath"), "diagnose", "pod-a", "pod-b", "--lab", name]
        t, _ = timed(lambda: subprocess.run(cli, capture_output=True), args.runs)
        rows.append(("`podpath diagnose pod-a pod-b` end to end (CLI)", t, 2.0))
    finally:
        t0 = time.perf_counter()
        lab.down()
        rows.append(("lab down", time.perf_counter() - t0, None))
    print(f"{'step':<50} {'seconds':>8}  target")
    for label, secs, target in rows:
        verdict = "" if target is None else ("ok" if secs < target else "OVER")
        print(f"{label:<50} {secs:8.3f}  {'< %.0f s %s' % (target, verdict) if target else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
