"""The Python mirror of bpf/podpath.h matches the compiled objects' BTF exactly: struct pp_event /
pp_config (size, offsets, signedness) and every enum (names and values), plus the kernel numbering
the events and the loader use as is (netfilter hooks, bpf(2) commands and types).

No root needed: only the built objects, bpftool (to read BTF) and the kernel's /sys/kernel/btf/vmlinux.
Builds the objects with `make -C bpf` if they are missing.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from podpath.tracer.probes import NF_PROGRAMS, PROGRAM_NAMES, libbpf
from podpath.tracer.probes.events import (NF_POINTS, EventError, EvFlag, Filter, FilterFlag, Kind, Limit,
                                          NeighPoint, Point, RawConfig, RawEvent, decode)

BPF = Path(__file__).resolve().parents[2] / "bpf"
# the one-shot build (filter in .rodata) and the agent's (filter in .data) of each trace object
ONE_SHOT = ("tc", "trace")
OBJECTS = ONE_SHOT + tuple(f"{o}.agent" for o in ONE_SHOT)
VMLINUX = Path("/sys/kernel/btf/vmlinux")
# C enum -> (enumerator prefix, the Python mirror)
ENUMS = {
    "pp_kind": ("PP_KIND_", Kind),
    "pp_point": ("PP_POINT_", Point),
    "pp_neigh_point": ("PP_NEIGH_", NeighPoint),
    "pp_ev_flag": ("PP_EV_", EvFlag),
    "pp_filter_flag": ("PP_F_", FilterFlag),
    "pp_limit": ("PP_", Limit),
}


def _need_tools() -> None:
    missing = [t for t in ("clang", "bpftool", "make") if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} to build and read the BPF objects")


def _btf(path: Path) -> dict[int, dict]:
    raw = subprocess.run(["bpftool", "btf", "dump", "file", str(path), "-j"],
                         check=True, capture_output=True, text=True).stdout
    return {t["id"]: t for t in json.loads(raw)["types"]}


def _enums(types: dict[int, dict]) -> dict[str, dict[str, int]]:
    return {t["name"]: {v["name"]: v["val"] for v in t["values"]}
            for t in types.values() if t["kind"] in ("ENUM", "ENUM64") and t["name"]}


@pytest.fixture(scope="module")
def btf_types() -> dict[str, dict]:
    """{object: {"structs": {name: {"size", "members": [(name, byte offset, byte size)],
    "signed": {member: bool}}}, "enums": {name: {enumerator: value}}, "funcs": {names}}} from BTF."""
    _need_tools()
    if not all((BPF / f"{o}.bpf.o").exists() for o in OBJECTS):
        subprocess.run(["make", "-s", "-C", str(BPF)], check=True)
    out = {}
    for o in OBJECTS:
        types = _btf(BPF / f"{o}.bpf.o")

        def resolve(tid: int) -> dict:
            t = types[tid]
            while t["kind"] in ("TYPEDEF", "VOLATILE", "CONST"):
                t = types[t["type_id"]]
            return t

        def size_of(tid: int) -> int:
            t = resolve(tid)
            if t["kind"] == "ARRAY":
                return t["nr_elems"] * size_of(t["type_id"])
            return t["size"]

        def signed(tid: int) -> bool:
            t = resolve(tid)
            if t["kind"] == "ARRAY":
                return signed(t["type_id"])
            return t.get("encoding") == "SIGNED"

        structs = {}
        for t in types.values():
            if t["kind"] == "STRUCT" and t["name"] in ("pp_event", "pp_config"):
                structs[t["name"]] = {
                    "size": t["size"],
                    "members": [(m["name"], m["bits_offset"] // 8, size_of(m["type_id"])) for m in t["members"]],
                    "signed": {m["name"]: signed(m["type_id"]) for m in t["members"]},
                }
        out[o] = {"structs": structs, "enums": _enums(types),
                  "funcs": {t["name"] for t in types.values() if t["kind"] == "FUNC"},
                  "sections": {t["name"]: {types[v["type_id"]]["name"] for v in t["vars"]}
                               for t in types.values() if t["kind"] == "DATASEC"}}
    return out


@pytest.fixture(scope="module")
def kernel_enums() -> dict[str, dict[str, int]]:
    """The running kernel's enums (its BTF), for the numbering podpath uses as the kernel does."""
    _need_tools()
    if not VMLINUX.exists():
        pytest.skip(f"{VMLINUX} missing: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF)")
    return _enums(_btf(VMLINUX))


