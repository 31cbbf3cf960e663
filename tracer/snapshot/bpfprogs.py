"""What is attached where packets pass in one namespace: tc (clsact) filters, tcx and XDP programs
on each device, and BPF netfilter links; with each program's name and tag, and the processes that
hold it. Called by the `programs` collector from a thread already inside the namespace.

A real node carries programs podpath did not load (another CNI's leftovers, security agents); a
drop in one of them shows in the kernel only as TC_EGRESS/TC_INGRESS, so the snapshot must name it.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from ..bundle import Attachment
from ..hooks import NF_HOOKS
from ..netns import inode
from ..probes import libbpf

OURS_PREFIX = "pp_"  # every program podpath loads is named pp_* (bpf/*.bpf.c)
TC_PARENTS = {"tc_ingress": 0xFFFFFFF2, "tc_egress": 0xFFFFFFF3}  # clsact's TC_H_MIN_INGRESS/EGRESS
TCX_HOOKS = {"tcx_ingress": libbpf.BPF_TCX_INGRESS, "tcx_egress": libbpf.BPF_TCX_EGRESS}
# Netlink attributes of a bpf filter's TCA_OPTIONS that pyroute2 0.9 leaves undecoded.
TCA_BPF_FLAGS, TCA_BPF_TAG, TCA_BPF_ID = 8, 10, 11
TCA_BPF_FLAG_ACT_DIRECT = 1
NF_HOOK_NAMES = dict(enumerate(NF_HOOKS))
NF_FAMILIES = {2: "ip", 10: "ip6", 1: "inet", 7: "bridge"}


class Holders:
    """Which processes hold which BPF program and link ids (from /proc/*/fdinfo), read once."""

    def __init__(self) -> None:
        self.progs: dict[int, list[str]] = {}
        self.links: dict[int, list[str]] = {}
        self.pids: dict[str, int] = {}  # "pid/comm" -> pid
        me = os.getpid()  # this snapshot's own short-lived fds (prog_info) are no owner
        for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != me):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            who = None
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target not in ("anon_inode:bpf-prog", "anon_inode:bpf_link"):
                    continue
                fields = _fdinfo(pid, fd)
                if who is None:
                    who = f"{pid}/{_comm(pid)}"
                    self.pids[who] = int(pid)
                if "prog_id" in fields:
                    _add(self.progs, fields["prog_id"], who)
                if "link_id" in fields:
                    _add(self.links, fields["link_id"], who)

    def in_netns(self, who: str, ino: int) -> bool:
        """Whether the holder process (or one of its threads) is in the namespace with inode ino."""
        pid = self.pids[who]
        paths = [f"/proc/{pid}/ns/net"]
        try:
            paths += [f"/proc/{pid}/task/{t}/ns/net" for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            pass
        return any(inode(p) == ino for p in paths)  # a thread that exited meanwhile is None


def _add(table: dict[int, list[str]], key: int, who: str) -> None:
    owners = table.setdefault(key, [])
    if who not in owners:
        owners.append(who)


def _fdinfo(pid: str, fd: str) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("prog_id", "link_id"):
                    out[key] = int(value.strip())
    except (OSError, ValueError):
        pass
    return out


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _nlas(raw: bytes) -> dict[int, bytes]:
    """type -> payload of a flat netlink attribute block."""
    out, off = {}, 0
    while off + 4 <= len(raw):
        length, kind = struct.unpack_from("=HH", raw, off)
        if length < 4:
            break
        out[kind & 0x3FFF] = raw[off + 4:off + length]
        off += (length + 3) & ~3
    return out


def _bpf_options(opts: Any) -> dict[int, bytes]:
    """The raw attributes of a bpf filter's TCA_OPTIONS (prog id and tag are not decoded by pyroute2)."""
    try:
        return _nlas(bytes(opts.data[opts.offset + 4:opts.offset + opts.length]))
    except (AttributeError, TypeError):
        return {}


def tc_filters(ipr: Any, ifindex: int, device: str, qdisc: str) -> list[Attachment]:
    """Filters of a device's clsact qdisc (or of the older ingress qdisc: ingress side only)."""
    out = []
    for hook, parent in TC_PARENTS.items():
        if hook == "tc_egress" and qdisc != "clsact":
            continue
        for m in ipr.get_filters(index=ifindex, parent=parent):
            if not m["handle"]:
                continue  # the per-priority chain head, not a filter
            kind = m.get_attr("TCA_KIND")
            a = Attachment(hook=hook, kind="clsact", device=device, priority=m["info"] >> 16,
                           handle=hex(m["handle"]), filter=kind)
            if kind == "bpf":
                raw = _bpf_options(m.get_attr("TCA_OPTIONS"))
                if TCA_BPF_ID in raw:
                    a.id = struct.unpack("=I", raw[TCA_BPF_ID][:4])[0]
                if TCA_BPF_TAG in raw:
                    a.tag = raw[TCA_BPF_TAG][:8].hex()
                flags = struct.unpack("=I", raw[TCA_BPF_FLAGS][:4])[0] if TCA_BPF_FLAGS in raw else 0
                a.detail = "direct-action" if flags & TCA_BPF_FLAG_ACT_DIRECT else None
            out.append(a)
    return out


def tcx_programs(ifindex: int, device: str) -> list[Attachment]:
    out = []
    for hook, atype in TCX_HOOKS.items():
        progs, links = libbpf.prog_query(ifindex, atype)
        for pos, (prog_id, link_id) in enumerate(zip(progs, links)):
            out.append(Attachment(hook=hook, kind="tcx", device=device, id=prog_id, priority=pos,
                                  link_id=link_id or None))
    return out


XDP_MODES = (("IFLA_XDP_DRV_PROG_ID", "xdpdrv"), ("IFLA_XDP_SKB_PROG_ID", "xdpgeneric"),
             ("IFLA_XDP_HW_PROG_ID", "xdpoffload"))  # as `ip link set dev D <mode> off` names them


def xdp_programs(msgs: list[Any]) -> list[Attachment]:
    """XDP from IFLA_XDP of each link (rtnetlink dump): one per attached mode, with its prog id."""
    out = []
    for m in msgs:
        xdp = m.get_attr("IFLA_XDP")
        if not xdp or not xdp.get_attr("IFLA_XDP_ATTACHED"):
            continue
        for key, mode in XDP_MODES:
            prog_id = xdp.get_attr(key)
            if prog_id:
                out.append(Attachment(hook="xdp", kind="xdp", device=m.get_attr("IFLA_IFNAME"), id=prog_id,
                                      detail=f"mode {mode}"))
    return out


def netfilter_links() -> list[Attachment]:
    """Every BPF netfilter link on the machine (the kernel does not say which namespace each is in)."""
    out = []
    for link in libbpf.links_info():
        if link["type"] != libbpf.BPF_LINK_TYPE_NETFILTER:
            continue
        hook = NF_HOOK_NAMES.get(link["hooknum"], str(link["hooknum"]))
        fam = NF_FAMILIES.get(link["pf"], str(link["pf"]))
        out.append(Attachment(hook="netfilter", kind="nf-link", id=link["prog_id"], link_id=link["id"],
                              priority=link["priority"], detail=f"{fam} {hook}"))
    return out


def name_programs(items: list[Attachment]) -> list[Attachment]:
    """Fill name and tag from the kernel (BPF_PROG_GET_FD_BY_ID + BPF_OBJ_GET_INFO_BY_FD); the
    attachments whose program is gone meanwhile (a detaching trace's) are left out."""
    out = []
    for a in items:
        if a.id is not None:
            info = libbpf.prog_info(a.id)
            if info is None:
                continue
            a.name, a.tag = info[0] or None, info[1]
            a.ours = bool(a.name and a.name.startswith(OURS_PREFIX))
        out.append(a)
    return out


def read(ipr: Any, kind: str) -> tuple[list[Attachment], list[str]]:
    """Everything attached in the calling thread's namespace; and what could not be read.

    kind: the Host's kind. A netfilter link is placed in its holders' namespaces (a loader thread that
    entered another namespace to attach it escapes this); one nobody holds (pinned) is listed on
    every node, saying its namespace is unknown."""
    problems: list[str] = []
    msgs = list(ipr.link("dump"))
    found: list[Attachment] = []
    try:  # one qdisc dump says which devices can hold filters at all (most have none)
        qdiscs = {q["index"]: q.get_attr("TCA_KIND") for q in ipr.get_qdiscs()
                  if q.get_attr("TCA_KIND") in ("clsact", "ingress")}
    except Exception as e:  # noqa: BLE001
        problems.append(f"tc qdiscs: {e}")
        qdiscs = {}
    tcx = True
    for m in msgs:
        index, device = m["index"], m.get_attr("IFLA_IFNAME")
        try:
            found += tc_filters(ipr, index, device, qdiscs[index]) if index in qdiscs else []
        except Exception as e:  # noqa: BLE001 - one device's dump failing leaves the others
            problems.append(f"tc filters of {device}: {e}")
        try:
            found += tcx_programs(index, device) if tcx else []
        except libbpf.PermissionNeeded as e:  # the same answer for every device: say it once
            problems.append(f"tcx: {e}")
            tcx = False
        except Exception as e:  # noqa: BLE001
            problems.append(f"tcx of {device}: {e}")
    found += xdp_programs(msgs)
    try:
        nf = netfilter_links()
    except Exception as e:  # noqa: BLE001
        problems.append(f"netfilter links: {e}")
        nf = []
    try:
        found, nf = name_programs(found), name_programs(nf)
    except Exception as e:  # noqa: BLE001
        problems.append(f"program names: {e}")
    holders = Holders() if any(not a.ours for a in found + nf) else None
    here = inode(None)
    for a in found:
        if holders is not None and a.id is not None:
            a.owners = holders.links.get(a.link_id or -1) or holders.progs.get(a.id, [])
    for a in nf:
        if a.ours:
            continue  # podpath's own tracing links: held by podpath, placed by no process netns
        owners = (holders.links.get(a.link_id or -1) or []) if holders else []
        a.owners = owners
        inside = [w for w in owners if holders.in_netns(w, here)]
        if inside:
            a.detail += f"; netns of holder {inside[0]} (the kernel does not report a netfilter link's netns)"
            found.append(a)
        elif not owners and kind == "node":  # pinned: may be this namespace's, say so rather than hide it
            a.detail += "; netns unknown: the kernel does not report a netfilter link's netns and no process holds it"
            found.append(a)
    return found, problems


__all__ = ["read", "OURS_PREFIX", "Holders"]
