"""Small helpers to act inside a named network namespace without forking where possible.

- `in_netns(ns, fn)`: fn inside ns, through tracer.netns.run_in (the one namespace runner;
  is per thread), so sockets it opens and /proc/sys/net files it writes belong to ns.
- `sysctl_get/sysctl_set`: /proc/sys writes through in_netns (no `sysctl` processes).
- `run(ns, argv)`: a program inside ns (`ip netns exec`), for iptables-restore/-save and servers.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..errors import LabError, NodeError

NETNS_DIR = Path("/run/netns")
T = TypeVar("T")


def ns_path(ns: str) -> Path:
    return NETNS_DIR / ns


def exists(ns: str) -> bool:
    """True when /run/netns/<ns> is a mounted namespace (not a stale empty file). No root needed."""
    p = ns_path(ns)
    try:
        # A bind-mounted nsfs file has a different device than the tmpfs /run/netns directory.
        return os.stat(p).st_dev != os.stat(p.parent).st_dev
    except OSError:
        return False


def in_netns(ns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run fn(*args, **kwargs) in a thread inside namespace ns (tracer.netns.run_in, the one runner)."""
    from ..netns import run_in

    return run_in(ns, lambda: fn(*args, **kwargs))


def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def _key_path(key: str) -> str:
    # Interface names may hold dots (flannel.1): "net.ipv4.conf.flannel.1.rp_filter" is ambiguous, so
    # keys are written with "/" for the device part: "net.ipv4.conf/flannel.1/rp_filter".
    if "/" in key:
        head, dev, leaf = key.split("/")
        return _sysctl_path(head) + "/" + dev + "/" + leaf
    return _sysctl_path(key)


def _read_all(keys: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for k in keys:
        try:
            with open(_key_path(k)) as f:
                out[k] = f.read().strip()
        except OSError:
            out[k] = None
    return out


def _write_changed(values: dict[str, str]) -> dict[str, tuple[str | None, str]]:
    changed = {}
    for k, v in values.items():
        path = _key_path(k)
        try:
            with open(path) as f:
                cur = f.read().strip()
        except OSError:
            cur = None
        if cur != str(v):
            try:
                with open(path, "w") as f:
                    f.write(str(v))
            except OSError as e:
                raise LabError(f"cannot set {k}={v}: {e.strerror}") from None
            changed[k] = (cur, str(v))
    return changed


def sysctl_get(ns: str, keys: list[str]) -> dict[str, str | None]:
    """Read sysctls inside ns; keys like "net.ipv4.ip_forward" or "net.ipv4.conf/flannel.1/rp_filter"."""
    return in_netns(ns, _read_all, list(keys))


def sysctl_set(ns: str, values: dict[str, str | int]) -> dict[str, tuple[str | None, str]]:
    """Write only the sysctls that differ; returns {key: (old, new)} for those changed."""
    return in_netns(ns, _write_changed, {k: str(v) for k, v in values.items()})


def run(ns: str, argv: list[str], input: str | None = None, check: bool = True,
        timeout: float = 20) -> subprocess.CompletedProcess:
    """Run a program inside ns and wait for it (stdout/stderr captured as text)."""
    try:
        p = subprocess.run(["ip", "netns", "exec", ns, *argv], input=input, capture_output=True,
                           text=True, timeout=timeout)
    except FileNotFoundError:
        raise NodeError("`ip` (iproute2) is not installed; install iproute2") from None
    if check and p.returncode != 0:
        msg = (p.stderr or p.stdout).strip().splitlines()
        raise LabError(f"`{' '.join(argv)}` in {ns} failed: {msg[-1] if msg else f'exit {p.returncode}'}")
    return p

