"""The Python mirrors of bpf/watch.h (tracer/watch/kernel.py) match watch.bpf.o's BTF exactly.

No root needed: only the built object and bpftool (to read its BTF)."""

from __future__ import annotations

import ctypes
import json
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from podpath.tracer.watch.kernel import RawConfig, RawEvent, RawKey, RawVal, decode_event

OBJ = Path(__file__).resolve().parents[2] / "bpf" / "watch.bpf.o"
STRUCTS = {"pw_key": RawKey, "pw_val": RawVal, "pw_event": RawEvent, "pw_config": RawConfig}


@pytest.fixture(scope="module")
def btf() -> dict[str, dict]:
    missing = [t for t in ("clang", "bpftool", "make") if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} to build and read the BPF object")
    if not OBJ.exists():
        subprocess.run(["make", "-s", "-C", str(OBJ.parent)], check=True)
    raw = subprocess.run(["bpftool", "btf", "dump", "file", str(OBJ), "-j"], check=True, capture_output=True,
                         text=True).stdout
    types = {t["id"]: t for t in json.loads(raw)["types"]}

    def size_of(tid: int) -> int:
        t = types[tid]
        while t["kind"] in ("TYPEDEF", "VOLATILE", "CONST"):
            t = types[t["type_id"]]
        return t["nr_elems"] * size_of(t["type_id"]) if t["kind"] == "ARRAY" else t["size"]

    return {t["name"]: {"size": t["size"],
                        "members": [(m["name"], m["bits_offset"] // 8, size_of(m["type_id"])) for m in t["members"]]}
            for t in types.values() if t["kind"] == "STRUCT" and t["name"] in STRUCTS}


@pytest.mark.parametrize("name", STRUCTS)
def test_layout_matches_btf(btf, name):
    cls = STRUCTS[name]
    assert name in btf, f"struct {name} missing from watch.bpf.o's BTF"
    assert ctypes.sizeof(cls) == btf[name]["size"]
    assert [(f, getattr(cls, f).offset, getattr(cls, f).size) for f, _ in cls._fields_] == btf[name]["members"]
    # every byte a named field: nothing a compiler pads differently elsewhere
    assert sum(s for _, _, s in btf[name]["members"]) == btf[name]["size"]


def _addr(packed: bytes):
    """An address as the probe stores it: 16 bytes, IPv4 in the first 4."""
    return (ctypes.c_uint8 * 16)(*packed.ljust(16, b"\0"))


def test_decode_event_roundtrip():
    k = RawKey(netns=4026531840, ifindex=3, reason=6, l3_proto=0x0800, l4_proto=17, location=0xffffffff81000010,
               saddr=_addr(socket.inet_aton("10.244.0.2")), daddr=_addr(socket.inet_aton("10.244.1.3")),
               sport=40000, dport=53)
    ev = decode_event(bytes(RawEvent(ts_ns=123, key=k, len=71, mark=7, cpu=1)))
    assert (ev.ts_ns, ev.len, ev.mark, ev.cpu) == (123, 71, 7, 1)
    assert (ev.key.saddr, ev.key.daddr, ev.key.sport, ev.key.dport, ev.key.l4_proto) == ("10.244.0.2", "10.244.1.3", 40000, 53, 17)
    assert ev.key.location == 0xffffffff81000010 and ev.key.reason == 6
    with pytest.raises(ValueError, match="expected"):
        decode_event(b"\0" * 10)


def test_decode_ipv6_and_folded_keys():
    k = RawKey(l3_proto=0x86DD, l4_proto=58, saddr=_addr(socket.inet_pton(socket.AF_INET6, "fd00:10:244::2")),
               daddr=_addr(socket.inet_pton(socket.AF_INET6, "fd00:10:244:1::3")), sport=0x8000)
    ev = decode_event(bytes(RawEvent(key=k)))
    assert (ev.key.saddr, ev.key.daddr, ev.key.sport) == ("fd00:10:244::2", "fd00:10:244:1::3", 0x8000)
    folded = decode_event(bytes(RawEvent(key=RawKey(l3_proto=0x86DD, reason=2))))
    assert folded.key.saddr is None and folded.key.daddr is None
