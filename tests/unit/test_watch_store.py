"""Storage survives a SIGKILL: a writer process killed mid-segment leaves every rotated file a
whole Parquet file and its open segment readable up to the last batch, which `recover` closes.
A real process and a real signal; no root needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq

from podpath.tracer.watch.store import OPEN_SUFFIX, read_table, recover

WRITER = r"""
import sys, time
from pathlib import Path
from podpath.tracer.watch.store import Segments
seg = Segments(Path(sys.argv[1]), "changes", max_bytes=1 << 30, max_seconds=0.5)
n = 0
while True:
    seg.append({"time": [time.time_ns()], "node_name": ["node-a"], "kind": ["rule"], "action": ["add"],
                "object": [f"row {n}"], "detail": [""]})
    # the parent knows which rows were written, and whether a segment is open (it kills during the sleep)
    print(n, int(seg._writer is not None), flush=True)
    n += 1
    time.sleep(0.05)
"""


def test_sigkill_leaves_closed_files_whole_and_the_open_one_recoverable(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "node-a")], stdout=subprocess.PIPE, text=True)
    try:
        written = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # >= 1.5 s: several rotations, then a kill with a segment open
            n, is_open = map(int, p.stdout.readline().split())
            written.append(n)
            if len(written) >= 30 and is_open:
                break
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    closed = sorted((tmp_path / "node-a").glob("*.parquet"))
    opened = sorted((tmp_path / "node-a").glob(f"*{OPEN_SUFFIX}"))
    assert len(closed) >= 2 and len(opened) == 1
    for f in closed:  # whole files, each batch a row group
        meta = pq.ParquetFile(f).metadata
        assert meta.num_row_groups == meta.num_rows >= 1
    rows = read_table([tmp_path], "changes").column("object").to_pylist()
    assert rows[:len(written)] == [f"row {n}" for n in written]  # nothing acknowledged is lost
    made = recover(tmp_path)
    assert made and not list(tmp_path.rglob(f"*{OPEN_SUFFIX}"))
    assert read_table([tmp_path], "changes").column("object").to_pylist() == rows
