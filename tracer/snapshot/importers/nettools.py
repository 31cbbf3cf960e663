"""net-tools and bridge-utils output: `ifconfig` (both formats), `netstat -rn` / `route -n`, `brctl show`,
and flannel's `subnet.env`. Parsed as what they are: an ifconfig `broadcast 0.0.0.0` is no route."""

from __future__ import annotations

import ipaddress
import re

from ...bundle import Addr, Link, Route
from .links import add_link
from .state import ImportCtx
from .text import Words, is_ipv4, mac, num
from . import prompts, registry  # in the import cycle: used as module attributes

# --- ifconfig ---------------------------------------------------------------------------------

_IFC_NAME = re.compile(r"^([\w.@:-]+?):$")
_IFC_FLAGS = re.compile(r"^flags=[0-9]+<([A-Z0-9_,]*)>$")
IFCONFIG_CONT = {"inet", "inet6", "ether", "loop", "RX", "TX", "unspec", "infiniband", "txqueuelen", "device",
                 "UP", "BROADCAST", "LOOPBACK", "POINTOPOINT", "NOARP", "collisions:0", "Interrupt:"}


def detect_ifconfig(w: Words, i: int, ctx: ImportCtx) -> int:
    if _IFC_NAME.match(w[i]) and _IFC_FLAGS.match(w[i + 1]):
        return 2  # net-tools 2: "flannel.1: flags=4163<UP,BROADCAST,RUNNING,MULTICAST>  mtu 1450"
    if w[i + 1] == "Link" and w[i + 2].startswith("encap:") and not w.at_bol(i + 1):
        return 2  # net-tools 1.60: "eth0      Link encap:Ethernet  HWaddr 08:00:27:6e:13:47"
    return 0


IFCONFIG_KEYS = {"broadcast", "netmask", "destination", "prefixlen", "scopeid", "txqueuelen", "ether", "inet",
                 "inet6", "mtu", "RX", "TX", "packets", "bytes", "errors", "dropped", "overruns", "frame", "carrier",
                 "collisions", "loop", "unspec"}


def ifconfig_ends(w: Words, k: int, ctx: ImportCtx) -> bool:
    if detect_ifconfig(w, k, ctx):
        return True
    if w[k] in IFCONFIG_KEYS or (not w.bol[k] and w[k - 1] in IFCONFIG_KEYS):
        return False
    if w.bol[k] and not (w.indented[k] or w[k] in IFCONFIG_CONT or w[k].startswith(("addr:", "inet"))):
        return True
    return registry.strong_start(w, k, exclude=("ifconfig",)) or bool(prompts.command_line(w, k, ctx))


def prefixlen_of(mask: str) -> int | None:
    try:
        value = int(mask, 16) if mask.startswith("0x") else int(ipaddress.IPv4Address(mask))
    except ValueError:
        return None
    bits = bin(value)[2:].zfill(32)
    return bits.count("1") if "01" not in bits else None


def parse_ifconfig(w: Words, i: int, ctx: ImportCtx) -> int:
    """One interface of `ifconfig` (either format); its addresses, MAC, MTU and flags."""
    old = w[i + 1] == "Link"
    name = w[i] if old else _IFC_NAME.match(w[i]).group(1)  # type: ignore[union-attr]
    flags: set[str] = set()
    if not old:
        flags = set(_IFC_FLAGS.match(w[i + 1]).group(1).split(","))  # type: ignore[union-attr]
    link = Link(name=name)
    address = mask = None
    k = i + 2
    while k < w.n and not ifconfig_ends(w, k, ctx):
        t, v = w[k], w[k + 1]
        if t == "mtu" and num(v) is not None:
            link.mtu, k = num(v), k + 2
        elif t.startswith("MTU:") and num(t[4:]) is not None:
            link.mtu, k = num(t[4:]), k + 1
        elif t == "inet" and v.startswith("addr:"):
            address, k = v[5:], k + 2
        elif t == "inet" and address is None:
            address, k = v, k + 2
        elif t in ("netmask", "Mask:") or t.startswith("Mask:"):
            mask = t[5:] if t.startswith("Mask:") and len(t) > 5 else v
            k += 1 if t.startswith("Mask:") and len(t) > 5 else 2
        elif t in ("broadcast", "destination", "prefixlen", "scopeid", "txqueuelen"):
            k += 2  # values of what ifconfig prints, never records of their own
        elif t in ("ether", "HWaddr") and mac(v):
            link.mac, k = mac(v), k + 2
            ctx.state.link_types[name] = "ether"
        elif t == "encap:Local" or t == "loop" or "LOOPBACK" in flags:
            ctx.state.link_types[name] = "loopback"
            k += 1
        elif t in ("UP", "RUNNING") and old:
            flags.add(t)
            k += 1
        else:
            k += 1
    link.up, link.carrier = "UP" in flags, "RUNNING" in flags
    add_link(ctx, link)
    if address and is_ipv4(address):
        plen = prefixlen_of(mask) if mask else 32
        if plen is not None:
            ctx.state.add_unique("addrs", Addr(ifname=name, address=address, prefixlen=plen))
    elif address:
        ctx.state.odd_value(address, w, i, "address")
    return k


