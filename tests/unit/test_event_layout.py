"""The Python mirrors of struct pp_event / pp_config match the compiled objects' BTF exactly.

No root needed: only the built objects and bpftool (to read their BTF). Builds them with
`make -C bpf` if they are missing.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from podpath.tracer.probes.events import (EventError, Filter, RawConfig, RawEvent, decode)

BPF = Path(__file__).resolve().parents[2] / "bpf"
OBJECTS = ("tc", "trace")


def _need_tools() -> None:
    missing = [t for t in ("clang", "bpftool", "make") if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} to build and read the BPF objects")


@pytest.fixture(scope="module")
def btf_types() -> dict[str, dict[str, dict]]:
    """{object: {struct name: {"size", "members": [(name, byte offset, byte size)]}}} from BTF."""
    _need_tools()
    if not all((BPF / f"{o}.bpf.o").exists() for o in OBJECTS):
        subprocess.run(["make", "-s", "-C", str(BPF)], check=True)
    out = {}
    for o in OBJECTS:
        raw = subprocess.run(["bpftool", "btf", "dump", "file", str(BPF / f"{o}.bpf.o"), "-j"],
                             check=True, capture_output=True, text=True).stdout
        types = {t["id"]: t for t in json.loads(raw)["types"]}

        def size_of(tid: int) -> int:
            t = types[tid]
            while t["kind"] in ("TYPEDEF", "VOLATILE", "CONST"):
                t = types[t["type_id"]]
            if t["kind"] == "ARRAY":
                return t["nr_elems"] * size_of(t["type_id"])
            return t["size"]

        structs = {}
        for t in types.values():
            if t["kind"] == "STRUCT" and t["name"] in ("pp_event", "pp_config"):
                structs[t["name"]] = {
                    "size": t["size"],
                    "members": [(m["name"], m["bits_offset"] // 8, size_of(m["type_id"])) for m in t["members"]],
                }
        out[o] = structs
    return out


def _py_layout(cls) -> list[tuple[str, int, int]]:
    return [(name, getattr(cls, name).offset, getattr(cls, name).size) for name, _ in cls._fields_]


@pytest.mark.parametrize("obj", OBJECTS)
@pytest.mark.parametrize("struct,cls", [("pp_event", RawEvent), ("pp_config", RawConfig)])
def test_layout_matches_btf(btf_types, obj, struct, cls):
    assert struct in btf_types[obj], f"struct {struct} missing from {obj}.bpf.o's BTF"
    c = btf_types[obj][struct]
    assert ctypes.sizeof(cls) == c["size"]
    assert _py_layout(cls) == c["members"]


@pytest.mark.parametrize("struct,cls", [("pp_event", RawEvent), ("pp_config", RawConfig)])
def test_no_implicit_padding(btf_types, struct, cls):
    """Every byte is a named field: nothing the compiler pads differently on another arch."""
    members = btf_types["tc"][struct]["members"]
    assert sum(size for _, _, size in members) == btf_types["tc"][struct]["size"]


def test_decode_checks_length():
    with pytest.raises(EventError, match="expected"):
        decode(b"\0" * (ctypes.sizeof(RawEvent) - 1))
    with pytest.raises(EventError):
        decode(b"\0" * (ctypes.sizeof(RawEvent) + 8))


def test_decode_roundtrip():
    r = RawEvent(kind=2, reason=12, flags=0x04 | 0x10 | 0x01, proto=1, icmp_id=7, icmp_seq=3,
                 location=0xffffffff81000010)
    cfg = Filter(saddr="10.0.0.1", daddr="10.0.0.2").to_config()
    r.saddr, r.daddr = cfg.saddr, cfg.daddr
    r.outer_saddr = cfg.daddr
    ev = decode(bytes(r), drop_reasons={12: "SKB_DROP_REASON_NETFILTER_DROP"},
                symbolize=lambda a: f"fn+{a & 0xff:#x}")
    assert (ev.kind, ev.saddr, ev.daddr, ev.proto) == ("kfree_skb", "10.0.0.1", "10.0.0.2", "icmp")
    assert ev.drop_reason == "NETFILTER_DROP" and ev.location_sym == "fn+0x10"
    assert ev.inner and ev.outer_saddr == "10.0.0.2"
    assert set(ev.flags) == {"inner", "matched", "parsed"}


def test_filter_config_fields():
    c = Filter(saddr="10.244.0.2", proto="icmp", icmp_id=0, bidir=True).to_config()
    assert bytes(c)[:4] == bytes([10, 244, 0, 2])  # network byte order in memory, as in BPF
    assert c.flags == 0x1 | 0x4 | 0x40 | 0x100 and c.proto == 1 and c.icmp_id == 0