def _py_layout(cls) -> list[tuple[str, int, int]]:
    return [(name, getattr(cls, name).offset, getattr(cls, name).size) for name, _ in cls._fields_]


@pytest.mark.parametrize("obj", OBJECTS)
@pytest.mark.parametrize("struct,cls", [("pp_event", RawEvent), ("pp_config", RawConfig)])
def test_layout_matches_btf(btf_types, obj, struct, cls):
    structs = btf_types[obj]["structs"]
    assert struct in structs, f"struct {struct} missing from {obj}.bpf.o's BTF"
    c = structs[struct]
    assert ctypes.sizeof(cls) == c["size"]
    assert _py_layout(cls) == c["members"]


@pytest.mark.parametrize("struct,cls", [("pp_event", RawEvent), ("pp_config", RawConfig)])
def test_signedness_matches_btf(btf_types, struct, cls):
    """A field ctypes reads unsigned where C writes a negative value (fib_err = -errno) would turn
    -101 into 4294967195: sizes alike, meaning not."""
    def py_signed(ctype) -> bool:
        if issubclass(ctype, ctypes.Array):
            ctype = ctype._type_
        return ctype(-1).value == -1

    py = {name: py_signed(ctype) for name, ctype in cls._fields_}
    assert py == btf_types["tc"]["structs"][struct]["signed"]


@pytest.mark.parametrize("obj", OBJECTS)
@pytest.mark.parametrize("cenum", sorted(ENUMS))
def test_enums_match_btf(btf_types, obj, cenum):
    """Every enum of podpath.h, name for name and value for value: one added, dropped or renumbered
    on either side fails here, not as a wrong kind or flag in a trace."""
    prefix, py = ENUMS[cenum]
    enums = btf_types[obj]["enums"]
    assert cenum in enums, f"enum {cenum} missing from {obj}.bpf.o's BTF (is it in struct pp_btf_types?)"
    c = {name.removeprefix(prefix): val for name, val in enums[cenum].items()}
    assert all(name.startswith(prefix) for name in enums[cenum])
    members = py.members() if py is Limit else {m.name: m.value for m in py}
    assert members == c


def test_event_kinds_are_the_names_json_carries():
    """The kind strings downstream code and the JSON contract use are the enum's names."""
    ev = decode(bytes(RawEvent(kind=Kind.NETIF_RECEIVE_SKB)))
    assert ev.kind == "netif_receive_skb" and ev.point == "ingress"
    assert [decode(bytes(RawEvent(kind=k))).kind for k in Kind] == [
        "tc", "kfree_skb", "consume_skb", "netif_receive_skb", "net_dev_start_xmit", "fib", "neigh", "netfilter"]
    assert decode(bytes(RawEvent(kind=99))).kind == "kind99"


def test_config_array_sized_by_limit():
    assert len(RawConfig().neigh_addrs) == Limit.NEIGH_ADDRS


def test_programs_the_loader_names_exist(btf_types):
    """Every program name the loader asks for is in an object, and the netfilter brackets are
    exactly pp_nf_0 .. pp_nf_<PP_NF_BRACKETS - 1>."""
    for variant in ("", ".agent"):
        funcs = btf_types["tc" + variant]["funcs"] | btf_types["trace" + variant]["funcs"]
        assert set(PROGRAM_NAMES) <= funcs
        brackets = {f for f in btf_types["trace" + variant]["funcs"] if f.startswith("pp_nf_") and f[6:].isdigit()}
        assert brackets == set(NF_PROGRAMS) and len(NF_PROGRAMS) == Limit.NF_BRACKETS


