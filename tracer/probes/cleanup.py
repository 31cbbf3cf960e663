"""What podpath may leave on a node, and removing it.

Everything podpath attaches is owned by a file descriptor (tcx, tp_btf and netfilter links): the
kernel removes it when the process exits, even on kill -9. The one exception is the clsact
fallback for kernels without tcx: a tc filter outlives its process. Two guards cover it:

- RunLock: every Probes holds a shared flock on /run/podpath/probes.lock. A Probes that finds no
  other holder (it got the lock exclusively first) knows no podpath runs, so any podpath clsact
  filter on a device it attaches to is a leftover, and sweeps it there before attaching.
- `podpath cleanup` (sweep_node): sweeps every device of every named namespace and of the caller's,
  deletes `--nftrace` tables a killed run left, and lists podpath programs still loaded with the
  processes holding them.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
from dataclasses import dataclass, field

from ..errors import NodeError

LOCK_PATH = "/run/podpath/probes.lock"


class RunLock:
    """A shared lock held while probes are loaded; alone = no other podpath process held it."""

    def __init__(self, path: str = LOCK_PATH) -> None:
        self.fd: int | None = None
        self.alone = False
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:  # no /run (or not root): no sweeping, nothing else changes
            return
        # flock(2) converts EX to SH by dropping the lock and taking the new one: another podpath
        # could find the file free in between and think it is alone. The check and the conversion
        # happen under a second lock (the gate), so no one sees that gap.
        gate = os.open(path + ".gate", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(gate, fcntl.LOCK_EX)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.alone = True
            except OSError:
                pass
            fcntl.flock(self.fd, fcntl.LOCK_SH)  # converts the exclusive lock, or waits for none
        finally:
            os.close(gate)  # releases the gate

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass
class SweepReport:
    filters_removed: list[str] = field(default_factory=list)  # "netns/device"
    tables_removed: list[str] = field(default_factory=list)  # "netns/podpath_nftrace_…" (--nftrace)
    programs_loaded: list[dict] = field(default_factory=list)  # {"id", "name", "pids"}
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"filters_removed": self.filters_removed, "tables_removed": self.tables_removed,
                "programs_loaded": self.programs_loaded,
                "errors": self.errors}


def named_namespaces() -> list[str]:
    from ..netns import NETNS_RUN_DIR
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except OSError:
        return []


def sweep_node(namespaces: list[str | None] | None = None) -> SweepReport:
    """Remove podpath's clsact filters from every device of the given namespaces (default: ours
    and every /run/netns one); report podpath programs still loaded and who holds them."""
    from . import libbpf, loaded_podpath_programs
    from .libbpf import ClsactFilter

    report = SweepReport()
    for ns in (namespaces if namespaces is not None else [None] + named_namespaces()):
        def body():
            removed = []
            for _, name in socket.if_nameindex():
                try:
                    if ClsactFilter.sweep(socket.if_nametoindex(name)):
                        removed.append(name)
                except OSError:
                    continue
            return removed
        try:
            for dev in libbpf.in_netns_thread(body, ns):
                report.filters_removed.append(f"{ns or '(root)'}/{dev}")
        except Exception as e:  # a namespace that vanished meanwhile
            report.errors.append(f"{ns}: {e}")
        if ns is not None:
            from .nftables import sweep_tables
            try:
                report.tables_removed += [f"{ns}/{t}" for t in sweep_tables(ns)]
            except (OSError, subprocess.SubprocessError) as e:  # no nft binary
                report.errors.append(f"{ns}: nftrace tables not checked: {e}")
            except NodeError as e:  # the namespace vanished meanwhile (a pod deleted on a busy node)
                report.errors.append(f"{ns}: {e}")
    holders = program_holders()
    for pid, name in loaded_podpath_programs():
        report.programs_loaded.append({"id": pid, "name": name, "pids": sorted(holders.get(pid, []))})
    return report


def program_holders() -> dict[int, set[int]]:
    """BPF program id -> pids with an fd on it (prog or link fds show prog_id in fdinfo)."""
    out: dict[int, set[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            continue
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    for line in f:
                        if line.startswith("prog_id:"):
                            out.setdefault(int(line.split()[1]), set()).add(int(pid))
            except (OSError, ValueError):
                continue
    return out
