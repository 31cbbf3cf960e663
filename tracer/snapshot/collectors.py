"""Per-namespace collectors: one small function per kernel object, registered in one table.

Every collector is `fn(ctx) -> None` and fills one part of `ctx.host`. live.py runs them in a
thread that has already `setns`'d into the target network namespace, so netlink sockets opened
here, files read under /proc/sys/net and /proc/thread-self/net, and child processes started here
all see that namespace. A collector that cannot read its object raises `Gap("why")` (or anything
else) and the runner records `host.gaps[name]` and goes on with the next one.

Adding an object type = one function decorated with `@collector("name")`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

from ..bundle import (
    Addr,
    Conntrack,
    Fdb,
    Host,
    IpvsDest,
    IpvsService,
    Link,
    Listener,
    Neigh,
    Route,
    Rule,
    Vxlan,
)
from ..errors import BundleError
from ..netfilter.iptables import BUILTIN_CHAINS
from ..netfilter.live import SMALL_TABLE, LiveBackend, LiveSaves, changed_chains
from ..netfilter.netlink import chain_names, generation, list_tables
from ..netns import run_in
from . import early


class Gap(Exception):
    """A collector could not read its object; str(e) is the one-line reason."""


@dataclass
class CtFilter:
    """Optional 5-tuple that limits the conntrack dump (None = any)."""

    src: str | None = None
    dst: str | None = None
    proto: int | None = None  # IP protocol number
    sport: int | None = None
    dport: int | None = None


@dataclass
class CollectCtx:
    host: Host
    ipr: Any  # pyroute2 IPRoute opened inside the namespace
    flow: CtFilter | None = None
    names: dict[int, str] = field(default_factory=dict)  # ifindex -> ifname
    cache: dict[str, Any] = field(default_factory=dict)  # what one collector learned for another
    timeout: float = 10.0  # per child process
    whole_rules: bool = False  # read every iptables rule now, however big (a bundle for a file)


Collector = Callable[[CollectCtx], None]
COLLECTORS: list[tuple[str, Collector]] = []


def collector(name: str) -> Callable[[Collector], Collector]:
    def register(fn: Collector) -> Collector:
        COLLECTORS.append((name, fn))
        return fn

    return register


# Read only in a node's own namespace: a pod's conntrack table is the pod's own (kube-proxy's NAT
# and the stale entries the checks look for live in the node's), and opening it costs ~20 ms, a
# third of a pod namespace's snapshot on a node with 110 pods.
NODE_ONLY = {"conntrack", "ipvs"}


def run_collectors(ctx: CollectCtx, only: set[str] | None = None) -> None:
    for name, fn in COLLECTORS:
        if only is not None and name not in only:
            continue
        if name in NODE_ONLY and ctx.host.kind == "pod" and only is None:
            continue
        try:
            fn(ctx)
        except Gap as e:
            ctx.host.gaps[name] = str(e)
        except Exception as e:  # noqa: BLE001 - a snapshot goes on whatever one collector hits
            ctx.host.gaps[name] = _one_line(f"{type(e).__name__}: {e}")


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- name tables (as iproute2 spells them) -------------------------------------------------

IFF_UP = 0x1
IFF_RUNNING = 0x40
ARPHRD = {1: "ether", 772: "loopback", 65534: "none", 768: "ipip", 776: "sit", 778: "gre"}
SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
RTN_TYPES = {
    1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole",
    7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat", 11: "xresolve",
}
RT_PROTOS = {
    0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra",
    10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp",
    17: "mrouted", 18: "keepalived", 42: "babel", 99: "openr", 186: "bgp", 187: "isis",
    188: "ospf", 189: "rip", 192: "eigrp",
}
RULE_ACTIONS = {1: "lookup", 2: "goto", 3: "nop", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
FIB_RULE_INVERT = 0x2
RTM_F_CLONED = 0x200
RTNH_F_ONLINK = 0x4
NUD = [
    (0x01, "INCOMPLETE"), (0x02, "REACHABLE"), (0x04, "STALE"), (0x08, "DELAY"),
    (0x10, "PROBE"), (0x20, "FAILED"), (0x40, "NOARP"), (0x80, "PERMANENT"),
]
NUD_NOARP, NUD_PERMANENT = 0x40, 0x80
NTF = [(0x02, "self"), (0x04, "master"), (0x10, "extern_learn"), (0x20, "offload"),
       (0x40, "sticky"), (0x80, "router")]
NTF_ROUTER = 0x80
IPPROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 132: "sctp", 58: "icmpv6", 2: "igmp"}
IPS_ASSURED, IPS_SEEN_REPLY = 0x4, 0x2


def proto_number(proto: str | int | None) -> int | None:
    if proto is None or isinstance(proto, int):
        return proto
    p = str(proto).lower()
    if p.isdigit():
        return int(p)
    for num, name in IPPROTO_NAMES.items():
        if name == p:
            return num
    raise ValueError(f"unknown protocol {proto!r}; use tcp, udp, icmp or a number")


def _mac(value: str | None) -> str | None:
    return value.lower() if value else None


def _name(ctx: CollectCtx, index: int | None) -> str | None:
    if not index:
        return None
    return ctx.names.get(index)


# --- links ----------------------------------------------------------------------------------


@collector("links")
def links(ctx: CollectCtx) -> None:
    msgs = list(ctx.ipr.link("dump"))
    ctx.names.update({m["index"]: m.get_attr("IFLA_IFNAME") for m in msgs})
    out = []
    for m in msgs:
        flags = m["flags"]
        info = m.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        if kind is None:
            kind = ARPHRD.get(m["ifi_type"])
        operstate = m.get_attr("IFLA_OPERSTATE")
        no_carrier = bool(flags & IFF_UP) and not flags & IFF_RUNNING
        link = Link(
            name=m.get_attr("IFLA_IFNAME"),
            index=m["index"],
            kind=kind,
            up=bool(flags & IFF_UP),
            carrier=operstate not in ("DOWN", "LOWERLAYERDOWN", "NOTPRESENT") and not no_carrier,
            mtu=m.get_attr("IFLA_MTU"),
            mac=_mac(m.get_attr("IFLA_ADDRESS")) if m["ifi_type"] != 65534 else None,
            master=_name(ctx, m.get_attr("IFLA_MASTER")),
        )
        if kind == "veth":
            peer = m.get_attr("IFLA_LINK")
            link.peer_index = peer if peer else None
            link.peer_netnsid = m.get_attr("IFLA_LINK_NETNSID")
        if kind == "vxlan" and info:
            data = info.get_attr("IFLA_INFO_DATA")
            if data:
                port = data.get_attr("IFLA_VXLAN_PORT")
                link.vxlan = Vxlan(
                    vni=data.get_attr("IFLA_VXLAN_ID"),
                    port=port if port is not None else 8472,
                    local=data.get_attr("IFLA_VXLAN_LOCAL"),
                    dev=_name(ctx, data.get_attr("IFLA_VXLAN_LINK")),
                    learning=bool(data.get_attr("IFLA_VXLAN_LEARNING")),
                )
        if info and info.get_attr("IFLA_INFO_SLAVE_KIND") == "bridge":
            sdata = info.get_attr("IFLA_INFO_SLAVE_DATA")
            mode = sdata.get_attr("IFLA_BRPORT_MODE") if sdata else None
            link.hairpin = bool(mode) if mode is not None else None
        out.append(link)
    ctx.host.links = out


# --- addresses, rules, routes ---------------------------------------------------------------


@collector("addrs")
def addrs(ctx: CollectCtx) -> None:
    out = []
    for m in ctx.ipr.addr("dump", family=socket.AF_INET):
        address = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
        out.append(Addr(
            ifname=_name(ctx, m["index"]) or m.get_attr("IFA_LABEL"),
            address=address,
            prefixlen=m["prefixlen"],
            scope=SCOPES.get(m["scope"], str(m["scope"])),
        ))
    ctx.host.addrs = out


def _prefix(addr: str | None, plen: int) -> str | None:
    if addr is None:
        return None
    return f"{addr}/{plen}"


@collector("rules")
def rules(ctx: CollectCtx) -> None:
    out = []
    for m in ctx.ipr.rule("dump", family=socket.AF_INET):
        fwmark = m.get_attr("FRA_FWMARK")
        fwmask = m.get_attr("FRA_FWMASK")
        action = RULE_ACTIONS.get(m["action"], str(m["action"]))
        table = m.get_attr("FRA_TABLE") or m["table"] or None
        out.append(Rule(
            priority=m.get_attr("FRA_PRIORITY") or 0,
            table=table if action == "lookup" else None,
            action=action,
            src=_prefix(m.get_attr("FRA_SRC"), m["src_len"]) if m["src_len"] else None,
            dst=_prefix(m.get_attr("FRA_DST"), m["dst_len"]) if m["dst_len"] else None,
            iif=m.get_attr("FRA_IIFNAME"),
            oif=m.get_attr("FRA_OIFNAME"),
            fwmark=fwmark if fwmark or fwmask else None,
            fwmask=fwmask if fwmark or fwmask else None,
            invert=bool(m["flags"] & FIB_RULE_INVERT),
        ))
    out.sort(key=lambda r: r.priority)
    ctx.host.rules = out


@collector("routes")
def routes(ctx: CollectCtx) -> None:
    """Routes of main, local and every table an ip rule looks up (all of them if rules failed)."""
    tables = {254, 255} | {r.table for r in ctx.host.rules if r.table is not None}
    all_tables = "rules" in ctx.host.gaps
    out = []
    for m in ctx.ipr.route("dump", family=socket.AF_INET):
        if m["flags"] & RTM_F_CLONED:
            continue
        table = m.get_attr("RTA_TABLE") or m["table"]
        if not all_tables and table not in tables:
            continue
        dst = m.get_attr("RTA_DST")
        base = dict(
            dst="default" if not m["dst_len"] and dst is None else f"{dst or '0.0.0.0'}/{m['dst_len']}",
            table=table,
            type=RTN_TYPES.get(m["type"], str(m["type"])),
            prefsrc=m.get_attr("RTA_PREFSRC"),
            scope=SCOPES.get(m["scope"], str(m["scope"])),
            metric=m.get_attr("RTA_PRIORITY"),
            proto=RT_PROTOS.get(m["proto"], str(m["proto"])),
        )
        multipath = m.get_attr("RTA_MULTIPATH")
        if multipath:  # one Route per nexthop, same dst
            for nh in multipath:
                out.append(Route(
                    **base,
                    gateway=nh.get_attr("RTA_GATEWAY"),
                    dev=_name(ctx, nh["oif"]),
                    onlink=bool(nh["flags"] & RTNH_F_ONLINK),
                ))
            continue
        out.append(Route(
            **base,
            gateway=m.get_attr("RTA_GATEWAY"),
            dev=_name(ctx, m.get_attr("RTA_OIF")),
            onlink=bool(m["flags"] & RTNH_F_ONLINK),
        ))
    ctx.host.routes = out


# --- neighbours and FDB ---------------------------------------------------------------------


def _nud_names(state: int) -> list[str]:
    names = [name for bit, name in NUD if state & bit]
    return names or ["NONE"]


@collector("neigh")
def neigh(ctx: CollectCtx) -> None:
    out = []
    for m in ctx.ipr.neigh("dump", family=socket.AF_INET):
        dst = m.get_attr("NDA_DST")
        if dst is None:
            continue
        state = m["state"]
        if state & NUD_NOARP and not state & NUD_PERMANENT:
            ip = ipaddress.ip_address(dst)
            if ip.is_multicast or dst == "255.255.255.255" or ip.is_loopback:
                continue  # kernel-made NOARP entries for multicast/broadcast/loopback
        out.append(Neigh(
            ifname=_name(ctx, m["ifindex"]),
            dst=dst,
            lladdr=_mac(m.get_attr("NDA_LLADDR")),
            state=_nud_names(state),
            router=bool(m["flags"] & NTF_ROUTER),
        ))
    ctx.host.neigh = out


def _fdb_noise(mac: str, dst: str | None) -> bool:
    # Multicast MACs the kernel adds to every port's own (self) list: 33:33:* (IPv6), 01:00:5e:*
    # (IPv4). The all-zero entry stays: on a VXLAN device it is the default (flood) destination.
    return dst is None and (mac.startswith("33:33:") or mac.startswith("01:00:5e:"))


@collector("fdb")
def fdb(ctx: CollectCtx) -> None:
    if ctx.host.links and not any(l.kind in ("bridge", "vxlan") or l.master for l in ctx.host.links):
        return  # no bridge or VXLAN device: only the kernel's multicast entries, which we drop anyway
    out = []
    for m in ctx.ipr.neigh("dump", family=socket.AF_BRIDGE):
        mac = _mac(m.get_attr("NDA_LLADDR"))
        if mac is None:
            continue
        dst = m.get_attr("NDA_DST")
        if _fdb_noise(mac, dst):
            continue
        flags = [name for bit, name in NTF if m["flags"] & bit]
        state = m["state"]
        if state & NUD_PERMANENT:
            flags.append("permanent")
        elif state & NUD_NOARP:
            flags.append("static")
        out.append(Fdb(
            ifname=_name(ctx, m["ifindex"]),
            mac=mac,
            master=_name(ctx, m.get_attr("NDA_MASTER")),
            dst=dst,
            vlan=m.get_attr("NDA_VLAN"),
            flags=flags,
        ))
    ctx.host.fdb = out


# --- sysctls --------------------------------------------------------------------------------

CONF_KEYS = ("rp_filter", "forwarding", "proxy_arp", "accept_local", "arp_ignore")
# Whether the kernel may (re)send ARP for a FAILED/INCOMPLETE neighbour at all.
NEIGH_KEYS = ("mcast_solicit", "ucast_solicit", "app_solicit")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


@collector("sysctls")
def sysctls(ctx: CollectCtx) -> None:
    """Read /proc/sys/net from this (setns'd) thread: the files follow the opener's netns."""
    base = "/proc/sys/net"
    out: dict[str, str] = {}
    value = _read(f"{base}/ipv4/ip_forward")
    if value is None:
        raise Gap(f"cannot read {base}/ipv4/ip_forward")
    out["net.ipv4.ip_forward"] = value
    try:
        devs = sorted(os.listdir(f"{base}/ipv4/conf"))
    except OSError as e:
        raise Gap(f"cannot list {base}/ipv4/conf: {e.strerror}") from None
    # all, default, then devices (names kept as the kernel spells them, dots included)
    devs = ["all", "default"] + [d for d in devs if d not in ("all", "default")]
    for dev in devs:
        for key in CONF_KEYS:
            v = _read(f"{base}/ipv4/conf/{dev}/{key}")
            if v is not None:
                out[f"net.ipv4.conf.{dev}.{key}"] = v
        for key in NEIGH_KEYS:
            v = _read(f"{base}/ipv4/neigh/{dev}/{key}")
            if v is not None:
                out[f"net.ipv4.neigh.{dev}.{key}"] = v
    for key in ("bridge-nf-call-iptables",):
        v = _read(f"{base}/bridge/{key}")
        if v is not None:
            out[f"net.bridge.{key}"] = v
    ctx.host.sysctls = out
    for link in ctx.host.links:
        fwd = out.get(f"net.ipv4.conf.{link.name}.forwarding")
        link.forwarding = None if fwd is None else fwd == "1"


# --- netfilter (child processes inherit this thread's netns) --------------------------------


def _run(ctx: CollectCtx, argv: list[str]) -> str:
    exe = shutil.which(argv[0])
    if exe is None:
        raise Gap(f"{argv[0]} not installed")
    try:
        p = subprocess.run(
            [exe, *argv[1:]], capture_output=True, timeout=ctx.timeout,
            env=early.tool_env(),
        )
    except subprocess.TimeoutExpired:
        raise Gap(f"{argv[0]} timed out after {ctx.timeout:g} s") from None
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        raise Gap(_one_line(f"{' '.join(argv)} failed (exit {p.returncode}): "
                            f"{err[-1] if err else 'no message'}"))
    # bytes decoded as they are: text=True's newline translation costs 0.1 s on 12 MB of rules
    return p.stdout.decode(errors="replace")


def save_tables(text: str) -> list[str]:
    """The tables an iptables-save text holds (its `*table` lines, as `^\\*(\\S+)` finds them),
    found without splitting the text or running a regex over all of it (12 MB at 10,000 Services)."""
    out, at = [], 0 if text.startswith("*") else text.find("\n*")
    while at != -1:
        start = at + 1 if text[at] == "\n" else at  # the '*'
        end = text.find("\n", start)
        end = len(text) if end == -1 else end
        line = text[start + 1:end]
        if line and not line[0].isspace():
            out.append(line.split(None, 1)[0])
        at = text.find("\n*", end)
    return out


def _has_table(text: str) -> bool:
    return bool(save_tables(text))


def _nf_tables(ctx: CollectCtx) -> list[tuple[str, str, int | None]] | None:
    """The namespace's nf_tables tables, listed once over netlink for both netfilter collectors;
    None when netlink would not say (then the tools are asked)."""
    if "nf_tables" not in ctx.cache:
        try:
            ctx.cache["nf_tables"] = list_tables()
        except Exception:  # noqa: BLE001 - ask the tools instead
            ctx.cache["nf_tables"] = None
    return ctx.cache["nf_tables"]


def _no_nf_tables(ctx: CollectCtx) -> bool:
    """No nf_tables table of any family: iptables-nft-save and nft have nothing to print, and their
    two child processes (most of a pod namespace's snapshot) are skipped."""
    return _nf_tables(ctx) == []


@collector("iptables")
def iptables_nft(ctx: CollectCtx) -> None:
    if _no_nf_tables(ctx):
        return
    tool = "iptables-nft-save" if shutil.which("iptables-nft-save") else "iptables-save"
    live = _live_iptables(ctx) if tool == "iptables-nft-save" and not ctx.whole_rules else None
    if live is not None:
        ctx.host.iptables_save = LiveSaves(ctx.host.iptables_save, live={"nft": live})
        return
    text = early.claim(ctx.host.inode, ctx.timeout) if tool == early.TOOL and ctx.host.inode else None
    if text is None:
        text = _run(ctx, [tool, "-c"])
    if _has_table(text):
        ctx.host.iptables_save["nft"] = text


# From this many chains in iptables-nft's tables (kube-proxy writes 3 per Service), a live snapshot
# reads the rules per chain as the model needs them (netfilter/live.py).
LAZY_CHAINS = 1000
_JUMP = re.compile(r" -[jg] ([^ \t\r\n\"]+)")


def _live_iptables(ctx: CollectCtx) -> LiveBackend | None:
    """A big namespace's iptables-nft rules as a LiveBackend: chain names over netlink, small
    tables and the built-in chains of big ones read now, any other chain when a walk reaches it;
    None for a namespace small enough to save whole."""
    if shutil.which("iptables-nft") is None:
        return None
    try:
        names = chain_names()
    except OSError:
        return None
    tables = {t: n for t, n in names.items() if t in BUILTIN_CHAINS}
    if sum(map(len, tables.values())) < LAZY_CHAINS:
        return None
    timeout, netns, name = ctx.timeout, ctx.host.netns, ctx.host.name
    try:
        gen = generation()
        preread = _preread(tables, timeout)
        if generation() != gen:
            return None  # a commit (kube-proxy) in between: read it whole, as one generation
    except (Gap, OSError):
        return None  # iptables -S refused (an odd table): iptables-nft-save says why, or reads it

    seen = {"gen": gen}

    def read_chains(table: str, chains: list[str] | None) -> str:
        def read(chains=chains) -> tuple[str, int]:  # a whole big table takes seconds on a busy node
            text = read_iptables_chains("nft", {table: chains}, timeout if chains is not None else max(timeout, 60.0))
            return text, generation()
        try:
            text, now = run_in(netns, read)
            if now == seen["gen"]:
                return text
            # A commit since (kube-proxy syncs every few seconds on a busy node): read the whole
            # table as one generation, and go on only if every chain the walk already read is the
            # same in it; chains of two different rulesets never make one walk.
            whole, now = run_in(netns, lambda: read(None))
        except (Gap, OSError) as e:
            raise BundleError(f"reading the rules of {name} again: {e}") from None
        changed = changed_chains(backend, table, whole)
        if changed:
            raise BundleError(f"{name}'s iptables rules changed while podpath read them (nf_tables generation "
                              f"{seen['gen']} -> {now}, e.g. a kube-proxy sync; chain {changed[0]} differs); "
                              "run it again")
        seen["gen"] = now
        return whole

    def read_all() -> str:
        def save() -> str:
            return _run(CollectCtx(host=ctx.host, ipr=None, timeout=max(timeout, 60.0)),
                        ["iptables-nft-save", "-c"])
        try:
            return run_in(netns, save)
        except Gap as e:
            raise BundleError(f"reading the rules of {name}: {e}") from None

    backend = LiveBackend(tables, preread, read_chains, read_all, "iptables-save (nf_tables)")
    return backend


def _preread(tables: dict[str, list[str]], timeout: float) -> dict[str, list[str]]:
    """What a live snapshot reads of iptables-nft's tables up front (in the namespace's thread)."""
    preread = {}
    for table, chains in tables.items():
        known = set(chains)
        if len(chains) <= SMALL_TABLE:
            preread[table] = [read_iptables_chains("nft", {table: None}, timeout)]
            continue
        text = read_iptables_chains("nft", {table: [c for c in BUILTIN_CHAINS[table] if c in known]}, timeout)
        # and the chains the built-in ones jump to (KUBE-SERVICES, KUBE-POSTROUTING...): every walk
        # through the table enters some of them, and here they are read side by side, with the snapshot
        jumps = [c for c in dict.fromkeys(_JUMP.findall(text)) if c in known and c not in BUILTIN_CHAINS[table]]
        preread[table] = [text] + ([read_iptables_chains("nft", {table: jumps}, timeout)] if jumps else [])
    return preread


@collector("iptables-legacy")
def iptables_legacy(ctx: CollectCtx) -> None:
    # The kernel lists this namespace's legacy x_tables tables: none (the usual case on nft-based
    # nodes) means nothing to save, and no child process (a third of the snapshot's time)
    try:
        with open("/proc/thread-self/net/ip_tables_names") as f:
            if not f.read().strip():
                return
    except OSError:
        return  # no legacy iptables in this kernel
    text = _run(ctx, ["iptables-legacy-save", "-c"])
    if _has_table(text):
        ctx.host.iptables_save["legacy"] = text


@collector("nftables")
def nftables(ctx: CollectCtx) -> None:
    """The nf_tables tables iptables-save did not already print, as `nft -j` JSON.

    iptables-nft keeps its rules in nf_tables too, so `nft -j list ruleset` repeats every
    iptables rule, and on a node with 10,000 Services it takes seconds and most of the bundle.
    The tables are listed over netlink (milliseconds), the family-ip ones the iptables collector
    already saved are kept as bare table entries (the model skips them anyway, and knows they
    exist), and each other table is read with `nft -j list table`."""
    saves = ctx.host.iptables_save
    live = saves.pending("nft") if isinstance(saves, LiveSaves) else None
    ipt = set(live.tables) if live is not None else set(save_tables(saves.get("nft", "")))
    tables = _nf_tables(ctx)
    if tables is None:  # no netlink answer: read the whole ruleset as before
        ctx.host.nftables = _nft_json(ctx, ["nft", "-j", "list", "ruleset"])
        return
    items: list[dict] = []
    for family, name, handle in tables:
        if family == "ip" and name in ipt:
            items.append({"table": {"family": family, "name": name, "handle": handle}})
            continue
        got = _nft_json(ctx, ["nft", "-j", "list", "table", family, name])["nftables"]
        items += [x for x in got if "metainfo" not in x]
    ctx.host.nftables = {"nftables": items}


# `iptables -S CHAIN -v` reads one chain (iptables-nft asks the kernel for that chain's rules
# only: 5-90 ms at 10,000 Services, against 0.7 CPU-s for iptables-nft-save of the whole node).
LISTERS = {"nft": ("iptables-nft", "iptables"), "legacy": ("iptables-legacy",)}


def read_iptables_chains(backend: str, chains: dict[str, list[str] | None], timeout: float = 30.0) -> str:
    """The `iptables-save -c` text of some chains ({table: [chain]}, or {table: None} for the
    whole table) of one backend ("nft", "legacy"), read with one `iptables -t T -S [C] -v` each;
    a chain gone since is left out. Call it from a thread inside the namespace (netns.run_in)."""
    from ..netfilter.iptables import listing_to_save

    exe = next((x for x in map(shutil.which, LISTERS[backend]) if x), None)
    if exe is None:
        raise Gap(f"{LISTERS[backend][0]} not installed")
    env = early.tool_env()
    out = []
    for table, names in chains.items():
        listed = []
        wanted = names if names is not None else [None]
        for at in range(0, len(wanted), 8):  # a few at once: each is mostly process start-up
            batch = wanted[at:at + 8]
            procs = [(chain, subprocess.Popen([exe, "-t", table, "-S", *([chain] if chain else []), "-v"],
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
                     for chain in batch]
            for chain, proc in procs:
                what = f"{os.path.basename(exe)} -t {table} -S{' ' + chain if chain else ''}"
                try:
                    stdout, stderr = proc.communicate(timeout=timeout)
                except subprocess.TimeoutExpired:
                    for _, p in procs:
                        p.kill()
                        p.communicate()
                    raise Gap(f"{what} timed out after {timeout:g} s") from None
                if proc.returncode == 0:
                    listed.append(stdout)
                elif proc.returncode != 1 or chain is None:  # 1: no such chain (any more)
                    for _, p in procs:
                        if p.poll() is None:
                            p.kill()
                        p.communicate()
                    err = stderr.strip().splitlines()
                    raise Gap(_one_line(f"{what} failed (exit {proc.returncode}): {err[-1] if err else 'no message'}"))
        if listed:
            out.append(listing_to_save(table, "".join(listed)))
    return "".join(out)


def read_nft_tables(tables: list[tuple[str, str]], timeout: float = 30.0) -> dict:
    """`nft -j list table F N` of each (family, name), as one `nft -j` document (metainfo
    dropped). Call it from a thread inside the namespace."""
    ctx = CollectCtx(host=None, ipr=None, timeout=timeout)  # type: ignore[arg-type]
    items: list[dict] = []
    for family, name in tables:
        try:
            got = _nft_json(ctx, ["nft", "-j", "list", "table", family, name])["nftables"]
        except Gap:
            continue  # the table is gone
        items += [x for x in got if "metainfo" not in x]
    return {"nftables": items}


def _nft_json(ctx: CollectCtx, argv: list[str]) -> dict:
    text = _run(ctx, argv)
    try:
        data = json.loads(text) if text.strip() else {"nftables": []}
    except json.JSONDecodeError as e:
        raise Gap(f"nft -j printed invalid JSON ({e.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("nftables"), list):
        raise Gap("nft -j printed JSON without an 'nftables' list")
    return data


# --- IPVS, conntrack, listeners -------------------------------------------------------------

IPVS_FWD = {0: "Masq", 1: "Local", 2: "Tunnel", 3: "Route", 4: "Bypass"}


def ipvs_service(nla: Any) -> IpvsService:
    """An IpvsService from a pyroute2 IPVS_CMD_ATTR_SERVICE nla (anything with get_attr)."""
    fwmark = nla.get_attr("IPVS_SVC_ATTR_FWMARK")
    proto = nla.get_attr("IPVS_SVC_ATTR_PROTOCOL")
    return IpvsService(
        proto=IPPROTO_NAMES.get(proto, str(proto)).upper(),
        address=None if fwmark else nla.get_attr("IPVS_SVC_ATTR_ADDR"),
        port=None if fwmark else nla.get_attr("IPVS_SVC_ATTR_PORT"),
        scheduler=nla.get_attr("IPVS_SVC_ATTR_SCHED_NAME") or "rr",
        fwmark=fwmark or None,
    )


def ipvs_dest(nla: Any) -> IpvsDest:
    """An IpvsDest from a pyroute2 IPVS_CMD_ATTR_DEST nla."""
    fwd = (nla.get_attr("IPVS_DEST_ATTR_FWD_METHOD") or 0) & 0x7
    return IpvsDest(
        address=nla.get_attr("IPVS_DEST_ATTR_ADDR"),
        port=nla.get_attr("IPVS_DEST_ATTR_PORT"),
        forward=IPVS_FWD.get(fwd, str(fwd)),
        weight=nla.get_attr("IPVS_DEST_ATTR_WEIGHT") or 0,
        active=nla.get_attr("IPVS_DEST_ATTR_ACTIVE_CONNS") or 0,
        inactive=nla.get_attr("IPVS_DEST_ATTR_INACT_CONNS") or 0,
    )


@collector("ipvs")
def ipvs(ctx: CollectCtx) -> None:
    from pyroute2 import IPVS, IPVSService
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        sock = IPVS()
    except NetlinkError as e:
        if e.code == 2:  # generic netlink family "IPVS" not registered
            raise Gap("kernel has no IPVS (ip_vs)") from None
        raise
    except Exception as e:
        if "IPVS" in str(e) or "family" in str(e).lower():
            raise Gap("kernel has no IPVS (ip_vs)") from None
        raise
    out = []
    with sock:
        for msg in sock.service("dump"):
            service = ipvs_service(msg.get_attr("IPVS_CMD_ATTR_SERVICE"))
            for d in sock.dest("dump", service=IPVSService.from_message(msg)):
                service.dests.append(ipvs_dest(d.get_attr("IPVS_CMD_ATTR_DEST")))
            out.append(service)
    ctx.host.ipvs = out


def _ct_match(flow: CtFilter, e: Any) -> bool:
    """The flow's packets are the entry's original direction; after DNAT the flow's dst may be
    the endpoint that answers (reply src), so either side counts for dst and dport."""
    o, r = e.tuple_orig, e.tuple_reply
    if flow.proto is not None and o.proto != flow.proto:
        return False
    if flow.src is not None and flow.src not in (o.saddr, r.daddr):
        return False
    if flow.dst is not None and flow.dst not in (o.daddr, r.saddr):
        return False
    if flow.sport is not None and flow.sport not in (o.sport, r.dport):
        return False
    if flow.dport is not None and flow.dport not in (o.dport, r.sport):
        return False
    return True


@collector("conntrack")
def conntrack(ctx: CollectCtx) -> None:
    from pyroute2 import Conntrack as CT
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    flow = ctx.flow
    kernel_filter = None
    if flow is not None and (flow.src is not None or flow.proto is not None):
        # kernel-side filter on what survives NAT in the original tuple: source and protocol
        kernel_filter = NFCTAttrTuple(saddr=flow.src, proto=flow.proto)
    out = []
    try:
        with CT() as ct:
            for e in ct.dump_entries(tuple_orig=kernel_filter):
                if flow is not None and not _ct_match(flow, e):
                    continue
                o, r = e.tuple_orig, e.tuple_reply
                if e.protoinfo is not None:
                    state = e.protoinfo.state_name()
                elif not (e.status or 0) & IPS_SEEN_REPLY:
                    state = "UNREPLIED"
                elif (e.status or 0) & IPS_ASSURED:
                    state = "ASSURED"
                else:
                    state = None
                out.append(Conntrack(
                    proto=IPPROTO_NAMES.get(o.proto, str(o.proto)),
                    src=o.saddr, dst=o.daddr, sport=o.sport, dport=o.dport,
                    reply_src=r.saddr, reply_dst=r.daddr, reply_sport=r.sport,
                    reply_dport=r.dport, state=state, mark=e.mark,
                ))
    except NetlinkError as e:
        raise Gap(_one_line(f"conntrack netlink dump failed: {e}")) from None
    except OSError as e:
        raise Gap(_one_line(f"kernel has no conntrack netlink (nf_conntrack_netlink): {e}")) from None
    ctx.host.conntrack = out


def _listen_addr(family: int, addr: str, attrs: dict) -> str | None:
    if family == socket.AF_INET:
        return addr
    if addr == "::":
        return None if attrs.get("INET_DIAG_SKV6ONLY") else "0.0.0.0"
    if addr.startswith("::ffff:") and "." in addr:
        return addr[7:]
    return None  # IPv6-only address: not reachable over IPv4


@collector("listeners")
def listeners(ctx: CollectCtx) -> None:
    from pyroute2 import DiagSocket
    from pyroute2.netlink.diag import SS_LISTEN

    TCP_CLOSE = 7  # an unconnected (bound) UDP socket
    seen: set[tuple[str, str, int]] = set()
    out = []
    with DiagSocket() as ds:
        ds.bind()
        for proto, ipproto, states in (("tcp", socket.IPPROTO_TCP, 1 << SS_LISTEN),
                                       ("udp", socket.IPPROTO_UDP, 1 << TCP_CLOSE)):
            for family in (socket.AF_INET, socket.AF_INET6):
                for m in ds.get_sock_stats(family=family, states=states, protocol=ipproto):
                    port = m["idiag_sport"]
                    if not port:
                        continue
                    addr = _listen_addr(family, m["idiag_src"], dict(m["attrs"]))
                    if addr is None or (proto, addr, port) in seen:
                        continue
                    seen.add((proto, addr, port))
                    out.append(Listener(proto=proto, address=addr, port=port))
    out.sort(key=lambda l: (l.proto, l.port, l.address))
    ctx.host.listeners = out


# --- programs on the path: tc, tcx, XDP, netfilter BPF links ------------------------------------


@collector("programs")
def programs(ctx: CollectCtx) -> None:
    """What is attached where packets pass (bpfprogs.py); what could not be read becomes the gap."""
    from . import bpfprogs

    found, problems = bpfprogs.read(ctx.ipr, ctx.host.kind)
    ctx.host.programs = found
    if problems:
        raise Gap(_one_line("; ".join(dict.fromkeys(problems))))