@pytest.mark.parametrize("obj", ONE_SHOT)
def test_the_filter_is_a_constant_in_one_shot_objects_and_writable_in_agent_ones(btf_types, obj):
    """`podpath trace` loads tc/trace.bpf.o with pp_cfg in .rodata (the verifier prunes on it);
    ProbePool loads *.agent.bpf.o and writes pp_cfg into .data after load (ProbeSet.use): a build
    that put it in the other section would cost the one-shot its cheap load, or fail every
    agent trace."""
    assert "pp_cfg" in btf_types[obj]["sections"].get(".rodata", set())
    assert "pp_cfg" not in btf_types[obj]["sections"].get(".data", set())
    agent = btf_types[obj + ".agent"]["sections"]
    assert "pp_cfg" in agent.get(".data", set())
    assert "pp_cfg" not in agent.get(".rodata", set())


def test_netfilter_hook_numbers_are_the_kernels(kernel_enums):
    hooks = kernel_enums["nf_inet_hooks"]
    kernel_names = {"prerouting": "NF_INET_PRE_ROUTING", "input": "NF_INET_LOCAL_IN", "forward": "NF_INET_FORWARD",
                    "output": "NF_INET_LOCAL_OUT", "postrouting": "NF_INET_POST_ROUTING"}
    assert NF_POINTS == {hooks[k]: name for name, k in kernel_names.items()}
    assert libbpf.NF_HOOKS == {name: hooks[k] for name, k in kernel_names.items()}


def test_bpf_syscall_numbers_are_the_kernels(kernel_enums):
    """libbpf.py speaks raw bpf(2) where libbpf 1.1 cannot: its commands, program, attach and link
    types carry the kernel's own names, so each must have the kernel's value."""
    kernel = {}
    for e in ("bpf_cmd", "bpf_prog_type", "bpf_attach_type", "bpf_link_type"):
        kernel.update(kernel_enums[e])
    ours = {n: v for n, v in vars(libbpf).items()
            if n.startswith(("BPF_PROG_TYPE_", "BPF_LINK_TYPE_", "BPF_TRACE_", "BPF_TCX_")) or n in (
                "BPF_PROG_LOAD", "BPF_PROG_GET_NEXT_ID", "BPF_PROG_GET_FD_BY_ID", "BPF_OBJ_GET_INFO_BY_FD",
                "BPF_PROG_QUERY", "BPF_RAW_TRACEPOINT_OPEN", "BPF_LINK_CREATE", "BPF_LINK_GET_FD_BY_ID",
                "BPF_LINK_GET_NEXT_ID", "BPF_ENABLE_STATS", "BPF_NETFILTER")}
    assert len(ours) >= 15
    assert {n: kernel.get(n) for n in ours} == ours


@pytest.mark.parametrize("struct,cls", [("pp_event", RawEvent), ("pp_config", RawConfig)])
def test_no_implicit_padding(btf_types, struct, cls):
    """Every byte is a named field: nothing the compiler pads differently on another arch."""
    members = btf_types["tc"]["structs"][struct]["members"]
    assert sum(size for _, _, size in members) == btf_types["tc"]["structs"][struct]["size"]


def test_decode_checks_length():
    with pytest.raises(EventError, match="expected"):
        decode(b"\0" * (ctypes.sizeof(RawEvent) - 1))
    with pytest.raises(EventError):
        decode(b"\0" * (ctypes.sizeof(RawEvent) + 8))


def test_decode_roundtrip():
    r = RawEvent(kind=Kind.KFREE_SKB, reason=12, flags=EvFlag.MATCHED | EvFlag.PARSED | EvFlag.INNER, proto=1,
                 icmp_id=7, icmp_seq=3,
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
    assert c.flags == FilterFlag.SADDR | FilterFlag.PROTO | FilterFlag.ICMP_ID | FilterFlag.BIDIR
    assert c.proto == 1 and c.icmp_id == 0
