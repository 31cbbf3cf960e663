"""Build a bundle from pasted command output (`podpath snapshot import FILE...`).

Users paste the classic checklist (`ip a`, `ip r`, `ip r get`, `arp -a`, `ip neigh`, `bridge fdb`,
`iptables-save`, `ipvsadm -Ln`, `sysctl`) from tickets and chats: several commands one after
another, with or without shell prompts, and often *squashed* (every newline lost). This module
turns such text into the same `Host` objects the live collectors produce.

How the text is read:

1. `normalise`: ANSI colours, CRLF, `> ` quote prefixes, code fences and common indentation go.
2. `Words`: the text as whitespace-separated words that remember their line, whether they start
   it, and whether that line is indented. Every parser reads words, never lines, so the normal and
   the squashed form parse alike; line starts are only an extra record boundary when present.
3. `_scan`: at each word, a shell prompt / command line (`$ ip a`, `root@n1:~# ip r`) sets a
   *hint* (which command follows, plus its `dev`/`table`/query arguments); otherwise the first
   command in `COMMANDS` whose detector accepts the word parses one record (an interface block, a
   route, an ARP entry, an iptables-save table...) and returns the index after it. Words no
   detector accepts are reported in `Host.gaps["unparsed"]`.

Adding a command = one detector, one parser, one line in `COMMANDS`.
"""

from __future__ import annotations

import ipaddress
import re
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import PurePath
from typing import Callable

from ..bundle import Addr, Bundle, Fdb, Host, IpvsDest, IpvsService, Link, Neigh, Route, Rule, Vxlan
from ..errors import BundleError

# --- text normalisation ---------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+")  # "> " and "> > " quotes of mail and chat
_FENCE = re.compile(r"^\s*(?:```|~~~)[\w+-]*\s*$")  # markdown code fences
_IP_ONELINE = re.compile(r"^[0-9]+: ")  # `ip -o`: one line per object, "\" marks the line breaks
_INVISIBLE = {ord(c): " " for c in "\xa0\u2007\u202f"} | {ord(c): None for c in "\u200b\u200c\u200d\ufeff"}


def normalise(text: str) -> str:
    """Pasted text as the command printed it, as far as that can be restored line by line."""
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = []
    for line in text.split("\n"):
        line = line.translate(_INVISIBLE) if not line.isascii() else line
        line = "" if _FENCE.match(line) else _QUOTE.sub("", line).rstrip()
        if _IP_ONELINE.match(line) and "\\ " in line:
            line = re.sub(r"\\ +(?=\S)", "\n    ", line)
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


