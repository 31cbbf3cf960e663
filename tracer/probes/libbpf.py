"""A thin ctypes binding over libbpf.so.1 (Debian `libbpf1`), plus the raw bpf(2) calls libbpf 1.1
lacks.

What libbpf does here: open and load CO-RE objects (relocation against the kernel's BTF), set
globals (.rodata, .data) before load, share maps between objects (reuse_fd), attach tracing programs, read
ring buffers, and read BTF (enums such as `skb_drop_reason`). What we do with raw bpf(2), because
libbpf 1.1 predates it: tcx links (BPF_LINK_CREATE with BPF_TCX_INGRESS/EGRESS, kernel 6.6+) and
BPF netfilter links (BPF_NETFILTER, kernel 6.4+). The legacy clsact path (bpf_tc_*) is kept for
kernels without tcx; its filters are not fd-owned, so they use a fixed handle/priority that
`ClsactFilter.sweep` removes.

Every resource is an object with close(); BpfObject, Link, RingBuffer and ClsactFilter are context
managers. Links are file descriptors owned by this process: if it dies, the kernel detaches them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import threading
from typing import Callable, Iterable

from ..hooks import NF_HOOK_NUMBER
from ..netns import load_libc, run_in
from ..netns import enter as _enter
from ..errors import NodeError, PermissionNeeded

# bpf(2) commands, program/attach types (include/uapi/linux/bpf.h; checked against this kernel's BTF)
BPF_PROG_LOAD = 5
BPF_PROG_GET_NEXT_ID = 11
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_LINK_CREATE = 28
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_GET_NEXT_ID = 31
BPF_ENABLE_STATS = 32

BPF_PROG_TYPE_KPROBE = 2
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_PROG_TYPE_TRACING = 26
BPF_PROG_TYPE_NETFILTER = 32

BPF_TRACE_RAW_TP = 23
BPF_TRACE_FENTRY = 24
BPF_NETFILTER = 45
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47

BPF_LINK_TYPE_XDP = 6
BPF_LINK_TYPE_NETFILTER = 10
BPF_LINK_TYPE_TCX = 11

BTF_KIND_ENUM = 6
BTF_KIND_DATASEC = 15
BTF_KIND_ENUM64 = 19

NFPROTO_IPV4 = 2
NF_HOOKS = NF_HOOK_NUMBER  # name -> the kernel's NF_INET_* number (tracer/hooks.py)
BPF_F_NETFILTER_IP_DEFRAG = 1

# legacy clsact (bpf_tc_*): our fixed handle and priority, so a sweep finds exactly our filters
BPF_TC_INGRESS = 1
BPF_TC_EGRESS = 2
BPF_TC_F_REPLACE = 1
PP_TC_HANDLE = 0x7070
PP_TC_PRIORITY = 0x7070

_SYS_bpf = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)

_LIBBPF_PATHS = ("libbpf.so.1", "/usr/lib/x86_64-linux-gnu/libbpf.so.1", "/usr/lib/aarch64-linux-gnu/libbpf.so.1",
                 "/usr/lib64/libbpf.so.1", "/usr/lib/libbpf.so.1")

_libc = load_libc()
_libc.syscall.restype = ctypes.c_long
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()
_log: list[str] = []  # libbpf's recent messages: the last ones explain a failure

_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


@_PRINT_FN
def _print_cb(level, fmt, args):  # libbpf_print_fn_t(level, fmt, va_list); x86_64 va_list is a pointer
    buf = ctypes.create_string_buffer(2048)
    _libc.vsnprintf(buf, len(buf), fmt, args)
    _log.append(buf.value.decode(errors="replace").rstrip())
    del _log[:-200]
    if os.environ.get("PODPATH_LIBBPF_DEBUG"):
        os.write(2, b"libbpf: " + buf.value)
    return 0


def _sig(lib, name, restype, *argtypes) -> None:
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)


def _libbpf_candidates():
    yield from _LIBBPF_PATHS
    found = ctypes.util.find_library("bpf")
    if found and found.endswith(".so.1"):
        yield found


def lib() -> ctypes.CDLL:
    """libbpf.so.1, loaded once, with the signatures we use. NodeError if it is not installed."""
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        # the usual names first: find_library runs `ldconfig -p` (~30 ms), asked only when they fail
        for path in _libbpf_candidates():
            try:
                lb = ctypes.CDLL(path, use_errno=True)
                break
            except OSError:
                continue
        else:
            raise NodeError("libbpf.so.1 not found: apt-get install libbpf1")
        vp, cp, i, u32, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_size_t
        _sig(lb, "libbpf_major_version", u32)
        _sig(lb, "libbpf_minor_version", u32)
        _sig(lb, "libbpf_set_print", vp, _PRINT_FN)
        _sig(lb, "bpf_object__open_file", vp, cp, vp)
        _sig(lb, "bpf_object__load", i, vp)
        _sig(lb, "bpf_object__close", None, vp)
        _sig(lb, "bpf_object__btf", vp, vp)
        _sig(lb, "bpf_object__find_program_by_name", vp, vp, cp)
        _sig(lb, "bpf_object__next_program", vp, vp, vp)
        _sig(lb, "bpf_object__find_map_by_name", vp, vp, cp)
        _sig(lb, "bpf_program__name", cp, vp)
        _sig(lb, "bpf_program__fd", i, vp)
        _sig(lb, "bpf_program__set_type", i, vp, i)
        _sig(lb, "bpf_program__set_expected_attach_type", i, vp, i)
        _sig(lb, "bpf_program__set_autoload", i, vp, ctypes.c_bool)
        _sig(lb, "bpf_program__attach", vp, vp)
        _sig(lb, "bpf_link__destroy", i, vp)
        _sig(lb, "bpf_link__fd", i, vp)
        _sig(lb, "bpf_map__fd", i, vp)
        _sig(lb, "bpf_map__name", cp, vp)
        _sig(lb, "bpf_map__reuse_fd", i, vp, i)
        _sig(lb, "bpf_map__initial_value", vp, vp, ctypes.POINTER(sz))
        _sig(lb, "bpf_map__value_size", u32, vp)
        _sig(lb, "bpf_map_lookup_elem", i, i, vp, vp)
        _sig(lb, "bpf_map_update_elem", i, i, vp, vp, ctypes.c_uint64)
        _sig(lb, "bpf_map_delete_elem", i, i, vp)
        _sig(lb, "bpf_map_get_next_key", i, i, vp, vp)
        _sig(lb, "btf__load_vmlinux_btf", vp)
        _sig(lb, "btf__free", None, vp)
        _sig(lb, "btf__find_by_name_kind", i, vp, cp, u32)
        _sig(lb, "btf__type_by_id", vp, vp, u32)
        _sig(lb, "btf__name_by_offset", cp, vp, u32)
        _sig(lb, "libbpf_find_vmlinux_btf_id", i, cp, i)
        _sig(lb, "ring_buffer__new", vp, i, vp, vp, vp)
        _sig(lb, "ring_buffer__poll", i, vp, i)
        _sig(lb, "ring_buffer__consume", i, vp)
        _sig(lb, "ring_buffer__free", None, vp)
        _sig(lb, "bpf_tc_hook_create", i, vp)
        _sig(lb, "bpf_tc_attach", i, vp, vp)
        _sig(lb, "bpf_tc_detach", i, vp, vp)
        lb.libbpf_set_print(_print_cb)
        _lib = lb
        return lb


def version() -> str:
    lb = lib()
    return f"{lb.libbpf_major_version()}.{lb.libbpf_minor_version()}"


def has_symbol(name: str) -> bool:
    return hasattr(lib(), name)


def last_log(n: int = 3) -> str:
    lines = [l for l in _log if l.strip()]
    return " | ".join(lines[-n:])


def _fail(what: str, err: int, fix: str = "") -> NodeError:
    """The error to raise for a failed call: EPERM/EACCES -> PermissionNeeded."""
    err = abs(err)
    if err == errno.EACCES and os.geteuid() == 0:  # as root, EACCES is the verifier saying no
        log = last_log()
        return NodeError(f"{what}: the kernel's verifier rejected a program"
                         + (f" ({log[-600:]})" if log else "") + "; rebuild with `make -C bpf` or report it")
    if err in (errno.EPERM, errno.EACCES):
        return PermissionNeeded(f"{what}: {os.strerror(err)}; run podpath as root (CAP_BPF, CAP_PERFMON, "
                                "CAP_NET_ADMIN) or check `podpath doctor`")
    log = last_log()
    return NodeError(f"{what}: {os.strerror(err)}" + (f" ({log})" if log else "") + (f"; {fix}" if fix else ""))


# ---- raw bpf(2) -------------------------------------------------------------------------------

def sys_bpf(cmd: int, attr: ctypes.Array) -> int:
    """bpf(cmd, attr, sizeof attr); returns the result or -errno."""
    r = _libc.syscall(ctypes.c_long(_SYS_bpf), ctypes.c_long(cmd), attr, ctypes.c_long(len(attr)))
    return r if r >= 0 else -ctypes.get_errno()


def _attr(size: int = 128) -> ctypes.Array:
    return ctypes.create_string_buffer(size)


def _put(buf, off: int, fmt: str, *vals) -> None:
    import struct
    struct.pack_into(fmt, buf, off, *vals)


def prog_load_raw(prog_type: int, insns: bytes, *, name: str = "pp_probe", expected_attach_type: int = 0,
                  attach_btf_id: int = 0, license: str = "GPL") -> int:
    """BPF_PROG_LOAD of raw instructions: a program fd, or -errno. Used by `podpath doctor`."""
    ins = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    a = _attr(144)
    _put(a, 0, "=II", prog_type, len(insns) // 8)
    _put(a, 8, "=QQ", ctypes.addressof(ins), ctypes.addressof(lic))
    a[48:48 + min(15, len(name))] = name.encode()[:15]
    _put(a, 68, "=I", expected_attach_type)
    _put(a, 108, "=I", attach_btf_id)
    return sys_bpf(BPF_PROG_LOAD, a)


def link_create_raw(prog_fd: int, target: int, attach_type: int, extra: bytes = b"") -> int:
    """BPF_LINK_CREATE: a link fd or -errno. `extra` fills the attach-type-specific union at +16."""
    a = _attr(64)
    _put(a, 0, "=IIII", prog_fd, target, attach_type, 0)
    a[16:16 + len(extra)] = extra
    return sys_bpf(BPF_LINK_CREATE, a)


def raw_tracepoint_open(prog_fd: int) -> int:
    """BPF_RAW_TRACEPOINT_OPEN for a tp_btf program (name NULL): a link fd or -errno."""
    a = _attr(32)
    _put(a, 8, "=I", prog_fd)
    return sys_bpf(BPF_RAW_TRACEPOINT_OPEN, a)


def enable_stats() -> int:
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): an fd that keeps run-time stats on while open, or -errno."""
    a = _attr(8)
    return sys_bpf(BPF_ENABLE_STATS, a)


