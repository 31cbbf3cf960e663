"""Names for what the kernel counts by number: drop reasons, kernel addresses, namespace inodes
and ifindexes. Each is read once and cached; a miss re-reads (a device created since)."""

from __future__ import annotations

import bisect
import socket
from dataclasses import dataclass

from ..netns import run_in
from ..probes import libbpf


def drop_reasons() -> dict[int, str]:
    """enum skb_drop_reason from the running kernel's BTF, without the SKB_DROP_REASON_ prefix."""
    try:
        values = libbpf.vmlinux_enum("skb_drop_reason")
    except Exception:  # a kernel without BTF for it: numbers stay numbers
        return {}
    return {v: n.removeprefix("SKB_DROP_REASON_") for v, n in values.items()}


class Kallsyms:
    """Kernel text addresses to `function+0xoff` (needs root to see real addresses)."""

    def __init__(self, path: str = "/proc/kallsyms") -> None:
        self._addrs: list[int] = []
        self._names: list[str] = []
        self._cache: dict[int, str] = {}
        try:
            rows = []
            with open(path) as f:
                for line in f:
                    a, t, name = line.split()[:3]
                    if t in "tT" and int(a, 16):
                        rows.append((int(a, 16), name))
            rows.sort()
            self._addrs = [a for a, _ in rows]
            self._names = [n for _, n in rows]
        except OSError:
            pass

    def __call__(self, addr: int) -> str:
        s = self._cache.get(addr)
        if s is None:
            i = bisect.bisect_right(self._addrs, addr) - 1
            s = f"{self._names[i]}+{addr - self._addrs[i]:#x}" if i >= 0 else f"{addr:#x}"
            self._cache[addr] = s
        return s


@dataclass(frozen=True)
class Place:
    """Who a network namespace is: the node it belongs to, and the pod (None: the node itself)."""
    node: str
    pod: str | None = None
    namespace: str | None = None  # the pod's Kubernetes namespace
    netns: str | None = None  # how to enter it (None: podpath's own)


class Devices:
    """(netns inode, ifindex) -> device name, read inside each namespace on a miss."""

    def __init__(self, places: dict[int, Place]) -> None:
        self.places = places
        self._names: dict[int, dict[int, str]] = {}

    def name(self, inode: int, ifindex: int) -> str | None:
        if not ifindex:
            return None
        got = self._names.get(inode, {}).get(ifindex)
        if got is None and inode in self.places:
            try:
                self._names[inode] = dict(run_in(self.places[inode].netns, socket.if_nameindex))
            except Exception:  # the namespace is gone: keep the number
                self._names[inode] = {}
            got = self._names[inode].get(ifindex)
        return got if got is not None else f"if{ifindex}"