class Words:
    """Whitespace-separated words of a text; `w[i]` is "" past either end."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.items: list[str] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.lines: list[int] = []
        self.bol: list[bool] = []  # first word of its line
        self.indented: list[bool] = []  # its line starts with whitespace
        offset = 0
        for lineno, line in enumerate(text.split("\n"), 1):
            indented = line[:1].isspace()
            for n, m in enumerate(re.finditer(r"\S+", line)):
                self.items.append(m.group())
                self.starts.append(offset + m.start())
                self.ends.append(offset + m.end())
                self.lines.append(lineno)
                self.bol.append(n == 0)
                self.indented.append(indented)
            offset += len(line) + 1
        self.n = len(self.items)

    def __getitem__(self, i: int) -> str:
        return self.items[i] if 0 <= i < self.n else ""

    def at_bol(self, i: int) -> bool:
        """A line (or the text) starts at i: an unmistakable record boundary."""
        return i >= self.n or self.bol[i]

    def line_end(self, i: int) -> int:
        """Index of the first word of the next line."""
        i += 1
        while i < self.n and not self.bol[i]:
            i += 1
        return i

    def span(self, i: int, j: int) -> str:
        """The original text of words i..j-1."""
        return self.text[self.starts[i]:self.ends[j - 1]] if j > i else ""


# --- small value helpers --------------------------------------------------------------------

_IPV4 = re.compile(r"^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$")
_MAC = re.compile(r"^[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2}){5}$")
_HWADDR = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2})+$")


def num(s: str) -> int | None:
    return int(s) if s.isascii() and s.isdigit() else None


def is_ipv4(s: str) -> bool:
    m = _IPV4.match(s)
    return bool(m) and all(int(g) <= 255 for g in m.groups())


def is_prefix4(s: str) -> bool:
    addr, slash, length = s.partition("/")
    return is_ipv4(addr) and (not slash or (num(length) is not None and num(length) <= 32))


def is_ipv6(s: str) -> bool:
    addr, slash, length = s.partition("/")
    if ":" not in addr or not addr.isascii():
        return False
    try:
        ipaddress.IPv6Address(addr)
    except ValueError:
        return False
    return not slash or (num(length) is not None and num(length) <= 128)


def is_mac(s: str) -> bool:
    return bool(_MAC.match(s))


def mac(s: str) -> str | None:
    """Lower-case, zero-padded MAC (`0:11:22:3:4:5` from BSD arp too); other hw addresses as-is."""
    if _MAC.match(s):
        return ":".join(p.zfill(2) for p in s.lower().split(":"))
    return s.lower() if _HWADDR.match(s) else None


def addr_port(s: str) -> tuple[str, int] | None:
    """`10.96.0.10:53` → ("10.96.0.10", 53); IPv6 `[fd00::1]:53` → None (IPv4 only)."""
    host, _, port = s.rpartition(":")
    return (host, num(port)) if is_ipv4(host) and num(port) is not None else None


TABLES = {"main": 254, "local": 255, "default": 253, "unspec": 0}


def table_id(value: str | None) -> int | None:
    return None if value is None else TABLES.get(value, num(value))


def base(word: str) -> str:
    return word.rsplit("/", 1)[-1]


# --- state of one import --------------------------------------------------------------------


@dataclass
class Hint:
    """What a command line said: which command prints what follows, and its arguments."""

    name: str | None  # a COMMANDS name, or None for a command we do not read
    text: str  # the command as typed
    dev: str | None = None  # `ip r show dev X`, `ip neigh show dev X`: output omits "dev X"
    table: str | None = None  # `ip r show table local`: output omits "table local"
    query: str | None = None  # `ip r get ADDR`
    key: str | None = None  # `cat /proc/sys/net/ipv4/ip_forward` → net.ipv4.ip_forward
    backend: str | None = None  # iptables-nft-save / iptables-legacy-save
    v6: bool = False


@dataclass
class HostState:
    """What the importer keeps about one host across its files."""

    host: Host
    link_types: dict[str, str] = field(default_factory=dict)  # name → "ether" from link/ether
    from_arp: set[int] = field(default_factory=set)  # id() of Neigh read from arp (state guessed)
    notes: dict[str, list[str]] = field(default_factory=dict)  # gaps, collected
    legacy_warning: bool = False
    v6_skipped: int = 0

    def note(self, key: str, message: str) -> None:
        msgs = self.notes.setdefault(key, [])
        if message not in msgs:
            msgs.append(message)


@dataclass
class Ctx:
    state: HostState
    hint: Hint | None = None
    current: "Command | None" = None  # the command of the record just parsed
    cat_pending: bool = False  # `cat /proc/sys/...` printed its value next

    @property
    def host(self) -> Host:
        return self.state.host

    def hinted(self, *names: str) -> bool:
        return self.hint is not None and self.hint.name in names


Detector = Callable[[Words, int, Ctx], int]  # 0: no; 1: at a line start or inside a run; 2: anywhere
Parser = Callable[[Words, int, Ctx], int]  # parses one record at i, returns the index after it


@dataclass(frozen=True)
class Command:
    name: str
    detect: Detector
    parse: Parser


# Keywords whose next word is a value: a record never starts right after one of these.
VALUE_KEYS = {
    "via", "src", "from", "dev", "lladdr", "brd", "peer", "inet", "inet6", "local", "remote", "group",
    "dst", "to", "table", "lookup", "metric", "at", "-s", "-d", "--to-destination", "mask", "master",
    "link-netns", "iif", "oif", "mark", "uid", "vlan", "port", "vni", "id", "gw", "nexthop", "-r", "-t",
    "-u",
}


def after_value_key(w: Words, i: int) -> bool:
    return i > 0 and not w.bol[i] and w[i - 1] in VALUE_KEYS


# --- ip a / ip link ---------------------------------------------------------------------------

_HDR_INDEX = re.compile(r"^[0-9]+:$")
_HDR_NAME = re.compile(r"^([^\s:/]+?)(?:@([^\s:]+))?:$")
_HDR_NAME_O = re.compile(r"^([^\s:/]+?)(?:@([^\s:]+))?$")  # `ip -o a`: "2: eth0    inet ..."
_FLAGS = re.compile(r"^<[A-Z0-9_,-]*>$")
KIND_WORDS = {
    "veth", "bridge", "vxlan", "dummy", "vlan", "macvlan", "macvtap", "ipvlan", "ipvtap", "ipip",
    "gre", "gretap", "ip6gre", "ip6gretap", "sit", "ip6tnl", "tun", "geneve", "wireguard", "bond",
    "team", "ifb", "nlmon", "vrf", "erspan", "xfrm", "vti", "netkit", "bareudp", "openvswitch",
}
LINK_CONT = {"inet", "inet6", "valid_lft", "altname", "alias", "prop", "bridge_slave", "bond_slave",
             "team_slave", "vrf_slave", "RX:", "TX:"} | KIND_WORDS
HEADER_KEYS = {"mtu", "qdisc", "master", "state", "mode", "group", "qlen", "link-netnsid", "link-netns"}


def link_header(w: Words, i: int) -> bool:
    return bool(_HDR_INDEX.match(w[i]) and _HDR_NAME.match(w[i + 1]) and _FLAGS.match(w[i + 2]))


def addr_line_header(w: Words, i: int) -> bool:
    """`ip -o a` lines: `2: eth0    inet 10.0.0.1/24 ...` (no flags, no trailing colon)."""
    return bool(_HDR_INDEX.match(w[i]) and _HDR_NAME_O.match(w[i + 1]) and w[i + 2] in ("inet", "inet6"))


def detect_ip_link(w: Words, i: int, ctx: Ctx) -> int:
    if not link_header(w, i):
        return 0
    if ctx.hinted("ip link"):
        return 2
    k = i + 3
    while k < w.n and k < i + 20 and not w[k].startswith("link/") and not link_header(w, k):
        if w[k] == "mode":  # only `ip link` prints "mode DEFAULT"
            return 2
        k += 1
    return 0


def detect_ip_addr(w: Words, i: int, ctx: Ctx) -> int:
    return 2 if link_header(w, i) or addr_line_header(w, i) else 0


def block_ends(w: Words, k: int, ctx: Ctx) -> bool:
    """Does the interface block that reached word k end before it?"""
    if link_header(w, k) or addr_line_header(w, k):
        return True
    if w.bol[k] and not (w.indented[k] or w[k] in LINK_CONT or w[k].startswith("link/")):
        return True  # continuation lines are indented or start like one (chat may strip indentation)
    return strong_start(w, k, exclude=("ip a", "ip link")) or bool(command_line(w, k, ctx))


def parse_ip_link(w: Words, i: int, ctx: Ctx) -> int:
    return parse_link_block(w, i, ctx, addrs=False)


def parse_ip_addr(w: Words, i: int, ctx: Ctx) -> int:
    return parse_link_block(w, i, ctx, addrs=True)


def parse_link_block(w: Words, i: int, ctx: Ctx, addrs: bool) -> int:
    """One interface: `N: name[@peer]: <FLAGS> mtu .. state ..` and its continuation lines."""
    index = num(w[i][:-1])
    oneline = not _FLAGS.match(w[i + 2])
    m = (_HDR_NAME_O if oneline else _HDR_NAME).match(w[i + 1])
    assert m is not None
    name, peer = m.group(1), m.group(2)
    link = Link(name=name, index=index)
    if peer and peer.startswith("if") and num(peer[2:]) is not None:
        link.peer_index = num(peer[2:])
    elif peer and peer != "NONE":
        link.peer_name = peer
    flags: set[str] = set()
    state = None
    k = i + 2
    if not oneline:
        flags = set(w[k][1:-1].split(","))
        k += 1
    body = oneline  # after "link/..." the header keys (state, master) mean other things
    kind = None
    while k < w.n and not block_ends(w, k, ctx):
        t, v = w[k], w[k + 1]
        if not body and t in HEADER_KEYS and v:
            if t == "mtu":
                link.mtu = num(v)
            elif t == "master":
                link.master = v
            elif t == "state":
                state = v
            k += 2
        elif t.startswith("link/"):
            body = True
            ctx.state.link_types[name] = t[5:]
            link.mac = mac(v) if t != "link/none" else None
            k += 2 if link.mac else 1
            if w[k] in ("brd", "peer") and w[k + 1]:
                k += 2
        elif t == "link-netnsid":
            link.peer_netnsid = num(v)
            k += 2
        elif t in ("link-netns", "altname", "alias", "permaddr", "valid_lft", "preferred_lft"):
            k += 2
        elif t == "inet":
            k = parse_inet(w, k, ctx, name if addrs else None)
        elif body and kind is None and t in KIND_WORDS and num(w[k - 1]) is not None:
            kind = t  # `ip -d`: the kind line follows "... maxmtu 65535"
            k = parse_vxlan(w, k + 1, ctx, link) if t == "vxlan" else k + 1
        elif body and t == "hairpin" and v in ("on", "off"):
            link.hairpin = v == "on"
            k += 2
        else:
            k += 1
    link.kind = kind  # None unless `ip -d` said; finish() guesses the rest from names and peers
    if not oneline:
        link.up = "UP" in flags
        link.carrier = not ("NO-CARRIER" in flags or state in ("DOWN", "LOWERLAYERDOWN", "NOTPRESENT"))
        add_link(ctx, link)
    return k


def parse_inet(w: Words, k: int, ctx: Ctx, ifname: str | None) -> int:
    """`inet 10.244.0.1/24 [peer P/L] [brd B] [scope S] [flags] [label]`; k at "inet"."""
    address, _, length = w[k + 1].partition("/")
    k += 2
    if not is_ipv4(address):
        return k
    prefixlen = num(length) if length else 32
    scope = None
    while k < w.n and not w.at_bol(k) and w[k] not in ("inet", "inet6", "valid_lft") \
            and not link_header(w, k) and not addr_line_header(w, k):
        if w[k] == "peer" and "/" in w[k + 1]:
            prefixlen = num(w[k + 1].partition("/")[2])
            k += 2
        elif w[k] == "scope":
            scope = w[k + 1] or None
            k += 2
        elif w[k] in ("brd", "metric"):
            k += 2
        else:
            k += 1  # flags (secondary, dynamic, noprefixroute...) and the label
    if ifname and prefixlen is not None and prefixlen <= 32:
        a = Addr(ifname=ifname, address=address, prefixlen=prefixlen, scope=scope)
        if a not in ctx.host.addrs:
            ctx.host.addrs.append(a)
    return k


def parse_vxlan(w: Words, k: int, ctx: Ctx, link: Link) -> int:
    """`vxlan id 1 [remote|group IP] local 192.168.56.11 dev eth0 srcport 0 0 dstport 8472 nolearning ...`"""
    vx = Vxlan(vni=0, learning=True)
    seen_id = False
    while k < w.n and not w.at_bol(k) and w[k] not in ("inet", "inet6") and not link_header(w, k):
        t, v = w[k], w[k + 1]
        if t == "id" and num(v) is not None:
            vx.vni, seen_id = num(v), True
        elif t == "local" and is_ipv4(v):
            vx.local = v
        elif t == "dev" and v:
            vx.dev = v
        elif t == "dstport" and num(v) is not None:
            vx.port = num(v)
        elif t == "nolearning":
            vx.learning = False
        k += 1
    if seen_id:
        link.vxlan = vx
    return k


def add_link(ctx: Ctx, link: Link) -> None:
    """Add or merge (same name pasted from `ip a` and `ip -d link`): newer non-empty values win."""
    old = ctx.host.link(link.name)
    if old is None:
        ctx.host.links.append(link)
        return
    for f in ("index", "kind", "mtu", "mac", "master", "peer_index", "peer_netnsid", "peer_name",
              "vxlan", "hairpin"):
        if getattr(link, f) is not None:
            setattr(old, f, getattr(link, f))
    old.up, old.carrier = link.up, link.carrier


# --- ip -br a / ip -br link ---------------------------------------------------------------------

OPERSTATES = {"UP", "DOWN", "UNKNOWN", "LOWERLAYERDOWN", "DORMANT", "NOTPRESENT", "TESTING"}


def detect_ip_brief(w: Words, i: int, ctx: Ctx) -> int:
    if w[i + 1] not in OPERSTATES or not _HDR_NAME_O.match(w[i]) or after_value_key(w, i):
        return 0
    if w[i] in HEADER_KEYS or w[i] in OPERSTATES or w[i] in ("state",):
        return 0
    nxt = w[i + 2]
    if is_prefix4(nxt) and "/" in nxt or is_ipv6(nxt) or (is_mac(nxt) and _FLAGS.match(w[i + 3])):
        return 2
    if w.at_bol(i + 2) or w[i + 3] in OPERSTATES or strong_start(w, i + 2):
        return 1
    return 0


def detect_ip_brief_link(w: Words, i: int, ctx: Ctx) -> int:
    s = detect_ip_brief(w, i, ctx)
    if s and ((is_mac(w[i + 2]) and _FLAGS.match(w[i + 3])) or ctx.hinted("ip -br link")):
        return 2
    return 0


def parse_ip_brief(w: Words, i: int, ctx: Ctx) -> int:
    """`eth0@if5  UP  10.244.0.5/24 fe80::1/64` or `eth0@if5 UP 0a:58:0a:f4:00:05 <BROADCAST,...>`."""
    m = _HDR_NAME_O.match(w[i])
    assert m is not None
    name, peer, state = m.group(1), m.group(2), w[i + 1]
    link = Link(name=name, carrier=state not in ("DOWN", "LOWERLAYERDOWN", "NOTPRESENT"),
                up=state != "DOWN")
    if peer and peer.startswith("if") and num(peer[2:]) is not None:
        link.peer_index = num(peer[2:])
    elif peer and peer != "NONE":
        link.peer_name = peer
    k = i + 2
    while k < w.n and not w.at_bol(k) and detect_ip_brief(w, k, ctx) == 0:
        t = w[k]
        if "/" not in t and not (is_mac(t) and _FLAGS.match(w[k + 1])):
            break  # `ip -br` prints prefixes; a bare address starts something else (squashed)
        if is_prefix4(t):
            address, _, length = t.partition("/")
            a = Addr(ifname=name, address=address, prefixlen=num(length) if length else 32)
            if a not in ctx.host.addrs:
                ctx.host.addrs.append(a)
        elif is_mac(t) and _FLAGS.match(w[k + 1]):
            link.mac = mac(t)
            flags = set(w[k + 1][1:-1].split(","))
            link.up = "UP" in flags
            link.carrier = link.carrier and "NO-CARRIER" not in flags
            if "LOOPBACK" in flags:
                ctx.state.link_types[name] = "loopback"
            k += 1
        elif not is_ipv6(t):
            break
        k += 1
    old = ctx.host.link(name)
    if old is None:
        ctx.host.links.append(link)
    else:  # `ip -br a` knows less than `ip a`: only fill what is missing
        old.mac = old.mac or link.mac
        old.peer_index = old.peer_index if old.peer_index is not None else link.peer_index
    return k


# --- ip rule ------------------------------------------------------------------------------------

RULE_ACTIONS = {"blackhole", "unreachable", "prohibit", "nop"}


def detect_ip_rule(w: Words, i: int, ctx: Ctx) -> int:
    if not _HDR_INDEX.match(w[i]):
        return 0
    if w[i + 1] in ("from", "not"):
        return 2
    return 1 if ctx.hinted("ip rule") and w[i + 1] in ("to", "fwmark", "iif", "oif", "lookup") else 0


def parse_ip_rule(w: Words, i: int, ctx: Ctx) -> int:
    """`32766:	from all lookup main`, `100:	not from 10.0.0.0/8 fwmark 0x1/0xff lookup 100`."""
    rule = Rule(priority=num(w[i][:-1]) or 0)
    k = i + 1
    while k < w.n and not w.at_bol(k) and not detect_ip_rule(w, k, ctx):
        t, v = w[k], w[k + 1]
        if t == "not":
            rule.invert = True
            k += 1
        elif t in ("from", "to"):
            setattr(rule, "src" if t == "from" else "dst", None if v == "all" else v)
            k += 2
        elif t in ("iif", "oif"):
            setattr(rule, t, v)
            k += 3 if w[k + 2] == "[detached]" else 2
        elif t == "fwmark":
            mark, _, mask = v.partition("/")
            try:
                rule.fwmark = int(mark, 0)
                rule.fwmask = int(mask, 0) if mask else None
            except ValueError:
                pass
            k += 2
        elif t in ("lookup", "table"):
            rule.table = table_id(v)
            if rule.table is None:
                ctx.state.note("rule table", f"rule {rule.priority} looks up table '{v}' by name; "
                                             "paste `ip rule` with numeric tables (`ip -N rule`)")
            k += 2
        elif t in RULE_ACTIONS:
            rule.action = t
            k += 1
        elif t in ("goto", "realms", "suppress_prefixlength", "suppress_ifgroup", "uidrange", "proto",
                   "ipproto", "sport", "dport", "tos", "dsfield", "priority", "pref", "l3mdev"):
            k += 1 if t == "l3mdev" else 2
        else:
            break
    ctx.host.rules.append(rule)
    return k


# --- ip route / ip route get ------------------------------------------------------------------

ROUTE_TYPES = {"unicast", "local", "broadcast", "blackhole", "unreachable", "prohibit", "throw",
               "multicast", "anycast", "nat"}
ROUTE_KEYS = {
    "via", "dev", "proto", "scope", "src", "metric", "table", "tos", "dsfield", "realms", "pref",
    "expires", "nhid", "weight", "error", "from", "uid", "mark", "iif", "oif", "mtu", "advmss", "rtt",
    "rttvar", "reordering", "window", "cwnd", "initcwnd", "initrwnd", "ssthresh", "rto_min", "hoplimit",
    "features", "quickack", "congctl", "fastopen_no_cookie", "ipid", "age", "used", "users", "vrf",
    "ttl-propagate", "lastuse", "priority", "preference",
}
ROUTE_FLAGS = {"onlink", "linkdown", "dead", "pervasive", "offload", "trap", "offload_failed",
               "notify", "rt_offload", "rt_trap", "rt_offload_failed", "fibmatch"}
_CACHE_FLAGS = re.compile(r"^<[a-z,]*>$")


def is_dst(s: str) -> bool:
    return s == "default" or is_prefix4(s) or is_ipv6(s)


@dataclass
class RouteText:
    """A route as printed, before it becomes a Route (or is skipped as IPv6)."""

    dst: str
    type: str = "unicast"
    keys: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    nexthops: list[dict[str, str]] = field(default_factory=list)
    lookup: bool = False  # printed by `ip route get` (uid / cache)


def route_start(w: Words, i: int) -> int:
    """0: no route starts at i; 1: a host route (`10.0.0.5 dev eth0 ...`); 2: an unmistakable one."""
    k, typed = i, False
    if w[k] in ROUTE_TYPES and is_dst(w[k + 1]) and not w.at_bol(k + 1):
        k, typed = k + 1, True
    if not is_dst(w[k]) or after_value_key(w, i) or w[i - 1] in ("type", "-A", "-a") and not w.bol[i]:
        return 0
    nxt = w[k + 1]
    if not (typed or w.at_bol(k + 1) or nxt in ROUTE_KEYS or nxt in ROUTE_FLAGS or nxt in ("nexthop", "cache")):
        return 0
    if typed or w[k] == "default" or "/" in w[k] or nxt in ("via", "nexthop"):
        return 2
    return 1


def read_route(w: Words, i: int) -> tuple[RouteText, int]:
    r = RouteText(dst="")
    k = i
    if w[k] in ROUTE_TYPES and is_dst(w[k + 1]):
        r.type, k = w[k], k + 1
    r.dst, k = w[k], k + 1
    nh: dict[str, str] | None = None
    while k < w.n:
        t = w[k]
        if w.bol[k] and t not in ("nexthop", "cache"):
            break  # a route is one line plus its indented nexthop / cache lines
        if t == "nexthop":
            nh = {}
            r.nexthops.append(nh)
            k += 1
        elif t == "cache":
            r.lookup, nh = True, None
            k += 1
        elif _CACHE_FLAGS.match(t) and r.lookup:
            k += 1
        elif t in ROUTE_FLAGS:
            if nh is not None:
                nh[t] = "1"
            else:
                r.flags.add(t)
            k += 1
        elif t in ROUTE_KEYS and w[k + 1] and not w.bol[k + 1]:
            v, step = w[k + 1], 2
            if t == "via" and v in ("inet", "inet6"):
                v, step = w[k + 2], 3
            elif t == "mtu" and v == "lock":
                v, step = w[k + 2], 3
            if nh is not None and t in ("via", "dev", "weight"):
                nh[t] = v
            else:
                r.keys[t] = v
                r.lookup = r.lookup or t == "uid"
            k += step
        else:
            break
    return r, k


def to_route(r: RouteText, ctx: Ctx, lookup: bool) -> Route | None:
    first = r.nexthops[0] if r.nexthops else {}
    gateway = first.get("via", r.keys.get("via"))
    if is_ipv6(r.dst) or (gateway and not is_ipv4(gateway)) or (ctx.hint and ctx.hint.v6):
        ctx.state.v6_skipped += 1
        return None
    dst = r.dst if r.dst == "default" or "/" in r.dst else f"{r.dst}/32"
    dst = "default" if dst == "0.0.0.0/0" else dst
    hint = ctx.hint if ctx.hint and not lookup else None
    table = table_id(r.keys.get("table") or (hint.table if hint and hint.table != "all" else None))
    if table is None:
        name = r.keys.get("table") or (hint.table if hint else None)
        if name and name != "all":
            ctx.state.note("route table", f"table '{name}' is a name from rt_tables; routes of it have "
                                          "table None (paste `ip -N route` for numbers)")
        elif r.type in ("local", "broadcast", "nat", "anycast"):
            table = 255  # the kernel puts these in table local; `ip r show table local` omits it
        elif not name:
            table = 254
    route = Route(
        dst=dst, table=table, type=r.type, gateway=gateway,
        dev=first.get("dev", r.keys.get("dev")) or (hint.dev if hint else None),
        prefsrc=r.keys.get("src"),
        scope=r.keys.get("scope") or (None if lookup else "global"),
        metric=num(r.keys.get("metric", "")),
        onlink="onlink" in r.flags or "onlink" in first,
        proto=r.keys.get("proto") or (None if lookup else "boot"),  # `ip r` hides "proto boot"
    )
    if len(r.nexthops) > 1:
        ctx.state.note("multipath", f"{dst}: {len(r.nexthops)} nexthops, kept the first "
                                    f"(via {gateway} dev {route.dev})")
    if "nhid" in r.keys and not gateway and not route.dev:
        ctx.state.note("nexthop objects", f"{dst} uses nexthop object {r.keys['nhid']}; paste `ip nexthop`")
    return route


def detect_ip_route(w: Words, i: int, ctx: Ctx) -> int:
    return route_start(w, i)


def detect_ip_route_get(w: Words, i: int, ctx: Ctx) -> int:
    if w[i] == "RTNETLINK" and w[i + 1] == "answers:" and ctx.hinted("ip r get") and ctx.hint.query:
        return 2
    if not route_start(w, i):
        return 0
    r, _ = read_route(w, i)
    return 2 if r.lookup else 1 if ctx.hinted("ip r get") else 0


def parse_ip_route(w: Words, i: int, ctx: Ctx) -> int:
    r, k = read_route(w, i)
    route = to_route(r, ctx, lookup=False)
    if route and route not in ctx.host.routes:
        ctx.host.routes.append(route)
    return k


# `ip route get` errors are the kernel's answer too: the route type that refused the lookup.
RTNETLINK_TYPES = {"Invalid argument": "blackhole", "No route to host": "unreachable",
                   "Permission denied": "prohibit", "Network is unreachable": "unreachable"}


def parse_ip_route_get(w: Words, i: int, ctx: Ctx) -> int:
    if w[i] == "RTNETLINK":
        k = i + 2
        while k < w.n and not w.at_bol(k) and k < i + 6 and not w[k - 1].endswith(("argument", "host",
                                                                                       "denied", "unreachable")):
            k += 1
        error = w.span(i + 2, k)
        assert ctx.hint is not None and ctx.hint.query is not None
        kind = RTNETLINK_TYPES.get(error)
        if kind and is_ipv4(ctx.hint.query):
            ctx.host.route_lookups.append(Route(dst=f"{ctx.hint.query}/32", type=kind, table=None))
        else:
            ctx.state.note("route lookups", f"ip route get {ctx.hint.query}: {error}")
        ctx.hint = None  # `ip route get` answers once
        return k
    r, k = read_route(w, i)
    route = to_route(r, ctx, lookup=True)
    if route:
        if "table" not in r.keys and route.type not in ("local", "broadcast"):
            route.table = None  # the answer does not say which table it came from
        ctx.host.route_lookups.append(route)
    if ctx.hinted("ip r get"):
        ctx.hint = None  # `ip route get` answers once
    return k


# --- ip neigh -----------------------------------------------------------------------------------

NUD_STATES = {"PERMANENT", "NOARP", "REACHABLE", "STALE", "NONE", "INCOMPLETE", "DELAY", "PROBE", "FAILED"}
NEIGH_FLAGS = {"router", "proxy", "extern_learn", "offload", "managed", "extern_valid"}
NEIGH_KEYS = {"dev", "lladdr", "probes", "ref", "protocol", "vrf", "nud"}


def detect_ip_neigh(w: Words, i: int, ctx: Ctx) -> int:
    if not (is_ipv4(w[i]) or (is_ipv6(w[i]) and "/" not in w[i])) or after_value_key(w, i):
        return 0
    k = i + 1
    if w[k] == "dev" and w[k + 1]:
        k += 2
    t = w[k]
    return 2 if not w.at_bol(k) and (t in NUD_STATES or t in NEIGH_FLAGS or t in ("lladdr", "used", "ref",
                                                                                 "probes")) else 0


def parse_ip_neigh(w: Words, i: int, ctx: Ctx) -> int:
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


def add_neigh(ctx: Ctx, n: Neigh, from_arp: bool) -> None:
    if n in ctx.host.neigh:
        return
    ctx.host.neigh.append(n)
    if from_arp:
        ctx.state.from_arp.add(id(n))


# --- arp -a / arp -n --------------------------------------------------------------------------

_PAREN_IP = re.compile(r"^\(([0-9.]+)\)$")


def detect_arp_a(w: Words, i: int, ctx: Ctx) -> int:
    m = _PAREN_IP.match(w[i + 1])
    return 2 if m and is_ipv4(m.group(1)) and w[i + 2] == "at" and not after_value_key(w, i) else 0


def parse_arp_a(w: Words, i: int, ctx: Ctx) -> int:
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


def detect_arp_n(w: Words, i: int, ctx: Ctx) -> int:
    if w.items[i:i + 6] == ARP_TITLE:
        return 2
    if after_value_key(w, i) or w[i] in ("at", "on"):
        return 0
    if w[i + 1] == "(incomplete)" or (w[i + 1] in ARP_HWTYPES and mac(w[i + 2])):
        return 2 if is_ipv4(w[i]) else 1
    return 0


def parse_arp_n(w: Words, i: int, ctx: Ctx) -> int:
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


# --- bridge fdb ---------------------------------------------------------------------------------

FDB_KEYS = {"dev", "link-netnsid", "vlan", "dst", "port", "vni", "src_vni", "via", "nhid", "used", "state"}
FDB_FLAGS = {"self", "router", "extern_learn", "offload", "offloaded", "sticky", "permanent",
             "static", "stale", "locked", "blackhole", "dynamic"}


def detect_bridge_fdb(w: Words, i: int, ctx: Ctx) -> int:
    if not is_mac(w[i]) or after_value_key(w, i) or w.at_bol(i + 1) and not ctx.hinted("bridge fdb"):
        return 0
    if w[i + 1] in ("dev", "dst"):
        return 2
    return 1 if w[i + 1] in FDB_KEYS or w[i + 1] in FDB_FLAGS or w[i + 1] == "master" \
        or ctx.hinted("bridge fdb") else 0


def parse_bridge_fdb(w: Words, i: int, ctx: Ctx) -> int:
    """`3a:f1:0c:5d:01:9e dev flannel.1 dst 192.168.56.12 self permanent`,
    `0a:58:0a:f4:00:05 dev veth3d9c1a75 master cni0`, `... vlan 1 master br0 permanent`."""
    keys: dict[str, str] = {}
    flags: list[str] = []
    master = None
    k = i + 1
    while k < w.n and not w.at_bol(k):
        t, v = w[k], w[k + 1]
        if t in FDB_KEYS and v and not w.bol[k + 1]:
            keys[t] = v
            k += 2
        elif t == "master":
            if v and not w.bol[k + 1] and v not in FDB_FLAGS and not is_mac(v) and v not in FDB_KEYS:
                master = v
                k += 1
            if "master" not in flags:
                flags.append("master")
            k += 1
        elif t in FDB_FLAGS:
            flags.append(t)
            k += 1
        else:
            break
    entry_mac = mac(w[i]) or w[i].lower()
    dst = keys.get("dst")
    ifname = keys.get("dev") or (ctx.hint.dev if ctx.hint else None)
    if not ifname:
        ctx.state.note("fdb dev", "FDB entries without a device (paste `bridge fdb show` without `dev`)")
    elif dst is not None and not is_ipv4(dst):
        ctx.state.v6_skipped += 1
    elif not (dst is None and entry_mac.startswith(("33:33:", "01:00:5e:"))):  # multicast self noise
        entry = Fdb(ifname=ifname, mac=entry_mac, master=master, dst=dst,
                    vlan=num(keys.get("vlan", "")), flags=flags)
        if entry not in ctx.host.fdb:
            ctx.host.fdb.append(entry)
    return k


# --- iptables-save ------------------------------------------------------------------------------

_IPT_TABLE = re.compile(r"^\*(filter|nat|mangle|raw|security)$")
_IPT_COUNTER = re.compile(r"^\[[0-9]+:[0-9]+\]$")
_IPT_POLICIES = {"ACCEPT", "DROP", "RETURN", "QUEUE", "-"}
_SAVE_TOOL = re.compile(r"^ip(6?)tables(?:-nft|-legacy)?-save$")
_CTIME_END = re.compile(r"^[0-9]{4}$")


def ipt_line(w: Words, k: int) -> str | None:
    """The kind of iptables-save line that starts at word k, if one does."""
    t = w[k]
    if not t:
        return None
    c = t[0]
    if c == "#" and t == "#":
        nxt = w[k + 1]
        if (nxt == "Generated" and _SAVE_TOOL.match(w[k + 3])) or nxt == "Completed" \
                or (nxt == "Warning:" and w[k + 2].startswith("iptables")):
            return "comment"
    elif c == "*" and _IPT_TABLE.match(t):
        return "table"
    elif c == ":" and len(t) > 1 and w[k + 1] in _IPT_POLICIES and _IPT_COUNTER.match(w[k + 2]):
        return "chain"
    elif c == "[" and _IPT_COUNTER.match(t) and w[k + 1] == "-A":
        return "rule"
    elif t == "-A" and w[k + 1] and not w[k + 1].startswith("-"):
        # "[p:b] -A ..." starts at its counter, unless that counter ends a ":CHAIN POLICY [p:b]" line
        if w.bol[k] or not _IPT_COUNTER.match(w[k - 1]) or (w[k - 3][:1] == ":" and w[k - 2] in _IPT_POLICIES):
            return "rule"
    elif t == "COMMIT" and (w.at_bol(k + 1) or w[k + 1] == "#" or _IPT_TABLE.match(w[k + 1])
                            or w.bol[k] or not w[k - 1].startswith("-")):
        return "commit"
    return None


def detect_iptables(w: Words, i: int, ctx: Ctx) -> int:
    kind = ipt_line(w, i)
    if kind is None:
        return 0
    return 1 if kind == "commit" else 2


def ipt_comment_end(w: Words, k: int) -> int:
    """`# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 07:11:31 2026`, `# Completed
    on <date>`, `# Warning: iptables-legacy tables present, use iptables-legacy-save to see them`."""
    last = "them" if w[k + 1] == "Warning:" else None
    j = k + 1
    while j < w.n and not w.bol[j] and j < k + 16:
        j += 1
        if (last and w[j - 1] == last) or (not last and _CTIME_END.match(w[j - 1]) and ":" in w[j - 2]):
            break
    return j


def parse_iptables(w: Words, i: int, ctx: Ctx) -> int:
    """Consecutive iptables-save tables, stored verbatim (newlines restored) per backend."""
    lines: list[tuple[str, str | None]] = []  # (text, backend announced by a header on that line)
    k = i
    committed = False  # after COMMIT (and its "# Completed" line) only a new table may follow
    while k < w.n:
        kind = ipt_line(w, k)
        if kind is None or (committed and kind not in ("comment", "table")):
            break
        start = k
        backend = None
        if kind == "comment":
            k = ipt_comment_end(w, k)
            if w[start + 1] == "Generated":
                v6 = _SAVE_TOOL.match(w[start + 3]).group(1)  # type: ignore[union-attr]
                backend = "v6" if v6 else "nft" if "(nf_tables)" in w.items[start:k] else "legacy"
            elif w[start + 1] == "Warning:":
                ctx.state.legacy_warning = True
                backend = "nft"  # only iptables-nft-save prints it, before its first header
        elif kind == "rule":
            k = ipt_rule_end(w, k, ctx)
        else:
            k += {"table": 1, "chain": 3, "commit": 1}[kind]
        lines.append((w.span(start, k), backend))
        committed = kind == "commit" or (committed and w[start + 1] == "Completed")
    store_iptables(ctx, lines)
    return k


def ipt_rule_end(w: Words, k: int, ctx: Ctx) -> int:
    """Index after the rule at k: the next iptables line start outside a quoted string."""
    k += 2 if w[k] == "-A" else 3
    quoted = False
    while k < w.n:
        t = w[k]
        if not quoted:
            if w.bol[k]:
                break
            if t[0] in "-[:*#C" and ipt_line(w, k):
                break
            if t[-1] in "#$%" and command_line(w, k, ctx):
                break
        quoted ^= (t.count('"') - t.count('\\"')) % 2 == 1
        k += 1
    return k


def store_iptables(ctx: Ctx, lines: list[tuple[str, str | None]]) -> None:
    first = next((b for _, b in lines if b), None)
    backend = first or (ctx.hint.backend if ctx.hint else None) or "legacy"
    buckets: dict[str, list[str]] = {}
    for text, announced in lines:
        backend = announced or backend
        buckets.setdefault(backend, []).append(text)
    for backend, texts in buckets.items():
        if backend == "v6" or ctx.hinted("ip6tables-save"):
            ctx.state.note("ip6tables", "ip6tables-save output ignored (podpath reads IPv4)")
            continue
        old = ctx.host.iptables_save.get(backend, "")
        ctx.host.iptables_save[backend] = old + "\n".join(texts) + "\n"
    if not any(t.startswith("*") for t, _ in lines):
        ctx.state.note("iptables", "iptables-save text has no *table line (filtered with grep?); "
                                   "paste the whole `iptables-save -c`")


# --- ipvsadm -Ln / -Sn --------------------------------------------------------------------------

IPVS_PROTOS = {"TCP", "UDP", "SCTP"}
IPVS_FORWARD = {"Masq", "Local", "Route", "Tunnel", "Bypass", "FullNat"}
IPVS_SAVE_SVC = {"-t": "TCP", "--tcp-service": "TCP", "-u": "UDP", "--udp-service": "UDP",
                 "--sctp-service": "SCTP", "-f": "FWM", "--fwmark-service": "FWM"}
IPVS_SAVE_FWD = {"-m": "Masq", "--masquerading": "Masq", "-g": "Route", "--gatewaying": "Route",
                 "-i": "Tunnel", "--ipip": "Tunnel"}
_SCHED = re.compile(r"^[a-z][a-z0-9]*$")


def detect_ipvsadm(w: Words, i: int, ctx: Ctx) -> int:
    t = w[i]
    if (t == "IP" and w[i + 1] == "Virtual" and w[i + 2] == "Server") or (t == "Prot" and w[i + 1].startswith("LocalAddress")):
        return 2
    if t == "->" and (w[i + 1].startswith("RemoteAddress") or ipvs_dest_at(w, i)):
        return 2
    if t in IPVS_PROTOS and (addr_port(w[i + 1]) or w[i + 1].startswith("[")) and _SCHED.match(w[i + 2]):
        return 2
    if t == "FWM" and num(w[i + 1]) is not None and _SCHED.match(w[i + 2] if w[i + 2] != "IPv6" else w[i + 3]):
        return 2
    return 0


def detect_ipvsadm_save(w: Words, i: int, ctx: Ctx) -> int:
    return 2 if w[i] in ("-A", "-a") and w[i + 1] in IPVS_SAVE_SVC and w[i + 2] else 0


def ipvs_dest_at(w: Words, k: int) -> bool:
    return w[k] == "->" and bool(addr_port(w[k + 1]) or w[k + 1].startswith("[")) and w[k + 2] in IPVS_FORWARD


def parse_ipvsadm(w: Words, i: int, ctx: Ctx) -> int:
    """`TCP  10.96.0.1:443 rr [persistent N ...]` with its `  -> 192.168.56.11:6443  Masq  1  0  0`
    lines; the title lines are consumed and give nothing."""
    t = w[i]
    if t == "IP":  # IP Virtual Server version 1.2.1 (size=4096)
        k = i + 3
        while k < w.n and not w.at_bol(k) and k < i + 6 and not w[k - 1].startswith("(size="):
            k += 1
        return k
    if t in ("Prot", "->") and not ipvs_dest_at(w, i):  # title lines
        titles = {"Prot", "LocalAddress:Port", "Scheduler", "Flags", "->", "RemoteAddress:Port",
                  "Forward", "Weight", "ActiveConn", "InActConn"}
        k = i + 1
        while k < w.n and not w.at_bol(k) and w[k] in titles and not (w[k] == "->" and k > i + 1):
            k += 1
        return k
    if t == "->":  # a real server after a service line we could not read
        svc = ctx.host.ipvs[-1] if ctx.host.ipvs else None
        return read_ipvs_dests(w, i, ctx, svc)
    k = i + 1
    svc = None
    if t == "FWM":
        mark = num(w[k])
        k += 1
        if w[k] == "IPv6":
            k += 1
        else:
            svc = IpvsService(proto="FWM", address=None, port=None, fwmark=mark)
    else:
        ap = addr_port(w[k])
        svc = IpvsService(proto=t, address=ap[0], port=ap[1]) if ap else None
        k += 1
    if svc is None:
        ctx.state.v6_skipped += 1
    sched = w[k]
    k += 1
    if svc:
        svc.scheduler = sched
    while k < w.n and not w.at_bol(k):  # flags: persistent N, mask M, pe NAME, ops, (sh-port,...)
        if w[k] in ("persistent", "mask", "pe"):
            k += 2
        elif w[k] in ("ops", "synproxy") or (w[k].startswith("(") and w[k].endswith(")")):
            k += 1
        else:
            break
    if svc:
        ctx.host.ipvs.append(svc)
    return read_ipvs_dests(w, k, ctx, svc)


def read_ipvs_dests(w: Words, k: int, ctx: Ctx, svc: IpvsService | None) -> int:
    """`  -> 10.244.0.5:53   Masq   1   0   0` lines (forward, weight, active, inactive)."""
    while ipvs_dest_at(w, k):
        ap, forward = addr_port(w[k + 1]), w[k + 2]
        counts: list[int] = []
        j = k + 3
        while len(counts) < 3 and num(w[j]) is not None and not w.at_bol(j):
            counts.append(num(w[j]) or 0)
            j += 1
        if not counts:
            break
        weight, active, inactive = (counts + [0, 0])[:3]
        if ap and svc:
            svc.dests.append(IpvsDest(address=ap[0], port=ap[1], forward=forward, weight=weight,
                                      active=active, inactive=inactive))
        k = j
    return k


def parse_ipvsadm_save(w: Words, i: int, ctx: Ctx) -> int:
    """`-A -t 10.96.0.1:443 -s rr [-p 10800]` and `-a -t 10.96.0.1:443 -r 10.244.0.5:6443 -m -w 1`."""
    proto, vip, k = IPVS_SAVE_SVC[w[i + 1]], w[i + 2], i + 3
    opts: dict[str, str] = {}
    fwd = "Masq"
    while k < w.n and not w.at_bol(k) and not detect_ipvsadm_save(w, k, ctx):
        t = w[k]
        if t in IPVS_SAVE_FWD:
            fwd = IPVS_SAVE_FWD[t]
            k += 1
        elif t.startswith("-") and w[k + 1] and not w[k + 1].startswith("-"):
            opts[t] = w[k + 1]
            k += 2
        elif t in ("ops",) or t.startswith("-"):
            k += 1
        elif t == "pe":
            k += 2
        else:
            break
    if proto == "FWM":
        key: tuple = (None, None, num(vip))
    else:
        ap = addr_port(vip)
        if ap is None:
            ctx.state.v6_skipped += 1
            return k
        key = (ap[0], ap[1], None)
    svc = next((s for s in ctx.host.ipvs if (s.address, s.port, s.fwmark) == key
                and (s.proto == proto or proto == "FWM")), None)
    if svc is None:
        svc = IpvsService(proto=proto, address=key[0], port=key[1], fwmark=key[2])
        ctx.host.ipvs.append(svc)
    if w[i] == "-A":
        svc.scheduler = opts.get("-s", opts.get("--scheduler", svc.scheduler))
    else:
        real = addr_port(opts.get("-r", opts.get("--real-server", "")))
        if real:
            weight = num(opts.get("-w", opts.get("--weight", "1")))
            svc.dests.append(IpvsDest(address=real[0], port=real[1], forward=fwd,
                                      weight=weight if weight is not None else 1))
    return k


# --- sysctl -------------------------------------------------------------------------------------

_SYSCTL_KEY = re.compile(r"^[a-z][a-z0-9_-]*(?:\.[^\s=.]+)+$", re.ASCII)


def detect_sysctl(w: Words, i: int, ctx: Ctx) -> int:
    if ctx.cat_pending and ctx.hinted("sysctl"):
        return 2
    t = w[i]
    if _SYSCTL_KEY.match(t) and w[i + 1] == "=" and not w.bol[i + 1]:
        return 2
    key, eq, value = t.partition("=")
    if eq and value and _SYSCTL_KEY.match(key) and "." in key:
        return 1
    return 1 if t == "sysctl:" else 0


def parse_sysctl(w: Words, i: int, ctx: Ctx) -> int:
    """`net.ipv4.ip_forward = 1` (also squashed), `key=value`, and the value after `cat /proc/sys/...`."""
    if ctx.cat_pending:
        ctx.cat_pending = False
        k = value_end(w, i, first=i)
        store_sysctl(ctx, ctx.hint.key if ctx.hint else None, w.span(i, k))
        return k
    t = w[i]
    if t == "sysctl:":  # "sysctl: permission denied on key 'fs.protected_fifos'"
        k = i + 1
        while k < w.n and not w.at_bol(k) and k < i + 8:
            k += 1
            if w[k - 1].endswith(("'", '"')) and k - 1 > i + 1:
                break
        return k
    if w[i + 1] == "=":
        k = value_end(w, i + 2, first=i + 2)
        store_sysctl(ctx, t, w.span(i + 2, k))
        return k
    key, _, value = t.partition("=")
    store_sysctl(ctx, key, value)
    return i + 1


def value_end(w: Words, k: int, first: int) -> int:
    """A sysctl value: the rest of its line (`32768	60999`, `reno cubic`); squashed, where the
    line goes on with more, one word plus any numbers after it."""
    if k >= w.n or (w.bol[k] and k == first and w[k - 1] == "="):
        return k  # "key =" with an empty value
    j = k + 1
    while j < w.n and not w.bol[j] and w[j + 1] != "=" and not strong_start(w, j):
        j += 1
    if w.at_bol(j):
        return j
    end = k + 1
    while end < j and num(w[end]) is not None:
        end += 1
    return end


def store_sysctl(ctx: Ctx, key: str | None, value: str) -> None:
    if not key:
        return
    key = key.replace("/", ".")  # sysctl prints "flannel.1" as "flannel/1"; the bundle keeps dots
    if key.startswith("net."):
        ctx.host.sysctls[key] = value.strip()


# --- the registry -------------------------------------------------------------------------------

COMMANDS: list[Command] = [
    Command("ip link", detect_ip_link, parse_ip_link),
    Command("ip a", detect_ip_addr, parse_ip_addr),
    Command("ip -br link", detect_ip_brief_link, parse_ip_brief),
    Command("ip -br a", detect_ip_brief, parse_ip_brief),
    Command("ip rule", detect_ip_rule, parse_ip_rule),
    Command("ip neigh", detect_ip_neigh, parse_ip_neigh),
    Command("ip r get", detect_ip_route_get, parse_ip_route_get),
    Command("ip r", detect_ip_route, parse_ip_route),
    Command("arp -a", detect_arp_a, parse_arp_a),
    Command("arp -n", detect_arp_n, parse_arp_n),
    Command("bridge fdb", detect_bridge_fdb, parse_bridge_fdb),
    Command("iptables-save", detect_iptables, parse_iptables),
    Command("ipvsadm -Ln", detect_ipvsadm, parse_ipvsadm),
    Command("ipvsadm -Sn", detect_ipvsadm_save, parse_ipvsadm_save),
    Command("sysctl", detect_sysctl, parse_sysctl),
]
BY_NAME = {c.name: c for c in COMMANDS}
SUPPORTED = ", ".join(c.name for c in COMMANDS)


def strong_start(w: Words, k: int, exclude: tuple[str, ...] = ()) -> bool:
    """Does an unmistakable record of some command start at k? Ends squashed records early."""
    return any(c.name not in exclude and c.detect(w, k, _NO_HINT) == 2 for c in COMMANDS)


# --- command lines and prompts --------------------------------------------------------------

_PROMPT = re.compile(r"^[\w.@:~/\[\]()+-]*[#$%❯➜»]$")
_PROMPT_OPEN = re.compile(r"^(?:\[|\(|[\w.-]+@)")  # "[root@n1 ~]#", "(venv) u@h:~$", "u@h ~ $"
_PROMPT_HOST = re.compile(r"^[\w.-]+:?$")  # "node1 ~ #": a host name, then only paths
WRAPPERS = {"sudo", "doas", "nsenter", "kubectl", "oc", "docker", "crictl", "nerdctl", "podman",
            "chroot", "watch", "timeout", "env", "command", "time", "nice", "exec", "toolbox"}
SHELL_WORDS = {"iptables", "ip6tables", "nft", "ss", "netstat", "route", "ifconfig", "ethtool", "tcpdump",
               "ping", "curl", "wget", "nc", "kubectl", "crictl", "docker", "traceroute", "tracepath",
               "nslookup", "dig", "host", "conntrack", "cat", "ls", "cd", "systemctl", "journalctl",
               "mtr", "brctl", "ovs-vsctl", "calicoctl", "cilium", "hostname", "uname", "echo",
               "lsmod", "modprobe", "dmesg"} | WRAPPERS
FILTERS = {"grep", "egrep", "fgrep", "head", "tail", "sort", "column", "less", "more", "awk", "sed",
           "cut", "tr", "uniq", "wc", "tee", "cat"}


def prompt_len(w: Words, i: int) -> int:
    """How many words of a shell prompt start at i (`$`, `root@n1:~#`, `[root@n1 ~]#`)."""
    t = w[i]
    if not t:
        return 0
    if _PROMPT.match(t):
        return 1
    for j in range(1, 4):
        if w.at_bol(i + j):
            break
        if _PROMPT.match(w[i + j]):
            middle = w.items[i + 1:i + j]
            if _PROMPT_OPEN.match(t) or (_PROMPT_HOST.match(t) and middle
                                          and all(m[:1] in "~/" for m in middle)):
                return j + 1
            break
    return 0


def command_line(w: Words, i: int, ctx: Ctx) -> tuple[Hint | None, int] | None:
    """A command line at i: (hint, index after it); hint None for an empty prompt. Normal form:
    the whole line. Squashed: as far as the command's grammar goes, checked by its output following."""
    p = prompt_len(w, i)
    k = i + p
    if p and w.at_bol(k):
        return (None, k) if w.bol[i] else None  # an empty prompt line
    if not p and base(w[i]) not in COMMAND_WORDS and w[i] not in WRAPPERS:
        return None
    found = read_invocation(w, k, ctx)
    if found and (found[0].name or p):
        hint, j = found
        if w.at_bol(j) or output_follows(w, j, ctx, hint):
            return hint, j
        if w.bol[i]:  # more arguments than the grammar knows (`| grep -A3 x`): up to the output
            return hint, command_end(w, j, ctx)
        return (hint, j) if p else None
    if not p or not w.bol[i]:
        return None  # squashed: without a known command we cannot tell where it ends
    if w[i] == "#" and base(w[k]) not in SHELL_WORDS:
        return None  # "# Generated by iptables-save", "# notes": a comment, not a root prompt
    end = command_end(w, k, ctx)
    return Hint(name=None, text=w.span(k, end)), end


