"""The kernel half of `podpath watch`: bpf/watch.bpf.o loaded, tp_btf/kfree_skb attached, its
per-CPU drop counters read and its sampled events decoded.

    with DropCounter(samples_per_sec=1000) as k:
        totals = k.read()           # {DropKey: (packets, bytes)}, cumulative since load
        k.poll(100)                 # list[DropSample] taken from the ring buffer
        k.stats()                   # {"sampled", "rate_limited", "ringbuf_lost", "flow_folded", "uncounted"}

The counters are exact: every kfree_skb goes through the hash map; only the full events are
sampled. The ctypes mirrors below match bpf/watch.h (tests/unit/test_watch_layout.py checks them
against the object's BTF).
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import time
from dataclasses import dataclass

from ..probes import libbpf, object_path

STAT_NAMES = ("sampled", "rate_limited", "ringbuf_lost", "flow_folded", "uncounted")  # PW_STAT_* order
PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}


class RawKey(ctypes.Structure):
    _fields_ = [("netns", ctypes.c_uint32), ("ifindex", ctypes.c_uint32), ("reason", ctypes.c_uint32),
                ("l3_proto", ctypes.c_uint16), ("l4_proto", ctypes.c_uint8), ("_pad0", ctypes.c_uint8),
                ("location", ctypes.c_uint64), ("saddr", ctypes.c_uint8 * 16), ("daddr", ctypes.c_uint8 * 16),
                ("sport", ctypes.c_uint16), ("dport", ctypes.c_uint16), ("_pad1", ctypes.c_uint32)]


class RawVal(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


class RawEvent(ctypes.Structure):
    _fields_ = [("ts_ns", ctypes.c_uint64), ("key", RawKey), ("len", ctypes.c_uint32), ("mark", ctypes.c_uint32),
                ("cpu", ctypes.c_uint32), ("_pad0", ctypes.c_uint32)]


class RawConfig(ctypes.Structure):
    _fields_ = [("samples_per_sec", ctypes.c_uint32), ("_pad0", ctypes.c_uint32)]


@dataclass(frozen=True, slots=True)
class DropKey:
    netns: int
    ifindex: int
    reason: int
    l3_proto: int
    l4_proto: int
    location: int
    saddr: str | None
    daddr: str | None
    sport: int
    dport: int


@dataclass(slots=True)
class DropSample:
    ts_ns: int  # CLOCK_MONOTONIC
    key: DropKey
    len: int
    mark: int
    cpu: int


_ZERO16 = bytes(16)


def _ip(raw: bytes, l3: int) -> str | None:
    """The address the probe copied: IPv6 (16 bytes), or IPv4 in the first 4; None when folded."""
    if raw == _ZERO16:
        return None
    if l3 == 0x86DD:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return socket.inet_ntoa(raw[:4])


_KEY = struct.Struct("=IIIHBBQ16s16sHHI")


def key_from_bytes(b: bytes) -> DropKey:
    netns, ifindex, reason, l3, l4, _p, loc, sa, da, sp, dp, _p1 = _KEY.unpack(b)
    return DropKey(netns, ifindex, reason, l3, l4, loc, _ip(sa, l3), _ip(da, l3), sp, dp)


_KEY_SIZE = ctypes.sizeof(RawKey)
_EVENT = struct.Struct(f"=Q{_KEY.size}sIIII")
assert _KEY.size == ctypes.sizeof(RawKey)
assert _EVENT.size == ctypes.sizeof(RawEvent)


def decode_event(b: bytes) -> DropSample:
    if len(b) != _EVENT.size:
        raise ValueError(f"watch event is {len(b)} bytes, expected {_EVENT.size}: rebuild bpf/ with `make -C bpf`")
    ts, k, ln, mark, cpu, _ = _EVENT.unpack(b)
    return DropSample(ts, key_from_bytes(k), ln, mark, cpu)


def possible_cpus() -> int:
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            return max(int(p.split("-")[-1]) for p in f.read().strip().split(",")) + 1
    except OSError:
        return os.cpu_count() or 1


_signatures_set = False


def _lib():
    """libbpf with the two map calls watch needs beyond the shared binding's."""
    global _signatures_set
    lb = libbpf.lib()
    if not _signatures_set:
        lb.bpf_map_get_next_key.restype = ctypes.c_int
        lb.bpf_map_get_next_key.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        _signatures_set = True
    return lb


class DropCounter:
    """watch.bpf.o loaded and attached; closed (detached, unloaded) by close() or process exit."""

    def __init__(self, samples_per_sec: int = 1000) -> None:
        cfg = RawConfig(samples_per_sec=max(0, int(samples_per_sec)))
        self.ncpu = possible_cpus()
        self._obj = libbpf.BpfObject(object_path("watch"), rodata={"pw_cfg": bytes(cfg)})
        self._link = None
        self._rb = None
        self._pending: list[DropSample] = []
        try:
            self._link = self._obj.attach("pw_kfree_skb")
            self._rb = libbpf.RingBuffer(self._obj.map_fd("pw_events"), self._on_event)
        except BaseException:
            self.close()
            raise
        self._drops_fd = self._obj.map_fd("pw_drops")
        self._stats_fd = self._obj.map_fd("pw_stats")
        self._vals = (RawVal * self.ncpu)()
        self._u64s = (ctypes.c_uint64 * self.ncpu)()

    def _on_event(self, data: bytes) -> None:
        self._pending.append(decode_event(data))

    def read(self) -> dict[DropKey, tuple[int, int]]:
        """Every key's cumulative (packets, bytes), summed over CPUs."""
        lb = _lib()
        out: dict[DropKey, tuple[int, int]] = {}
        cur = ctypes.create_string_buffer(_KEY_SIZE)
        nxt = ctypes.create_string_buffer(_KEY_SIZE)
        prev = None
        vals = self._vals
        while lb.bpf_map_get_next_key(self._drops_fd, prev, nxt) == 0:
            ctypes.memmove(cur, nxt, _KEY_SIZE)
            prev = cur
            if lb.bpf_map_lookup_elem(self._drops_fd, cur, vals) != 0:
                continue  # never deleted by us; cannot happen, but do not count garbage
            p = b = 0
            for v in vals:
                p += v.packets
                b += v.bytes
            out[key_from_bytes(cur.raw)] = (p, b)
        return out

    def stats(self) -> dict[str, int]:
        lb = _lib()
        out = {}
        for i, name in enumerate(STAT_NAMES):
            k = ctypes.c_uint32(i)
            out[name] = sum(self._u64s) if lb.bpf_map_lookup_elem(self._stats_fd, ctypes.byref(k), self._u64s) == 0 else 0
        return out

    def poll(self, timeout_ms: int = 0) -> list[DropSample]:
        self._rb.poll(timeout_ms)
        self._rb.consume()
        got, self._pending = self._pending, []
        return got

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
        if self._rb is not None:
            self._rb.close()
            self._rb = None
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def monotonic_to_unix_ns() -> int:
    """The offset that turns a bpf_ktime_get_ns stamp into Unix time (ns)."""
    return time.time_ns() - time.monotonic_ns()