def loaded_programs() -> list[tuple[int, str]]:
    """(id, name) of every BPF program loaded on the machine (bpf_prog_info via raw bpf(2))."""
    out = []
    next_id = 0
    while True:
        a = _attr(16)
        _put(a, 0, "=I", next_id)
        if sys_bpf(BPF_PROG_GET_NEXT_ID, a) < 0:
            return out
        import struct
        next_id = struct.unpack_from("=I", a, 4)[0]
        b = _attr(16)
        _put(b, 0, "=I", next_id)
        fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, b)
        if fd < 0:
            continue
        try:
            r, info = _obj_info(fd)
            if r == 0:
                name = info[64:80].split(b"\0", 1)[0].decode(errors="replace")  # bpf_prog_info.name
                out.append((next_id, name))
        finally:
            os.close(fd)


def _obj_info(fd: int, size: int = 256) -> tuple[int, bytes]:
    """(BPF_OBJ_GET_INFO_BY_FD's result, the info's first `size` bytes) of a program, map or link fd."""
    info = ctypes.create_string_buffer(size)
    c = _attr(16)
    _put(c, 0, "=IIQ", fd, len(info), ctypes.addressof(info))
    return sys_bpf(BPF_OBJ_GET_INFO_BY_FD, c), info.raw


def _info_u32(fd: int, offset: int) -> int:
    """One __u32 of a BPF fd's info (bpf_prog_info, or a map's or link's)."""
    import struct
    r, info = _obj_info(fd)
    if r < 0:
        raise _fail(f"cannot read BPF fd {fd}'s info", r)
    return struct.unpack_from("=I", info, offset)[0]


