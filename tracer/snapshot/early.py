"""A bundle's slowest reader, started before anything else.

`iptables-nft-save -c` of a node with 10,000 Services takes 0.75 s, two thirds of it in the kernel
serialising 110,000 rules; the rest of that node's snapshot reads in 0.3 s, after 0.25 s of Python
start-up and imports. So `podpath snapshot` starts the save in the namespaces it knows at once
(this node's own, or the lab's nodes) before importing the rest of podpath, and the iptables
collector takes that output (claim) instead of starting its own. It reads the same tool in the
same namespace, a few hundred milliseconds earlier: every reader of a snapshot runs at its own
moment anyway. What nobody claimed is killed and reaped when the snapshot ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from contextlib import contextmanager
from typing import Iterator

from ..netns import in_thread, open_netns, enter

TOOL = "iptables-nft-save"
_lock = threading.Lock()
_started: dict[int, subprocess.Popen] = {}  # namespace inode -> the save running there


def tool_env() -> dict[str, str]:
    """The environment a snapshot's tools run in: the PATH, and C messages (their errors are quoted)."""
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C"}


def _start(netns: str | None) -> None:
    exe = shutil.which(TOOL)
    if exe is None:
        return
    fd = open_netns(netns)
    try:
        ino = os.fstat(fd).st_ino

        def spawn() -> subprocess.Popen:  # in a thread that entered the namespace: the child inherits it
            enter(fd, netns or "this node")
            return subprocess.Popen([exe, "-c"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tool_env())

        proc = in_thread(spawn)
    finally:
        os.close(fd)
    with _lock:
        _started[ino] = proc


def claim(ino: int, timeout: float) -> str | None:
    """The output of the save started early in namespace `ino`, or None (none started there, or it
    failed: the collector then runs its own and reports what that says)."""
    with _lock:
        proc = _started.pop(ino, None)
    if proc is None:
        return None
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    return out.decode(errors="replace") if proc.returncode == 0 else None


@contextmanager
def saves_started(namespaces: list[str | None]) -> Iterator[None]:
    """Start the save in each namespace (None: this one) for the block's snapshot to claim; a
    namespace that cannot be opened is left to the snapshot, which says why."""
    for netns in namespaces if os.geteuid() == 0 else ():  # a snapshot needs root; it says so
        try:
            _start(netns)
        except Exception:  # noqa: BLE001 - only a head start; the collector reads it otherwise
            continue
    try:
        yield
    finally:
        with _lock:
            left = list(_started.values())
            _started.clear()
        for proc in left:
            proc.kill()
            proc.communicate()