def output_follows(w: Words, j: int, ctx: Ctx, hint: Hint) -> bool:
    probe = Ctx(ctx.state, hint=hint, cat_pending=bool(hint.key))
    return detect(w, j, probe) is not None


def command_end(w: Words, k: int, ctx: Ctx) -> int:
    """End of a command line whose arguments we do not know: its line end, or (squashed text)
    the next prompt or unmistakable record."""
    j = k + 1
    while j < w.n and not w.bol[j]:
        if (prompt_len(w, j) and read_invocation(w, j + prompt_len(w, j), ctx)) or strong_start(w, j):
            break
        j += 1
    return j


def read_invocation(w: Words, k: int, ctx: Ctx) -> tuple[Hint, int] | None:
    """A (possibly wrapped: sudo, ip netns exec, kubectl exec --, nsenter) supported command."""
    start = k
    limit = k + 16
    while k < limit and k < w.n:
        if k > start and w.bol[k]:
            return None
        t = base(w[k])
        if t == "ip" and w[k + 1] == "netns" and w[k + 2] == "exec":
            k += 4
            continue
        if t in COMMAND_WORDS:
            got = ARGS[t](w, k + 1)
            if got:
                name, fields, j = got
                j = skip_filters(w, j)
                return Hint(name=name, text=w.span(start, j), **fields), j
            if k == start:
                return None
        elif k == start and t not in WRAPPERS:
            return None
        k += 1
    return None