def prog_id(fd: int) -> int:
    """The kernel id of a program (or map, link) fd: bpftool's and /proc/PID/fdinfo's id."""
    return _info_u32(fd, 4)  # bpf_prog_info.id (after type)


def verified_insns(fd: int) -> int:
    """Instructions the verifier processed to load a program (bpf_prog_info.verified_insns, 5.16+;
    0 on older kernels): what its load cost, whatever else the machine was doing."""
    return _info_u32(fd, 216)  # offsetof(struct bpf_prog_info, verified_insns)


def prog_info(prog_id: int) -> tuple[str, str] | None:
    """(name, tag as 16 hex digits) of a loaded program by id, or None if it is gone."""
    b = _attr(16)
    _put(b, 0, "=I", prog_id)
    fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, b)
    if fd < 0:
        if fd in (-errno.EPERM, -errno.EACCES):
            raise _fail(f"cannot open BPF program {prog_id}", fd)
        return None
    try:
        r, info = _obj_info(fd)
        if r < 0:
            raise _fail(f"cannot read BPF program {prog_id}'s info", r)
        name = info[64:80].split(b"\0", 1)[0].decode(errors="replace")  # bpf_prog_info.name
        tag = info[8:16].hex()  # bpf_prog_info.tag, as bpftool and tc print it
        return name, tag
    finally:
        os.close(fd)


