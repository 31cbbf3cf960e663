"""`ip a`, `ip link` (also `-d`, `-o`) and `ip -br a` / `ip -br link`."""

from __future__ import annotations

import re

from ...bundle import Addr, Link, Vxlan
from .state import ImportCtx, after_value_key
from .text import Words, is_ipv4, is_ipv6, is_mac, is_prefix4, mac, num
from . import prompts, registry  # in the import cycle: used as module attributes


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


def detect_ip_link(w: Words, i: int, ctx: ImportCtx) -> int:
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


def detect_ip_addr(w: Words, i: int, ctx: ImportCtx) -> int:
    return 2 if link_header(w, i) or addr_line_header(w, i) else 0


def block_ends(w: Words, k: int, ctx: ImportCtx) -> bool:
    """Does the interface block that reached word k end before it?"""
    if link_header(w, k) or addr_line_header(w, k):
        return True
    if w.bol[k] and not (w.indented[k] or w[k] in LINK_CONT or w[k].startswith("link/")):
        return True  # continuation lines are indented or start like one (chat may strip indentation)
    if k < w.n and prompts.may_be_header(w, k) and prompts.header_at(w, k):
        return True  # `=== node2 ===`
    return registry.strong_start(w, k, exclude=("ip a", "ip link")) or bool(prompts.command_line(w, k, ctx))


def parse_ip_link(w: Words, i: int, ctx: ImportCtx) -> int:
    return parse_link_block(w, i, ctx, addrs=False)


def parse_ip_addr(w: Words, i: int, ctx: ImportCtx) -> int:
    return parse_link_block(w, i, ctx, addrs=True)


def parse_link_block(w: Words, i: int, ctx: ImportCtx, addrs: bool) -> int:
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


INET_FLAGS = {"secondary", "primary", "dynamic", "noprefixroute", "tentative", "deprecated", "permanent", "home",
              "nodad", "mngtmpaddr", "optimistic", "temporary", "stable-privacy", "dadfailed", "autojoin"}


def parse_inet(w: Words, k: int, ctx: ImportCtx, ifname: str | None) -> int:
    """`inet 10.244.0.1/24 [peer P/L] [brd B] [scope S] [flags] [label]`; k at "inet"."""
    address, _, length = w[k + 1].partition("/")
    at = k
    k += 2
    if not is_ipv4(address):
        if not address or address in ("scope", "brd", "peer", "metric") or w.at_bol(at + 1):
            ctx.state.note("unparsed values", f"line {w.lines[at]}: `{w.line_text(at)[:80]}`: an inet line "
                                              "without an address; nothing was read from it")
            return at + 1
        ctx.state.odd_value(address, w, at, "address")
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
        elif w[k] in INET_FLAGS or (ifname and w[k].split(":")[0] == ifname):
            k += 1  # flags (secondary, dynamic, noprefixroute...) and the label
        else:
            break  # squashed text goes on with something else
    if ifname and prefixlen is not None and prefixlen <= 32:
        a = Addr(ifname=ifname, address=address, prefixlen=prefixlen, scope=scope)
        ctx.state.add_unique("addrs", a)
    return k


VXLAN_VALUE_KEYS = {"id", "remote", "group", "local", "dev", "dstport", "ttl", "tos", "ageing", "maxaddress", "label",
                    "df", "flowlabel", "src_vni", "vni"}
VXLAN_FLAGS = {"nolearning", "learning", "udpcsum", "noudpcsum", "udp6zerocsumtx", "udp6zerocsumrx", "l2miss", "l3miss",
               "proxy", "rsc", "external", "gbp", "gpe", "noudp6zerocsumtx", "noudp6zerocsumrx", "nol2miss", "nol3miss",
               "noproxy", "norsc", "localbypass", "nolocalbypass", "vnifilter"}


def parse_vxlan(w: Words, k: int, ctx: ImportCtx, link: Link) -> int:
    """`vxlan id 1 [remote|group IP] local 192.168.56.11 dev eth0 srcport 0 0 dstport 8472 nolearning ...`"""
    vx = Vxlan(vni=0, learning=True)
    seen_id = False
    while k < w.n and not w.at_bol(k) and not link_header(w, k):
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
        if t == "srcport":
            k += 3
        elif t in VXLAN_VALUE_KEYS:
            k += 2
        elif t in VXLAN_FLAGS:
            k += 1
        else:
            break  # the vxlan line ended (squashed text goes on with something else)
    if seen_id:
        link.vxlan = vx
    return k


def add_link(ctx: ImportCtx, link: Link) -> None:
    """Add or merge (same name pasted from `ip a` and `ip -d link`): newer non-empty values win."""
    old = ctx.state.link(link.name)
    if old is None:
        ctx.state.add_link(link)
        return
    if old.mac and link.mac and old.mac != link.mac and link.name != "lo":
        ctx.state.note("two hosts?", f"{link.name} was pasted twice with different MACs ({old.mac}, then {link.mac}): "
                                     "two hosts' output without a prompt or header between them? The later one was "
                                     "kept; put `=== <host> ===` before each host's output")
    for f in ("index", "kind", "mtu", "mac", "master", "peer_index", "peer_netnsid", "peer_name",
              "vxlan", "hairpin"):
        if getattr(link, f) is not None:
            setattr(old, f, getattr(link, f))
    old.up, old.carrier = link.up, link.carrier


# --- ip -br a / ip -br link ---------------------------------------------------------------------

OPERSTATES = {"UP", "DOWN", "UNKNOWN", "LOWERLAYERDOWN", "DORMANT", "NOTPRESENT", "TESTING"}


def detect_ip_brief(w: Words, i: int, ctx: ImportCtx) -> int:
    if w[i + 1] not in OPERSTATES or not _HDR_NAME_O.match(w[i]) or after_value_key(w, i):
        return 0
    if w[i] in HEADER_KEYS or w[i] in OPERSTATES or w[i] in ("state",):
        return 0
    nxt = w[i + 2]
    if is_prefix4(nxt) and "/" in nxt or is_ipv6(nxt) or (is_mac(nxt) and _FLAGS.match(w[i + 3])):
        return 2
    if w.at_bol(i + 2) or w[i + 3] in OPERSTATES or registry.strong_start(w, i + 2):
        return 1
    return 0


def detect_ip_brief_link(w: Words, i: int, ctx: ImportCtx) -> int:
    s = detect_ip_brief(w, i, ctx)
    if s and ((is_mac(w[i + 2]) and _FLAGS.match(w[i + 3])) or ctx.hinted("ip -br link")):
        return 2
    return 0


def parse_ip_brief(w: Words, i: int, ctx: ImportCtx) -> int:
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
            ctx.state.add_unique("addrs", a)
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
    old = ctx.state.link(name)
    if old is None:
        ctx.state.add_link(link)
    else:  # `ip -br a` knows less than `ip a`: only fill what is missing
        old.mac = old.mac or link.mac
        old.peer_index = old.peer_index if old.peer_index is not None else link.peer_index
    return k