FILTER_VALUE_OPTS = {"-A", "-B", "-C", "-m", "-e", "-f", "-n", "-F", "-d", "-k", "-t"}


def skip_filters(w: Words, j: int) -> int:
    """`| grep -E "a|b"`, `| column -t`, `2>/dev/null` after a command: where its output starts."""
    while j < w.n and not w.bol[j]:
        t = w[j]
        if t in (">", "2>", "&>"):
            j += 2
        elif re.match(r"^[0-9&]?>", t):
            j += 1
        elif t == "|" and base(w[j + 1]) in FILTERS:
            tool, j = base(w[j + 1]), j + 2
            pattern = tool in ("grep", "egrep", "fgrep", "awk", "sed")
            while w[j].startswith("-") and not w.bol[j]:
                pattern = pattern and w[j] not in ("-e", "-f")  # the pattern was an option's value
                j += 2 if w[j] in FILTER_VALUE_OPTS else 1
            if pattern and not w.at_bol(j):
                j = quoted_end(w, j)
        else:
            break
    return j


def quoted_end(w: Words, j: int) -> int:
    """Index after the shell word at j, which may be a quoted string spanning several words."""
    q = w[j][:1]
    if q not in ("'", '"') or (len(w[j]) > 1 and w[j].endswith(q)):
        return j + 1
    k = j + 1
    while k < w.n and not w.bol[k]:
        k += 1
        if w[k - 1].endswith(q):
            break
    return k