def prog_query(ifindex: int, attach_type: int) -> tuple[list[int], list[int]]:
    """BPF_PROG_QUERY of a tcx hook on ifindex in the calling thread's namespace: (prog ids, link ids
    (0 where a program was attached without a link)), in run order. Empty when nothing is attached."""
    import struct
    cap = 64
    progs = (ctypes.c_uint32 * cap)()
    links = (ctypes.c_uint32 * cap)()
    a = _attr(64)
    _put(a, 0, "=II", ifindex, attach_type)
    _put(a, 16, "=Q", ctypes.addressof(progs))
    _put(a, 24, "=I", cap)
    _put(a, 40, "=Q", ctypes.addressof(links))
    r = sys_bpf(BPF_PROG_QUERY, a)
    if r < 0:
        if r == -errno.ENOENT:  # nothing attached (older kernels) or no such device
            return [], []
        raise _fail(f"BPF_PROG_QUERY on ifindex {ifindex}", r, "tcx needs kernel 6.6+")
    n = min(struct.unpack_from("=I", a, 24)[0], cap)
    return list(progs[:n]), list(links[:n])


def links_info() -> list[dict]:
    """Every BPF link on the machine: {id, type, prog_id, and per type: netfilter pf, hooknum,
    priority, flags; tcx/xdp ifindex (in the link's own namespace, which the kernel does not say
    for netfilter links)}. Links that vanish while listed are skipped."""
    import struct
    out = []
    next_id = 0
    while True:
        a = _attr(16)
        _put(a, 0, "=I", next_id)
        r = sys_bpf(BPF_LINK_GET_NEXT_ID, a)
        if r == -errno.ENOENT:  # the end of the list
            return out
        if r < 0:
            raise _fail("cannot list BPF links", r)
        next_id = struct.unpack_from("=I", a, 4)[0]
        b = _attr(16)
        _put(b, 0, "=I", next_id)
        fd = sys_bpf(BPF_LINK_GET_FD_BY_ID, b)
        if fd < 0:
            if fd in (-errno.EPERM, -errno.EACCES):
                raise _fail("cannot open BPF links", fd)
            continue
        try:
            r, info = _obj_info(fd, 128)
            if r < 0:
                continue
            ltype, lid, prog_id = struct.unpack_from("=III", info, 0)
            d = {"id": lid, "type": ltype, "prog_id": prog_id}
            if ltype == BPF_LINK_TYPE_NETFILTER:  # bpf_link_info.netfilter at +16
                d["pf"], d["hooknum"], d["priority"], d["flags"] = struct.unpack_from("=IIiI", info, 16)
            elif ltype in (BPF_LINK_TYPE_TCX, BPF_LINK_TYPE_XDP):
                d["ifindex"] = struct.unpack_from("=I", info, 16)[0]
            out.append(d)
        finally:
            os.close(fd)


# ---- BTF --------------------------------------------------------------------------------------

class _BtfType(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("size", ctypes.c_uint32)]


