"""Entering network namespaces: one thread at a time, never the main thread.

setns(2) moves only the calling thread, and everything that thread opens afterwards (netlink,
sock_diag and BPF link sockets, /proc/sys/net, child processes) belongs to the namespace it
entered. So podpath opens the namespace's fd up front (a missing one fails fast with one line),
then runs the work in a short-lived thread that enters it and dies. Measured here: 5 ms per
namespace, against 17 ms for pyroute2's IPRoute(netns=...), which forks a helper per socket.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
from typing import Any, Callable

from .errors import NodeError, PermissionNeeded

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000

def load_libc() -> ctypes.CDLL:
    """libc, by glibc's soname first: ctypes.util.find_library runs `ldconfig -p` (~30 ms, at every
    podpath start-up); it is asked only where that name is not libc (musl)."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


_libc = load_libc()


# The namespace podpath itself runs in (the node, on a node), as probes and sessions name it: the
# main thread's, which never setns()s. Host.netns is None for it (fix commands need no prefix).
OWN_NETNS = "/proc/self/ns/net"


def probe_netns(host) -> str:
    """How probes, the injector and sessions name a snapshot host's namespace."""
    return host.netns or OWN_NETNS


def netns_path(netns: str) -> str:
    return netns if "/" in netns else os.path.join(NETNS_RUN_DIR, netns)


def inode(netns: str | None) -> int | None:
    """The nsfs inode of a namespace (what BPF events carry): a /run/netns name, a path, or None for
    the calling thread's own; None when it does not exist."""
    try:
        return os.stat(netns_path(netns) if netns else "/proc/thread-self/ns/net").st_ino
    except OSError:
        return None


def existing_inode(netns: str | None) -> int:
    """inode(), for a namespace that must exist: one that is gone is a NodeError."""
    ino = inode(netns)
    if ino is None:
        raise NodeError(f"network namespace '{netns}' is gone")
    return ino


def open_netns(netns: str | None) -> int:
    """An fd for a named namespace (/run/netns/NAME), a path, or None for the calling thread's."""
    if netns is None:
        return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NodeError(f"network namespace '{netns}' does not exist; list them with `ip netns list`") from None
    except PermissionError:
        raise PermissionNeeded(f"cannot open network namespace '{netns}'; run podpath as root") from None


def enter(fd: int, netns: str | None = None) -> None:
    """setns() the calling thread into the namespace behind fd."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        if err == errno.EPERM:
            raise PermissionNeeded(f"entering network namespace '{netns}' needs CAP_SYS_ADMIN; run podpath as root")
        raise NodeError(f"cannot enter network namespace '{netns}': {os.strerror(err)}")


def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run fn(*args) in a fresh thread (which may setns freely and then dies); re-raise its error."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=body, name="podpath-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def run_in(netns: str | None, fn: Callable[[], Any]) -> Any:
    """fn() inside the namespace (None = stay in ours), from a thread that enters it and dies."""
    if netns is None:
        return in_thread(fn)
    fd = open_netns(netns)

    def body() -> Any:
        enter(fd, netns)
        return fn()

    try:
        return in_thread(body)
    finally:
        os.close(fd)
