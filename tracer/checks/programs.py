"""Foreign programs on the path: tc filters, tcx and XDP programs podpath did not load (another CNI's
leftovers, security agents, a half-removed tool) on a device the packet crosses, and BPF netfilter
links in a namespace it crosses. Any of them can drop the packet: the kernel then says only
TC_EGRESS / TC_INGRESS, so these findings are what the trace blames for such a drop."""

from __future__ import annotations

from .causes import Cause
from ..bundle import Attachment, Host
from .base import INFO, WARNING, Context, Finding, for_host, ip_cmd, ns_cmd

DEVICE_HOOKS = ("tc_ingress", "tc_egress", "tcx_ingress", "tcx_egress", "xdp")
# Hops that decide (the device of a local route is lo, but the packet never crosses lo's tc hooks).
DECISIONS = ("route", "neigh", "fdb")


def foreign_programs(ctx: Context) -> list[Finding]:
    """A warning per foreign program on a device of the expected path (every device without a flow),
    and per netfilter link placed in a namespace of the path; netfilter links whose namespace the
    kernel does not tell are listed once per node of the path, as info."""
    devices = {(h.host, h.device) for p in ctx.paths for h in p.hops if h.device and h.point not in DECISIONS}
    hosts = {host for host, _ in devices}
    out = []
    for host in ctx.bundle.hosts:
        if ctx.paths and host.name not in hosts:
            continue
        for a in host.programs:
            if a.ours:
                continue
            if a.hook in DEVICE_HOOKS:
                if ctx.paths and (host.name, a.device) not in devices:
                    continue
                where = f"{a.device} {a.hook.replace('_', ' ')}"
                severity = WARNING
            elif a.hook == "netfilter":
                placed = "netns unknown" not in (a.detail or "")
                where = f"the netfilter {(a.detail or '').split(';')[0]} hook at priority {a.priority}"
                severity = WARNING if placed else INFO
            else:
                continue
            what = describe(a)
            msg = (f"{what} is attached to {where} on {host.name} and podpath did not load it: it sees, and may "
                   "drop, every packet there (another CNI's leftover, a security agent?)")
            if severity == INFO:
                msg += "; the kernel does not say which namespace a netfilter link is in: it may not be this one"
            out.append(for_host(ctx, host, Cause.TC, a.text(), msg, removal(host, a), severity=severity,
                                device=a.device, evidence=[("program", a.text())]))
    return out


def describe(a: Attachment) -> str:
    if a.id is None:
        return f"a tc {a.filter or ''} filter (pref {a.priority}, handle {a.handle})".replace("  ", " ")
    who = f", held by {', '.join(a.owners)}" if a.owners else ""
    return f"BPF program {a.name or '?'} (id {a.id}, tag {a.tag}{who})"


def removal(host: Host, a: Attachment) -> str:
    """The command that removes it, prefixed for where it runs; and who would put it back."""
    holder = f"  # held by {', '.join(a.owners)}: stop or reconfigure it, or it may attach it again" \
        if a.owners else ""
    if a.kind == "clsact":
        direction = "ingress" if a.hook == "tc_ingress" else "egress"
        return ns_cmd(host, f"tc filter del dev {a.device} {direction} pref {a.priority} handle {a.handle}"
                      + (f" {a.filter}" if a.filter else "")) + holder
    if a.link_id is not None:  # tcx, XDP or netfilter link: detaching it leaves the holder a dead link
        return f"bpftool link detach id {a.link_id}" + holder
    if a.kind == "xdp":
        return ip_cmd(host, f"link set dev {a.device} {mode(a) or 'xdp'} off") + holder
    if a.kind == "tcx":
        return ns_cmd(host, f"bpftool net detach {a.hook} dev {a.device}") + "  # bpftool 7.3+" + holder
    return f"stop the process that loaded program {a.id}" + holder


def mode(a: Attachment) -> str | None:
    d = a.detail or ""
    return d.split("mode ", 1)[1].split(";")[0].strip() if "mode " in d else None