def _btf_members(btf: int, type_id: int) -> Iterable[tuple[str, tuple[int, ...]]]:
    """(name, raw u32 words) of the vlen entries following a btf_type (enum / datasec)."""
    lb = lib()
    p = lb.btf__type_by_id(btf, type_id)
    t = _BtfType.from_address(p)
    kind, vlen = (t.info >> 24) & 0x1F, t.info & 0xFFFF
    words = {BTF_KIND_ENUM: 2, BTF_KIND_ENUM64: 3, BTF_KIND_DATASEC: 3}[kind]
    arr = (ctypes.c_uint32 * (vlen * words)).from_address(p + ctypes.sizeof(_BtfType))
    for k in range(vlen):
        yield kind, tuple(arr[k * words:(k + 1) * words])


_enum_cache: dict[str, dict[int, str]] = {}


def vmlinux_enum(name: str) -> dict[int, str]:
    """value -> name of a kernel enum from /sys/kernel/btf/vmlinux (e.g. skb_drop_reason)."""
    if name in _enum_cache:
        return _enum_cache[name]
    lb = lib()
    btf = lb.btf__load_vmlinux_btf()
    if not btf:
        raise NodeError("kernel BTF /sys/kernel/btf/vmlinux unreadable: podpath needs CONFIG_DEBUG_INFO_BTF=y")
    try:
        tid = lb.btf__find_by_name_kind(btf, name.encode(), BTF_KIND_ENUM)
        if tid < 0:
            tid = lb.btf__find_by_name_kind(btf, name.encode(), BTF_KIND_ENUM64)
        if tid < 0:
            raise NodeError(f"kernel BTF has no enum {name}")
        values = {}
        for kind, w in _btf_members(btf, tid):
            val = w[1] if kind == BTF_KIND_ENUM else w[1] | (w[2] << 32)
            if kind == BTF_KIND_ENUM and val >= 1 << 31:
                val -= 1 << 32
            values.setdefault(val, lb.btf__name_by_offset(btf, w[0]).decode())
        _enum_cache[name] = values
        return values
    finally:
        lb.btf__free(btf)


# ---- objects, programs, maps ------------------------------------------------------------------

