"""Parquet storage: one directory per node, one file series per table, rotated by size and time.

The open segment is an Arrow IPC stream (`<table>-<start>.arrows.open`) that gets one record
batch per flush, flushed to the file at once: a killed watch leaves it readable up to its last
whole batch. Rotation turns it into `<table>-<start>.parquet`, one row group per batch, written
beside it and renamed into place, so a closed file is always whole. `recover(DIR)` closes what a
killed watch left open; `read_table` reads closed and open segments alike.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .schema import SCHEMAS

OPEN_SUFFIX = ".arrows.open"


class Segments:
    """One table of one node: append batches, rotate by bytes or seconds."""

    def __init__(self, directory: Path, table: str, *, max_bytes: int, max_seconds: float) -> None:
        self.dir, self.table = directory, table
        self.schema = SCHEMAS[table]
        self.max_bytes, self.max_seconds = max_bytes, max_seconds
        self._file = self._writer = None
        self._path: Path | None = None
        self._opened = 0.0

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time_ns() % 1_000_000_000:09d}"
        self._path = self.dir / f"{self.table}-{stamp}{OPEN_SUFFIX}"
        self._file = open(self._path, "wb")
        self._writer = ipc.new_stream(self._file, self.schema)
        self._opened = time.monotonic()

    def append(self, rows: dict[str, list]) -> None:
        if not rows or not next(iter(rows.values())):
            return
        if self._writer is None:
            self._open()
        self._writer.write_batch(pa.record_batch(rows, schema=self.schema))
        self._file.flush()
        if self._file.tell() >= self.max_bytes or time.monotonic() - self._opened >= self.max_seconds:
            self.rotate()

    def rotate(self) -> Path | None:
        if self._writer is None:
            return None
        self._writer.close()
        self._file.close()
        path, self._writer, self._file = self._path, None, None
        return close_segment(path)

    close = rotate


def _batches(path: Path) -> list[pa.RecordBatch]:
    """Every whole batch of an IPC stream, stopping at a truncated tail."""
    out = []
    try:
        with open(path, "rb") as f:
            reader = ipc.open_stream(f)
            while True:
                try:
                    out.append(reader.read_next_batch())
                except StopIteration:
                    break
    except (pa.ArrowInvalid, OSError, EOFError):
        pass
    return out


def close_segment(path: Path) -> Path | None:
    """An open segment as a Parquet file (one row group per batch); the segment is removed."""
    batches = _batches(path)
    final = path.with_name(path.name.removesuffix(OPEN_SUFFIX) + ".parquet")
    if batches:
        tmp = final.with_suffix(".parquet.tmp")
        with pq.ParquetWriter(tmp, batches[0].schema, compression="zstd") as w:
            for b in batches:
                w.write_batch(b)
        os.replace(tmp, final)
    path.unlink(missing_ok=True)
    return final if batches else None


def recover(directory: str | Path) -> list[Path]:
    """Close every segment a killed watch left open under directory (all nodes)."""
    return [p for p in (close_segment(s) for s in sorted(Path(directory).rglob(f"*{OPEN_SUFFIX}"))) if p]


def read_table(directories, table: str) -> pa.Table:
    """One table over every node directory: closed files and open segments (to their last batch)."""
    parts = []
    for d in directories:
        for p in sorted(Path(d).rglob(f"{table}-*")):
            if p.name.endswith(".parquet"):
                parts.append(pq.read_table(p))
            elif p.name.endswith(OPEN_SUFFIX):
                bs = _batches(p)
                if bs:
                    parts.append(pa.Table.from_batches(bs))
    if not parts:
        return SCHEMAS[table].empty_table()
    return pa.concat_tables([t.cast(SCHEMAS[table]) for t in parts])
