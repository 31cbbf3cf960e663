"""The lab's processes: dnsmasq in coredns, a tiny HTTP server on :8080 in pod-a2 and pod-b, one
holder per pod (its pause container), and the stand-in API server in the control-plane namespace.

Each runs under `ip netns exec <netns>` (so it also sees /etc/netns/<netns>/*) and writes a pid
file in /run/podpath/labs/<lab>/ once ready (sockets bound); `spawn` waits for it.
A pid counts as ours only while it is alive (not a zombie) *inside that pod's namespace*, so a
reused pid never fools `up` or `down`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..errors import LabError, NodeError
from ..netns import inode
from .dns import dnsmasq_argv
from .topology import WEB_PORT, Names, PodSpec

WEB_SERVER = Path(__file__).with_name("webserver.py")
HOLDER = Path(__file__).with_name("holder.py")

_children: dict[int, subprocess.Popen] = {}  # servers this process started, reaped on stop


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive_in(pid: int | None, ns: str) -> bool:
    """pid runs (not a zombie) and lives in network namespace ns."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
        ino = inode(f"/proc/{pid}/ns/net")
        return ino is not None and ino == inode(ns)
    except (OSError, IndexError):
        return False


def server_pid(names: Names, p: PodSpec) -> int | None:
    """The pid of p's server if it runs, else None."""
    pid = read_pid(names.pid_file(p.name))
    return pid if alive_in(pid, names.netns(p.name)) else None


def _argv(names: Names, p: PodSpec) -> list[str]:
    pid_file = names.pid_file(p.name)
    if p.server == "dns":
        return dnsmasq_argv(p, pid_file)
    if p.server == "web":
        return [sys.executable, "-I", "-S", str(WEB_SERVER), p.ip, str(WEB_PORT), p.name, str(pid_file)]
    raise ValueError(f"pod {p.name} runs no server")


def _is_ours(pid: int, pid_file: Path) -> bool:
    """pid runs a lab server: its command line names this pid file (dnsmasq and webserver.py both do)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return str(pid_file).encode() in f.read() and _running(pid)
    except OSError:
        return False


def start(names: Names, p: PodSpec, timeout: float = 5.0) -> int:
    """Start p's server unless it already runs; return its pid once its sockets are bound."""
    pid = server_pid(names, p)
    if pid:
        return pid
    return spawn(names.netns(p.name), _argv(names, p), names.pid_file(p.name), names.log_file(p.name),
                 f"the {p.server} server of {p.name}", timeout)


def holder_pid(names: Names, p: PodSpec) -> int | None:
    """The pid of p's holder (its pause container) if it runs, else None."""
    pid = read_pid(names.holder_pid_file(p.name))
    return pid if alive_in(pid, names.netns(p.name)) else None


def start_holder(names: Names, p: PodSpec, timeout: float = 5.0) -> int:
    pid = holder_pid(names, p)
    if pid:
        return pid
    pid_file = names.holder_pid_file(p.name)
    return spawn(names.netns(p.name), [sys.executable, "-I", "-S", str(HOLDER), p.name, str(pid_file)],
                 pid_file, names.run_dir / f"{p.name}.holder.log", f"the holder of {p.name}", timeout)


def stop_holder(names: Names, p: PodSpec) -> bool:
    return stop_file(names.holder_pid_file(p.name))


def spawn(ns: str, argv: list[str], pid_file: Path, log_file: Path, what: str, timeout: float = 5.0) -> int:
    """Run argv inside ns (`ip netns exec`), detached; return its pid once it wrote pid_file."""
    old = read_pid(pid_file)
    if old and _is_ours(old, pid_file):  # still running in a namespace that was deleted and recreated
        stop_pid(old)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.unlink(missing_ok=True)
    log = open(log_file, "ab")
    try:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True, close_fds=True)
    except FileNotFoundError as e:
        raise NodeError(f"cannot start {what}: {e.filename} is not installed") from None
    finally:
        log.close()
    _children[proc.pid] = proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = read_pid(pid_file)
        if pid and alive_in(pid, ns):
            return pid
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    tail = ""
    try:
        tail = log_file.read_text().strip().splitlines()[-1]
    except (OSError, IndexError):
        pass
    stop_pid(proc.pid, ns)
    raise LabError(f"{what} did not start{': ' + tail if tail else ''} (log: {log_file})")


def stop_pid(pid: int, ns: str | None = None, timeout: float = 3.0) -> None:
    """SIGTERM (then SIGKILL) pid and wait until it is gone; reaps it if we started it."""
    if ns is not None and not alive_in(pid, ns):
        _reap(pid)
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not _running(pid):
                _reap(pid)
                return
            time.sleep(0.005)
    _reap(pid)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _reap(pid: int) -> None:
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _children.pop(pid, None)
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(names: Names, p: PodSpec) -> bool:
    """Stop p's server if it runs (wherever its namespace went); remove its pid file. True if stopped."""
    return stop_file(names.pid_file(p.name))


def stop_file(pid_file: Path) -> bool:
    """Stop the lab process named by pid_file if it runs; remove the pid file. True if stopped."""
    pid = read_pid(pid_file)
    stopped = False
    if pid and _is_ours(pid, pid_file):
        stop_pid(pid)
        stopped = True
    pid_file.unlink(missing_ok=True)
    return stopped