class BpfObject:
    """An opened and loaded BPF object file.

    rodata: {variable name: bytes} written into `.rodata` before load (const volatile globals).
    data: {variable name: bytes} written into `.data` before load (volatile globals, which
    write_data() can change after load).
    reuse_maps: {map name: fd} shared with another object (one ring buffer for all programs).
    prog_types: {program name: (prog_type, expected_attach_type)} for sections libbpf 1.1 does not
    know (SEC("netfilter")). autoload: program names to load (default: all that libbpf knows, plus
    those in prog_types).
    """

    def __init__(self, path: str, *, rodata: dict[str, bytes] | None = None,
                 data: dict[str, bytes] | None = None,
                 reuse_maps: dict[str, int] | None = None,
                 prog_types: dict[str, tuple[int, int]] | None = None,
                 autoload: Iterable[str] | None = None) -> None:
        self.path = path
        self._obj = None
        lb = lib()
        if not os.path.exists(path):
            raise NodeError(f"BPF object {path} not built: run `make -C bpf`")
        _log.clear()
        obj = lb.bpf_object__open_file(path.encode(), None)
        if not obj:
            raise _fail(f"cannot open BPF object {path}", ctypes.get_errno() or errno.EINVAL,
                        "rebuild it with `make -C bpf`")
        self._obj = obj
        try:
            want = set(autoload) if autoload is not None else None
            for name, prog in self._programs():
                if name in (prog_types or {}):
                    ptype, atype = prog_types[name]
                    lb.bpf_program__set_type(prog, ptype)
                    lb.bpf_program__set_expected_attach_type(prog, atype)
                if want is not None:
                    lb.bpf_program__set_autoload(prog, name in want)
            if rodata:
                self._set_initial(".rodata", rodata)
            if data:
                self._set_initial(".data", data)
            for mname, fd in (reuse_maps or {}).items():
                m = self._map(mname)
                r = lb.bpf_map__reuse_fd(m, fd)
                if r < 0:
                    raise _fail(f"cannot share map {mname} with {path}", r)
            r = _load_without_signals(lambda: lb.bpf_object__load(obj))
            if r < 0:
                raise _fail(f"cannot load BPF object {path}", r,
                            "check `podpath doctor` (kernel BTF, tp_btf, capabilities)")
        except BaseException:
            self.close()
            raise

    def _programs(self):
        lb = lib()
        prog = lb.bpf_object__next_program(self._obj, None)
        while prog:
            yield lb.bpf_program__name(prog).decode(), prog
            prog = lb.bpf_object__next_program(self._obj, prog)

    def _map(self, name: str) -> int:
        m = lib().bpf_object__find_map_by_name(self._obj, name.encode())
        if not m:
            raise NodeError(f"BPF object {self.path} has no map {name}: rebuild it with `make -C bpf`")
        return m

    def _section_map(self, section: str) -> int:
        """The internal map of a global data section (".rodata", ".data"), found by its section
        name (skeleton-less; libbpf 1.1 may name it <object>.<section>)."""
        lb = lib()
        for cand in (section, f"{os.path.basename(self.path).split('.')[0]}{section}"):
            m = lb.bpf_object__find_map_by_name(self._obj, cand.encode())
            if m:
                return m
        raise NodeError(f"BPF object {self.path} has no {section}: rebuild it with `make -C bpf`")

    def _variables(self, section: str) -> dict[str, tuple[int, int]]:
        """name -> (offset, size) of each variable of a data section (its BTF DATASEC)."""
        lb = lib()
        btf = lb.bpf_object__btf(self._obj)
        tid = lb.btf__find_by_name_kind(btf, section.encode(), BTF_KIND_DATASEC) if btf else -1
        if tid < 0:
            raise NodeError(f"BPF object {self.path}: {section} has no BTF; rebuild it with `make -C bpf`")
        found = {}
        for _kind, (vtype, off, vsize) in _btf_members(btf, tid):
            vt = _BtfType.from_address(lb.btf__type_by_id(btf, vtype))
            found[lb.btf__name_by_offset(btf, vt.name_off).decode()] = (off, vsize)
        return found

    def _offsets(self, section: str, values: dict[str, bytes], size: int) -> dict[str, int]:
        """Where each variable given sits in the section, checked against the bytes given."""
        found = self._variables(section)
        out = {}
        for name, blob in values.items():
            if name not in found:
                raise NodeError(f"BPF object {self.path} has no {section} variable {name}: rebuild it")
            off, vsize = found[name]
            if len(blob) != vsize or off + vsize > size:
                raise NodeError(f"BPF object {self.path}: {name} is {vsize} bytes, podpath wrote "
                                f"{len(blob)}: the object and podpath disagree; rebuild with `make -C bpf`")
            out[name] = off
        return out

    def _set_initial(self, section: str, values: dict[str, bytes]) -> None:
        """Before load: write globals into the section map's initial value."""
        m = self._section_map(section)
        size = ctypes.c_size_t()
        data = lib().bpf_map__initial_value(m, ctypes.byref(size))
        if not data:
            raise NodeError(f"BPF object {self.path}: {section} has no initial value; rebuild it with `make -C bpf`")
        for name, off in self._offsets(section, values, size.value).items():
            ctypes.memmove(data + off, values[name], len(values[name]))

    def _data_value(self) -> tuple[int, ctypes.Array]:
        """The .data map's fd and its current value (the kernel's copy)."""
        lb = lib()
        m = self._section_map(".data")
        fd = lb.bpf_map__fd(m)
        buf = ctypes.create_string_buffer(lb.bpf_map__value_size(m))
        key = ctypes.c_uint32(0)
        r = lb.bpf_map_lookup_elem(fd, ctypes.byref(key), buf)
        if r < 0:
            raise _fail(f"cannot read {self.path}'s .data", r)
        return fd, buf

    def write_data(self, values: dict[str, bytes]) -> None:
        """After load: change .data globals in the kernel's copy, which the programs read on their
        next run (one syscall for the whole section). A program running meanwhile could read half of
        the old value and half of the new: write a filter while nothing runs it (no link, or behind
        a closed gate, which is one aligned word)."""
        fd, buf = self._data_value()
        for name, off in self._offsets(".data", values, len(buf)).items():
            ctypes.memmove(ctypes.addressof(buf) + off, values[name], len(values[name]))
        key = ctypes.c_uint32(0)
        r = lib().bpf_map_update_elem(fd, ctypes.byref(key), buf, 0)
        if r < 0:
            raise _fail(f"cannot write {self.path}'s .data", r)

    def read_data(self, name: str) -> bytes:
        """A .data global as the programs see it now."""
        _fd, buf = self._data_value()
        if name not in (v := self._variables(".data")):
            raise NodeError(f"BPF object {self.path} has no .data variable {name}: rebuild it")
        off, size = v[name]
        return buf.raw[off:off + size]

    def program(self, name: str) -> int:
        p = lib().bpf_object__find_program_by_name(self._obj, name.encode())
        if not p:
            raise NodeError(f"BPF object {self.path} has no program {name}: rebuild it with `make -C bpf`")
        return p

    def program_fd(self, name: str) -> int:
        fd = lib().bpf_program__fd(self.program(name))
        if fd < 0:
            raise NodeError(f"BPF program {name} in {self.path} is not loaded")
        return fd

    def map_fd(self, name: str) -> int:
        return lib().bpf_map__fd(self._map(name))

    def attach(self, prog_name: str) -> "Link":
        """bpf_program__attach: tracing programs (tp_btf) attach by their section name."""
        _log.clear()
        link = lib().bpf_program__attach(self.program(prog_name))
        if not link:
            raise _fail(f"cannot attach {prog_name}", ctypes.get_errno() or errno.EINVAL)
        return Link(f"{prog_name}", libbpf_link=link)

    def close(self) -> None:
        if self._obj:
            lib().bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Link:
    """A file-descriptor-owned BPF link (libbpf's, or a raw link fd). close() detaches it."""

    def __init__(self, what: str, *, fd: int | None = None, libbpf_link: int | None = None) -> None:
        self.what = what
        self._fd = fd
        self._link = libbpf_link

    @property
    def fd(self) -> int:
        return self._fd if self._fd is not None else lib().bpf_link__fd(self._link)

    def close(self) -> None:
        if self._link:
            lib().bpf_link__destroy(self._link)
            self._link = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"Link({self.what})"