ArgsResult = tuple[str | None, dict, int] | None


def ip_object(word: str) -> str | None:
    for full, name in (("address", "ip a"), ("link", "ip link"), ("route", "ip r"), ("neighbour", "ip neigh"),
                       ("neighbor", "ip neigh"), ("rule", "ip rule")):
        if word and full.startswith(word) and not (full == "rule" and len(word) < 2):
            return name
    return None


def args_ip(w: Words, k: int) -> ArgsResult:
    fields: dict = {}
    brief = False
    while w[k].startswith("-") and not w.at_bol(k):
        opt = w[k].lstrip("-")
        if opt in ("n", "netns", "f", "family", "b", "batch", "rc", "rcvbuf", "l", "loops"):
            if opt in ("f", "family") and w[k + 1] in ("inet6", "6"):
                fields["v6"] = True
            k += 2
            continue
        fields["v6"] = fields.get("v6") or opt == "6"
        brief = brief or opt in ("br", "brief")
        k += 1
    if w.at_bol(k):
        return None
    name = ip_object(w[k])
    if name is None:
        return (None, {}, k + 1) if w[k].isalpha() else None
    if brief and name in ("ip a", "ip link"):
        name = "ip -br a" if name == "ip a" else "ip -br link"
    k += 1
    if w[k] in ("show", "list", "ls", "lst", "sh", "s", "l"):
        k += 1
    elif w[k] in ("get", "g") and name == "ip r":
        name = "ip r get"
        k += 1
        if is_ipv4(w[k]) or is_ipv6(w[k]):
            fields["query"] = w[k]
            k += 1
    elif w[k] and not w.bol[k] and w[k] in ("add", "del", "delete", "replace", "change", "flush", "set", "append"):
        return None, {}, k
    pairs = {"dev", "table", "type", "proto", "scope", "vrf", "master", "nud", "to", "from", "iif", "oif",
             "mark", "uid", "tos", "ipproto", "sport", "dport", "label", "match", "exact", "root", "lookup",
             "fwmark", "priority", "pref", "group"}
    singles = {"up", "fibmatch", "connected", "cache", "all", "permanent", "proxy", "unused", "dynamic",
               "primary", "secondary"}
    while k < w.n and not w.bol[k]:
        t = w[k]
        if t in pairs and w[k + 1] and not w.bol[k + 1]:
            if t in ("dev", "table"):
                fields[t] = w[k + 1]
            k += 2
        elif t in singles:
            k += 1
        elif t in ("|", "2>/dev/null") or t.startswith(("2>", ">")):
            break
        elif any(c.detect(w, k, _NO_HINT) for c in COMMANDS):
            break  # the output starts (squashed text)
        elif name in ("ip a", "ip link", "ip -br a", "ip -br link") and re.match(r"^[\w.@-]+$", t) \
                and "dev" not in fields:
            fields["dev"] = t  # `ip a show eth0`
            k += 1
        elif name in ("ip r", "ip neigh") and (is_dst(t) or t == "default") and \
                not (w[k + 1] in ROUTE_KEYS or w[k + 1] in ("nexthop",) or w[k + 1] in NEIGH_KEYS):
            k += 1  # `ip r show 10.0.0.0/8` selector
        else:
            break
    if name in ("ip a", "ip link", "ip -br a", "ip -br link"):
        fields.pop("dev", None)  # their output names the device anyway
    return name, fields, k


