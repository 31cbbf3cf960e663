#!/usr/bin/env python3
"""Record the catalog's traces as fixtures (tests/fixtures/sessions/<name>.json.gz): a healthy trace
and one per catalog fault, each the snapshot, the session's events and correlate's verdict, so
tests/unit/test_replay.py re-runs correlation without root. Run as root on a lab machine:
`.venv/bin/python scripts/record_sessions.py` (builds and removes its own lab)."""

from __future__ import annotations

import gzip
import json
import os
import sys
import uuid
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sessions"


def main() -> int:
    if os.geteuid() != 0:
        print("record_sessions: needs root (builds the netns lab, loads BPF)", file=sys.stderr)
        return 4
    from podpath.tracer.lab import FAULTS, Lab
    from podpath.tracer.lab.source import LabSource
    from podpath.tracer.trace import trace

    lab = Lab("rs" + uuid.uuid4().hex[:4])
    lab.up()
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        def record(name: str, src: str, dst: str, **flow) -> None:
            box: dict = {}
            trace(src, dst, source=LabSource(lab.name), record=box.update, **flow)
            with gzip.open(OUT / f"{name}.json.gz", "wt") as f:
                json.dump(box, f, separators=(",", ":"))
            print(f"{name}: {box['verdict']['status']} {box['verdict']['cause']}", file=sys.stderr)

        record("healthy", "pod-a", "pod-b")
        for name, fault in sorted(FAULTS.items()):
            f = fault.flow
            lab.inject(name)
            try:
                record(name, f.src, f.dst, proto=f.proto if f.proto != "icmp" else None, port=f.port,
                       size=f.size + 28 if f.size else None, sport=f.sport)
            finally:
                lab.clear(name)
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
