"""The lab's state file /run/podpath/labs/<lab>.json and its lock.

{"lab": "pp", "version": 1, "created": ISO time, "inventory": Inventory as JSON,
 "faults": ["fdb-missing", ...],            # injected, in injection order
 "saved": {"neigh-failed": {...}}}          # what a fault's inject saved for its clear
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..bundle import Inventory, from_dict
from .topology import RUN_ROOT, Names

STATE_VERSION = 1


@dataclass
class LabState:
    lab: str
    inventory: Inventory
    created: str = ""
    faults: list[str] = field(default_factory=list)
    saved: dict[str, Any] = field(default_factory=dict)
    version: int = STATE_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read(names: Names) -> LabState | None:
    try:
        raw = json.loads(names.state_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
        return None
    try:
        return LabState(lab=raw["lab"], inventory=from_dict(Inventory, raw["inventory"]),
                        created=raw.get("created", ""), faults=list(raw.get("faults", [])),
                        saved=dict(raw.get("saved", {})))
    except (KeyError, TypeError, ValueError):
        return None


def write(names: Names, st: LabState) -> None:
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    tmp = names.state_file.with_suffix(".json.tmp")
    tmp.write_text(st.to_json() + "\n")
    os.replace(tmp, names.state_file)


def remove(names: Names) -> None:
    names.state_file.unlink(missing_ok=True)
    names.state_file.with_suffix(".json.tmp").unlink(missing_ok=True)


@contextlib.contextmanager
def locked(names: Names) -> Iterator[None]:
    """Serialise up/down/inject/clear of one lab across processes."""
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    path = RUN_ROOT / f".{names.lab}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def remove_lock(names: Names) -> None:
    (RUN_ROOT / f".{names.lab}.lock").unlink(missing_ok=True)