def args_arp(w: Words, k: int) -> ArgsResult:
    letters = ""
    while w[k].startswith("-") and not w.at_bol(k):
        if w[k] in ("-i", "-H", "-t", "--device", "--hw-type"):
            k += 2
            continue
        letters += w[k].lstrip("-")
        k += 1
    if "s" in letters or "d" in letters:
        return None, {}, k
    name = "arp -a" if "a" in letters else "arp -n"
    if w[k] and not w.bol[k] and not detect_arp_a(w, k, _NO_HINT) and not detect_arp_n(w, k, _NO_HINT) \
            and (is_ipv4(w[k]) or re.match(r"^[\w.-]+$", w[k])) and w[k] != "|":
        k += 1  # arp -a HOST
    return name, {}, k


def args_bridge(w: Words, k: int) -> ArgsResult:
    while w[k].startswith("-") and not w.at_bol(k):
        k += 2 if w[k] in ("-n", "-netns", "-b", "-batch") else 1
    if not (w[k] and "fdb".startswith(w[k])) or w.at_bol(k):
        return (None, {}, k + 1) if w[k].isalpha() and not w.at_bol(k) else None
    k += 1
    fields: dict = {}
    if w[k] in ("show", "list", "ls", "sh", "s"):
        k += 1
    while k < w.n and not w.bol[k]:
        if w[k] in ("dev", "br", "brport", "vlan", "state") and w[k + 1]:
            if w[k] in ("dev", "brport"):
                fields["dev"] = w[k + 1]
            k += 2
        elif w[k] in ("dynamic", "self", "master"):
            k += 1
        else:
            break
    return "bridge fdb", fields, k