# --- netstat -rn / route -n ---------------------------------------------------------------------

_RT_FLAGS = re.compile(r"^[UGHRDMAC!]+$")
NETSTAT_TITLE = ["Kernel", "IP", "routing", "table"]


def detect_netstat(w: Words, i: int, ctx: ImportCtx) -> int:
    if w.items[i:i + 4] == NETSTAT_TITLE or (w[i] == "Destination" and w[i + 1] == "Gateway" and w[i + 2] == "Genmask"):
        return 2
    if is_ipv4(w[i]) and is_ipv4(w[i + 1]) and is_ipv4(w[i + 2]) and _RT_FLAGS.match(w[i + 3]) \
            and not w.at_bol(i + 3):
        return 2
    return 0


def parse_netstat(w: Words, i: int, ctx: ImportCtx) -> int:
    """`Destination Gateway Genmask Flags [Metric Ref Use | MSS Window irtt] Iface` rows."""
    if w.items[i:i + 4] == NETSTAT_TITLE:
        return i + 4
    if w[i] == "Destination":
        end = w.line_end(i) if w.bol[i] else i + 8
        ctx.state.route_metric_col = "Metric" in w.items[i:end]
        return end
    dst, gw, mask, flags = w[i], w[i + 1], w[i + 2], w[i + 3]
    k = i + 4
    numbers = []
    while num(w[k]) is not None and not w.at_bol(k) and len(numbers) < 3:
        numbers.append(num(w[k]))
        k += 1
    dev = w[k] if not w.at_bol(k) else None
    k += 1 if dev else 0
    plen = prefixlen_of(mask)
    if plen is None:
        ctx.state.odd_value(mask, w, i, "netmask")
        return k
    net = ipaddress.IPv4Network(f"{dst}/{plen}", strict=False)
    route = Route(dst="default" if plen == 0 else str(net), table=254,
                  type="unreachable" if "!" in flags else "unicast",
                  gateway=gw if gw != "0.0.0.0" else None, dev=dev,
                  scope="global" if "G" in flags else "link",
                  metric=numbers[0] if numbers and ctx.state.route_metric_col else None)
    ctx.state.add_unique("routes", route)
    return k


# --- brctl show ---------------------------------------------------------------------------------

_BRIDGE_ID = re.compile(r"^[0-9a-f]{4}\.[0-9a-f]{12}$")
BRCTL_TITLE = ["bridge", "name", "bridge", "id", "STP", "enabled", "interfaces"]


def detect_brctl(w: Words, i: int, ctx: ImportCtx) -> int:
    if w.items[i:i + 7] == BRCTL_TITLE:
        return 2
    return 2 if _BRIDGE_ID.match(w[i + 1]) and w[i + 2] in ("yes", "no") and not w.at_bol(i + 1) else 0


def parse_brctl(w: Words, i: int, ctx: ImportCtx) -> int:
    """`cni0  8000.0a580af40001  no  veth1a2b` and its indented port lines."""
    if w.items[i:i + 7] == BRCTL_TITLE:
        return i + 7
    bridge, k = w[i], i + 3
    ports = []
    if not w.at_bol(k):
        ports.append(w[k])
        k += 1
    while k < w.n and w.bol[k] and w.indented[k] and w.at_bol(k + 1) and not detect_brctl(w, k, ctx):
        ports.append(w[k])  # one port per indented line
        k += 1
    ctx.state.bridge_ports.setdefault(bridge, []).extend(ports)
    return k


# --- flannel's subnet.env -----------------------------------------------------------------------

_FLANNEL_ENV = re.compile(r"^(FLANNEL_[A-Z_]+)=(\S*)$")


def detect_subnet_env(w: Words, i: int, ctx: ImportCtx) -> int:
    return 2 if _FLANNEL_ENV.match(w[i]) else 0


def parse_subnet_env(w: Words, i: int, ctx: ImportCtx) -> int:
    """`FLANNEL_NETWORK=10.244.0.0/16`, `FLANNEL_SUBNET=10.244.1.1/24`, `FLANNEL_MTU=1450`..."""
    m = _FLANNEL_ENV.match(w[i])
    assert m is not None
    ctx.host.flannel_env[m.group(1)] = m.group(2)
    return i + 1