def attach_tcx(prog_fd: int, ifindex: int, direction: str, what: str = "") -> Link:
    """A tcx link (kernel 6.6+) on ifindex in the calling thread's network namespace."""
    atype = {"ingress": BPF_TCX_INGRESS, "egress": BPF_TCX_EGRESS}[direction]
    fd = link_create_raw(prog_fd, ifindex, atype)
    if fd < 0:
        raise _fail(f"cannot attach tcx {direction} on {what or ifindex}", fd,
                    "the kernel may lack tcx (6.6+): podpath falls back to clsact")
    return Link(f"tcx/{direction}/{what or ifindex}", fd=fd)


def attach_netfilter(prog_fd: int, hook: str | int, priority: int, *, defrag: bool = False) -> Link:
    """A BPF netfilter link (IPv4) at hook and priority in the calling thread's namespace."""
    import struct
    hooknum = NF_HOOKS[hook] if isinstance(hook, str) else hook
    extra = struct.pack("=IIiI", NFPROTO_IPV4, hooknum, priority, BPF_F_NETFILTER_IP_DEFRAG if defrag else 0)
    fd = link_create_raw(prog_fd, 0, BPF_NETFILTER, extra)
    if fd == -errno.EBUSY:  # BPF links may not share a hook's priority (another trace holds it)
        raise PriorityTaken(f"netfilter {hook}/{priority} is held by another BPF link")
    if fd < 0:
        raise _fail(f"cannot attach netfilter link at {hook}/{priority}", fd,
                    "BPF netfilter links need kernel 6.4+ with CONFIG_NETFILTER_BPF_LINK")
    return Link(f"netfilter/{hook}/{priority}", fd=fd)


def _load_without_signals(load):
    """Run a program load with this thread's signals blocked. The verifier gives up with EAGAIN as
    soon as the loading thread has a signal pending, and a process-directed signal (a SIGCHLD from
    the snapshot's subprocesses, while another thread blocks it) may be routed to this thread:
    blocked here, the kernel picks another one. Signals are delivered when the load is done."""
    import signal
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        return load()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class PriorityTaken(NodeError):
    """A BPF netfilter link already holds this hook and priority (they must be unique)."""