def args_iptables_save(tool: str) -> Callable[[Words, int], ArgsResult]:
    def args(w: Words, k: int) -> ArgsResult:
        while w[k].startswith("-") and not w.at_bol(k):
            k += 2 if w[k] in ("-t", "--table", "-M", "--modprobe", "-f", "--file") else 1
        name = "ip6tables-save" if tool.startswith("ip6") else "iptables-save"
        backend = "nft" if "-nft" in tool else "legacy" if "-legacy" in tool else None
        return name, {"backend": backend}, k
    return args


def args_ipvsadm(w: Words, k: int) -> ArgsResult:
    letters, save, other = "", False, False
    while w[k].startswith("-") and not w.at_bol(k):
        t = w[k]
        if t in ("-A", "-a") and w[k + 1] in IPVS_SAVE_SVC:
            break  # the -S output starts
        if t in ("-t", "-u", "-f", "--tcp-service", "--udp-service", "--fwmark-service"):
            k += 2
            continue
        if t.startswith("--"):
            save = save or t == "--save"
            other = other or t in ("--stats", "--rate", "--thresholds", "--connection", "--timeout", "--daemon")
            letters += "L" if t == "--list" else ""
        else:
            letters += t[1:]
        k += 1
    save = save or "S" in letters
    if other or "c" in letters:
        return None, {}, k
    return ("ipvsadm -Sn" if save else "ipvsadm -Ln"), {}, k


def args_sysctl(w: Words, k: int) -> ArgsResult:
    values_only = False
    while k < w.n and not w.bol[k]:
        t = w[k]
        if t in ("-r", "--pattern", "-p", "--load") and w[k + 1]:
            k += 2
        elif t.startswith("-"):
            # -n / --values print values without keys, -N keys without values: nothing to read
            values_only = values_only or t in ("--values", "--names") or (t[1:2] != "-" and ("n" in t or "N" in t))
            k += 1
        elif _SYSCTL_KEY.match(t) and w[k + 1] != "=":
            k += 1
        elif "=" in t and _SYSCTL_KEY.match(t.partition("=")[0]):
            k += 1  # sysctl -w key=value
        else:
            break
    return (None if values_only else "sysctl"), {}, k


