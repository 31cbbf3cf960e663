"""Neighbour tables: `ip neigh`, `arp -a` and `arp -n`."""

from __future__ import annotations

import re

from ...bundle import Neigh
from .state import ImportCtx, after_value_key
from .text import Words, is_ipv4, is_ipv6, mac, num


# --- ip neigh -----------------------------------------------------------------------------------

NUD_STATES = {"PERMANENT", "NOARP", "REACHABLE", "STALE", "NONE", "INCOMPLETE", "DELAY", "PROBE", "FAILED"}
NEIGH_FLAGS = {"router", "proxy", "extern_learn", "offload", "managed", "extern_valid"}
NEIGH_KEYS = {"dev", "lladdr", "probes", "ref", "protocol", "vrf", "nud"}


def detect_ip_neigh(w: Words, i: int, ctx: ImportCtx) -> int:
    if not (is_ipv4(w[i]) or (is_ipv6(w[i]) and "/" not in w[i])) or after_value_key(w, i):
        return 0
    k = i + 1
    if w[k] == "dev" and w[k + 1]:
        k += 2
    t = w[k]
    return 2 if not w.at_bol(k) and (t in NUD_STATES or t in NEIGH_FLAGS or t in ("lladdr", "used", "ref",
                                                                                 "probes")) else 0


def parse_ip_neigh(w: Words, i: int, ctx: ImportCtx) -> int:
    """`10.244.1.0 dev flannel.1 lladdr 3a:f1:0c:5d:01:9e PERMANENT`, `10.244.0.77 dev cni0 FAILED`."""
    dst, k = w[i], i + 1
    keys: dict[str, str] = {}
    states, router = [], False
    while k < w.n and not w.at_bol(k):
        t = w[k]
        if t in NEIGH_KEYS and w[k + 1]:
            keys[t] = w[k + 1]
            k += 2
        elif t == "used":  # `used 1/1/1probes 4`: iproute2 6.1 glues "probes" to the counters
            k += 2
            if w[k - 1].endswith("probes") and num(w[k]) is not None:
                k += 1
        elif t in NUD_STATES:
            states.append(t)
            k += 1
        elif t in NEIGH_FLAGS:
            router = router or t == "router"
            k += 1
        else:
            break
    ifname = keys.get("dev") or (ctx.hint.dev if ctx.hint else None)
    if not is_ipv4(dst):
        ctx.state.v6_skipped += 1
    elif not ifname:
        ctx.state.note("neigh dev", "neighbour entries without a device (paste `ip neigh` without `dev`)")
    else:
        add_neigh(ctx, Neigh(ifname=ifname, dst=dst, lladdr=mac(keys.get("lladdr", "")),
                             state=states or ["NONE"], router=router), from_arp=False)
    return k


def add_neigh(ctx: ImportCtx, n: Neigh, from_arp: bool) -> None:
    if ctx.state.add_unique("neigh", n) and from_arp:
        ctx.state.from_arp.add(id(n))


# --- arp -a / arp -n --------------------------------------------------------------------------

_PAREN_IP = re.compile(r"^\(([0-9.]+)\)$")


def detect_arp_a(w: Words, i: int, ctx: ImportCtx) -> int:
    m = _PAREN_IP.match(w[i + 1])
    return 2 if m and is_ipv4(m.group(1)) and w[i + 2] == "at" and not after_value_key(w, i) else 0


def parse_arp_a(w: Words, i: int, ctx: ImportCtx) -> int:
    """`? (10.244.0.5) at 0a:58:0a:f4:00:05 [ether] on cni0`, `... at <incomplete> on cni0`,
    `... [ether] PERM on flannel.1`; BSD/macOS `... on en0 ifscope permanent [ethernet]`."""
    m = _PAREN_IP.match(w[i + 1])
    assert m is not None
    dst, hw, k = m.group(1), w[i + 3], i + 4
    perm = False
    ifname = None
    while k < w.n and not w.at_bol(k) and not detect_arp_a(w, k, ctx):
        t = w[k]
        if t == "on" and w[k + 1]:
            ifname, k = w[k + 1], k + 2
        elif t == "netmask" and w[k + 1]:
            k += 2
        elif t in ("PERM", "permanent", "PUB", "published", "ifscope") or t.startswith("["):
            perm = perm or t in ("PERM", "permanent")
            k += 1
        else:
            break
    lladdr = mac(hw)
    if ifname:
        state = ["PERMANENT"] if perm else ["REACHABLE"] if lladdr else ["INCOMPLETE"]
        add_neigh(ctx, Neigh(ifname=ifname, dst=dst, lladdr=lladdr, state=state), from_arp=True)
    return k


ARP_HWTYPES = {"ether", "loop", "infiniband", "ieee1394", "netrom", "ax25", "rose", "arcnet", "dlci",
               "fddi", "hippi", "irda", "x25", "eui64", "generic", "tunnel", "ppp"}
ARP_TITLE = ["Address", "HWtype", "HWaddress", "Flags", "Mask", "Iface"]
_ARP_FLAGS = re.compile(r"^[CMPD]+$")


def detect_arp_n(w: Words, i: int, ctx: ImportCtx) -> int:
    if w.items[i:i + 6] == ARP_TITLE:
        return 2
    if after_value_key(w, i) or w[i] in ("at", "on"):
        return 0
    if w[i + 1] == "(incomplete)" or (w[i + 1] in ARP_HWTYPES and mac(w[i + 2])):
        return 2 if is_ipv4(w[i]) else 1
    return 0


def parse_arp_n(w: Words, i: int, ctx: ImportCtx) -> int:
    """`10.244.1.0  ether  3a:f1:0c:5d:01:9e  CM  flannel.1` / `10.244.0.77  (incomplete)  cni0`."""
    if w.items[i:i + 6] == ARP_TITLE:
        return i + 6
    dst, k = w[i], i + 1
    lladdr, flags = None, ""
    if w[k] == "(incomplete)":
        k += 1
    else:
        lladdr, k = mac(w[k + 1]), k + 2
        if _ARP_FLAGS.match(w[k]):
            flags, k = w[k], k + 1
        if (is_ipv4(w[k]) or w[k] == "*") and w[k + 1] and not w.at_bol(k + 1) \
                and not detect_arp_n(w, k + 1, ctx) and not detect_arp_n(w, k, ctx):
            k += 1  # netmask column (published entries)
    ifname = w[k] if not w.at_bol(k) and not detect_arp_n(w, k, ctx) else None
    k += 1 if ifname else 0
    if not is_ipv4(dst):
        ctx.state.note("arp names", "arp printed host names instead of addresses; paste `arp -n`")
    elif ifname:
        state = ["PERMANENT"] if "M" in flags else ["REACHABLE"] if lladdr else ["INCOMPLETE"]
        add_neigh(ctx, Neigh(ifname=ifname, dst=dst, lladdr=lladdr, state=state), from_arp=True)
    return k