class _TcHook(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("ifindex", ctypes.c_int), ("attach_point", ctypes.c_int),
                ("parent", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


class _TcOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("prog_fd", ctypes.c_int), ("flags", ctypes.c_uint32),
                ("prog_id", ctypes.c_uint32), ("handle", ctypes.c_uint32), ("priority", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32)]


class ClsactFilter:
    """Legacy path: a clsact qdisc (created if missing, never removed) with one direct-action
    filter at podpath's fixed handle/priority. NOT fd-owned: it outlives the process, so every
    start and `podpath cleanup` must sweep it (ClsactFilter.sweep)."""

    def __init__(self, prog_fd: int, ifindex: int, direction: str, what: str = "") -> None:
        lb = lib()
        self.ifindex, self.direction, self.what = ifindex, direction, what
        self._netns_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        hook = self._hook(ifindex, direction)
        r = lb.bpf_tc_hook_create(ctypes.byref(hook))
        if r < 0 and r != -errno.EEXIST:
            os.close(self._netns_fd)
            raise _fail(f"cannot create clsact on {what or ifindex}", r)
        opts = _TcOpts(sz=ctypes.sizeof(_TcOpts), prog_fd=prog_fd, flags=BPF_TC_F_REPLACE,
                       handle=PP_TC_HANDLE, priority=PP_TC_PRIORITY)
        r = lb.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts))
        if r < 0:
            os.close(self._netns_fd)
            raise _fail(f"cannot attach clsact {direction} filter on {what or ifindex}", r)
        self.attached = True

    @staticmethod
    def _hook(ifindex: int, direction: str) -> _TcHook:
        return _TcHook(sz=ctypes.sizeof(_TcHook), ifindex=ifindex,
                       attach_point=BPF_TC_INGRESS if direction == "ingress" else BPF_TC_EGRESS)

    @classmethod
    def sweep(cls, ifindex: int, directions: Iterable[str] = ("ingress", "egress")) -> int:
        """Remove podpath's clsact filters on ifindex (calling thread's namespace); how many."""
        n = 0
        for d in directions:
            opts = _TcOpts(sz=ctypes.sizeof(_TcOpts), handle=PP_TC_HANDLE, priority=PP_TC_PRIORITY)
            if lib().bpf_tc_detach(ctypes.byref(cls._hook(ifindex, d)), ctypes.byref(opts)) == 0:
                n += 1
        return n

    def close(self) -> None:
        if not getattr(self, "attached", False):
            return
        self.attached = False

        def body():
            _enter(self._netns_fd)
            self.sweep(self.ifindex, [self.direction])

        try:
            in_netns_thread(body)
        finally:
            os.close(self._netns_fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- ring buffer ------------------------------------------------------------------------------

_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class RingBuffer:
    """libbpf ring_buffer over one BPF_MAP_TYPE_RINGBUF; callback(bytes) per record."""

    def __init__(self, map_fd: int, callback: Callable[[bytes], None]) -> None:
        self._errors: list[BaseException] = []

        def sample(_ctx, data, size):
            try:
                callback(ctypes.string_at(data, size))
            except BaseException as e:  # never unwind through C; re-raised by poll()
                self._errors.append(e)
                return -1
            return 0

        self._cb = _SAMPLE_FN(sample)  # keep a reference: libbpf holds the pointer
        self._rb = lib().ring_buffer__new(map_fd, self._cb, None, None)
        if not self._rb:
            raise _fail("cannot create ring buffer reader", ctypes.get_errno() or errno.EINVAL)

    def poll(self, timeout_ms: int) -> int:
        """Wait up to timeout_ms for records; returns how many were consumed."""
        n = lib().ring_buffer__poll(self._rb, int(timeout_ms))
        if self._errors:
            raise self._errors.pop(0)
        if n < 0 and n != -errno.EINTR:
            raise _fail("ring buffer poll failed", n)
        return max(n, 0)

    def consume(self) -> int:
        n = lib().ring_buffer__consume(self._rb)
        if self._errors:
            raise self._errors.pop(0)
        return max(n, 0)

    def close(self) -> None:
        if self._rb:
            lib().ring_buffer__free(self._rb)
            self._rb = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- network namespaces -----------------------------------------------------------------------


def in_netns_thread(fn, netns: str | None = None):
    """Run fn() in a fresh thread inside netns; link fds it creates belong to the process."""
    return run_in(netns, fn)


def ifindex_in(netns: str | None, ifname: str) -> int:
    def get():
        try:
            return socket.if_nametoindex(ifname)
        except OSError:
            raise NodeError(f"no device {ifname} in network namespace {netns or '(current)'}") from None
    return in_netns_thread(get, netns)