def args_cat(w: Words, k: int) -> ArgsResult:
    path = w[k]
    if path.startswith("/proc/sys/net/") and not w.at_bol(k):
        return "sysctl", {"key": path[len("/proc/sys/"):].replace("/", ".")}, k + 1
    return None


ARGS: dict[str, Callable[[Words, int], ArgsResult]] = {
    "ip": args_ip, "arp": args_arp, "bridge": args_bridge, "ipvsadm": args_ipvsadm, "sysctl": args_sysctl,
    "cat": args_cat,
    **{t: args_iptables_save(t) for t in ("iptables-save", "iptables-nft-save", "iptables-legacy-save",
                                          "ip6tables-save", "ip6tables-nft-save", "ip6tables-legacy-save")},
}
COMMAND_WORDS = set(ARGS)
_NO_HINT = Ctx(HostState(Host(name="-")))  # for detectors asked without a command line's hint


# --- the scanner ----------------------------------------------------------------------------


@dataclass
class Run:
    command: str
    start: int  # word indices
    end: int


def scan(text: str, state: HostState) -> tuple[Words, list[Run], list[int]]:
    """Read one pasted text into state.host. Returns the words, the recognised runs and the
    indices of words nothing recognised."""
    w = Words(normalise(text))
    ctx = Ctx(state)
    runs: list[Run] = []
    unparsed: list[int] = []
    i = 0
    while i < w.n:
        line = command_line(w, i, ctx)
        if line:
            hint, j = line
            ctx.hint, ctx.current = hint, None
            ctx.cat_pending = bool(hint and hint.key)
            if hint and hint.name is None and hint.text:
                state.note("unsupported", f"`{hint.text[:60]}` at line {w.lines[i]}")
            i = max(j, i + 1)
            continue
        cmd = detect(w, i, ctx)
        if cmd is None:
            unparsed.append(i)
            i += 1
            continue
        if ctx.hint and ctx.hint.name and cmd.name != ctx.hint.name and not ctx.hinted("ip6tables-save"):
            ctx.hint = None  # the output of something else follows: the hint's dev/table no longer apply
        j = max(cmd.parse(w, i, ctx), i + 1)
        name = ctx.hint.name if cmd.name == "iptables-save" and ctx.hinted("ip6tables-save") else cmd.name
        if runs and runs[-1].command == name and runs[-1].end == i:
            runs[-1].end = j
        else:
            runs.append(Run(name, i, j))
        ctx.current = cmd
        i = j
    return w, runs, unparsed


def detect(w: Words, i: int, ctx: Ctx) -> Command | None:
    """The command whose record starts at word i. An unmistakable record (strength 2) wins, the
    hinted command first; a plausible one (1) counts at a line start or inside a run or hint."""
    hinted = BY_NAME.get(ctx.hint.name) if ctx.hint and ctx.hint.name else None
    if ctx.hinted("ip6tables-save"):
        hinted = BY_NAME["iptables-save"]
    order = ([hinted] if hinted else []) + [c for c in COMMANDS if c is not hinted]
    weak = None
    for cmd in order:
        s = cmd.detect(w, i, ctx)
        if s >= 2:
            return cmd
        if s == 1 and weak is None and (w.bol[i] or cmd is ctx.current or cmd is hinted):
            weak = cmd
    return weak


# --- public API -----------------------------------------------------------------------------


def recognise(text: str) -> list[tuple[str, str]]:
    """Split pasted text into (command, output) pairs, e.g. [("ip a", "1: lo: ..."), ("ip r", ...)].
    Consecutive records of one command form one chunk; prompts and command lines are left out."""
    if not isinstance(text, str):
        raise BundleError("pasted output must be text")
    w, runs, _ = scan(text, HostState(Host(name="-")))
    return [(r.command, w.span(r.start, r.end)) for r in runs]


def import_texts(texts: list[tuple[str, str]], host_name: str | None = None) -> Bundle:
    """A Bundle(source="import") from pasted outputs: one Host per file, named host_name or the
    file's stem (files that get the same name are merged into one Host). Raises BundleError when
    a file holds nothing recognisable."""
    names = [host_name or host_name_of(str(label)) for label, _ in texts]
    states: dict[str, HostState] = {}
    for (label, content), name in zip(texts, names):
        if not isinstance(content, str):
            raise BundleError(f"{label}: pasted output must be text")
        state = states.get(name) or HostState(Host(name=name, kind="unknown"))
        w, runs, unparsed = scan(content, state)
        if not runs:
            raise BundleError(f"{label}: no command output recognised; supported: {SUPPORTED}")
        states[name] = state
        for r in runs:
            if r.command not in state.host.sources:
                state.host.sources.append(r.command)
        if unparsed:
            where = unparsed_summary(w, unparsed)
            state.note("unparsed", f"{label}: {where}" if names.count(name) > 1 else where)
    hosts = [finish(s) for s in states.values()]
    return Bundle(source="import", hosts=hosts,
                  created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def host_name_of(label: str) -> str:
    stem = PurePath(label).stem if label not in ("-", "") else ""
    return stem or "stdin"


def unparsed_summary(w: Words, idx: list[int], limit: int = 4) -> str:
    """`3 lines at line 40 ("RTNETLINK answers: ...")`, `5 words at line 1 (...)`, runs joined by `; `."""
    groups: list[list[int]] = []
    for i in idx:
        if groups and groups[-1][-1] == i - 1:
            groups[-1].append(i)
        else:
            groups.append([i])
    parts = []
    for g in groups[:limit]:
        lines = sorted({w.lines[i] for i in g})
        whole = w.bol[g[0]] and (g[-1] + 1 >= w.n or w.bol[g[-1] + 1])
        snippet = w.span(g[0], min(g[-1] + 1, g[0] + 8))[:40].replace("\n", " ")
        if whole:
            count = f"{len(lines)} line{'s' if len(lines) > 1 else ''}"
        else:
            count = f"{len(g)} word{'s' if len(g) > 1 else ''}"
        parts.append(f'{count} at line {lines[0]} ("{snippet}")')
    if len(groups) > limit:
        parts.append(f"and {len(groups) - limit} more")
    return "; ".join(parts)


# --- after all files of a host are read -------------------------------------------------------

_FLANNEL = re.compile(r"^flannel\.([0-9]+)$")
BRIDGE_NAMES = re.compile(r"^(cni[0-9]+|docker[0-9]+|cbr[0-9]+|br-.*|virbr[0-9]+|br[0-9]+)$")


def finish(state: HostState) -> Host:
    host = state.host
    masters = {l.master for l in host.links if l.master}
    by_name = {l.name: l for l in host.links}
    for link in host.links:
        if link.peer_name and link.peer_index is None and link.peer_name in by_name:
            link.peer_index = by_name[link.peer_name].index
        if link.kind is None:
            link.kind = guess_kind(link, state.link_types.get(link.name), masters)
        m = _FLANNEL.match(link.name)
        if link.kind == "vxlan" and link.vxlan is None and m:
            link.vxlan = Vxlan(vni=int(m.group(1)), port=8472, learning=False)
            state.note("vxlan", f"{link.name}: VNI {m.group(1)}, port 8472, learning off assumed (flannel "
                                f"defaults); paste `ip -d link show {link.name}` for the real values")
        fwd = host.sysctls.get(f"net.ipv4.conf.{link.name}.forwarding")
        if fwd is not None:
            link.forwarding = fwd == "1"
    # arp cannot tell REACHABLE from STALE: an `ip neigh` entry for the same (dev, ip) wins
    seen = {(n.ifname, n.dst) for n in host.neigh if id(n) not in state.from_arp}
    host.neigh = [n for n in host.neigh if id(n) not in state.from_arp or (n.ifname, n.dst) not in seen]
    if state.legacy_warning and "legacy" not in host.iptables_save:
        state.note("iptables-legacy", "iptables-nft-save warns that legacy tables exist; paste "
                                      "`iptables-legacy-save -c` too")
    if state.v6_skipped:
        state.note("ipv6", f"{state.v6_skipped} IPv6 entries skipped (podpath reads IPv4)")
    host.gaps.update({k: "; ".join(v) for k, v in state.notes.items()})
    return host


def guess_kind(link: Link, link_type: str | None, masters: set[str]) -> str | None:
    """Without `ip -d` details: the kind the name, the peer and the link type point to."""
    if link_type == "loopback" or link.name == "lo":
        return "loopback"
    if _FLANNEL.match(link.name) or link.name.startswith(("vxlan", "flannel.")):
        return "vxlan"
    if link.name in masters or BRIDGE_NAMES.match(link.name):
        return "bridge"
    if link.name in ("kube-ipvs0", "nodelocaldns"):
        return "dummy"
    if link.peer_name and "." in link.name and link.name.split(".")[0] == link.peer_name:
        return "vlan"  # eth0.100@eth0
    if link.peer_index is not None or link.peer_name or link.name.startswith("veth"):
        return "veth"
    return link_type  # "ether" for link/ether, as the live collector's ARPHRD fallback
