"""The JSON forms: `ip -j a`, `ip -j link`, `ip -j r`, `ip -j neigh`, `bridge -j fdb` (also `-p` pretty).
They are exact, so the README asks for them; each array becomes what its text form would."""

from __future__ import annotations

import bisect
import json

from ...bundle import Addr, Fdb, Link, Neigh, Route, Vxlan
from .links import add_link
from .state import ImportCtx
from .text import Words, is_ipv4, is_ipv6, mac, table_id

_DECODER = json.JSONDecoder()


def json_at(w: Words, i: int) -> tuple[list, int] | None:
    """The JSON array that starts at word i and the index of the first word after it."""
    t = w[i]
    if not (t.startswith("[{") or (t == "[" and w[i + 1].startswith("{")) or t == "[]"):
        return None
    try:
        value, end = _DECODER.raw_decode(w.text, w.starts[i])
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        return None
    return value, bisect.bisect_left(w.starts, end)


def kind_of(items: list[dict]) -> str | None:
    if not items:
        return None
    first = items[0]
    if "mac" in first and "ifindex" not in first:
        return "bridge fdb"
    if "ifname" in first and ("flags" in first or "addr_info" in first or "ifindex" in first):
        return "ip a" if any("addr_info" in x for x in items) else "ip link"
    neigh_state = "state" in first and "protocol" not in first and "gateway" not in first
    if "dst" in first and ("lladdr" in first or neigh_state):
        return "ip neigh"
    if "dst" in first:
        return "ip r"
    return None


def detect_json(w: Words, i: int, ctx: ImportCtx) -> int:
    if w[i][:1] != "[":
        return 0
    got = json_at(w, i)
    return 2 if got and (kind_of(got[0]) or not got[0]) else 0


def parse_json(w: Words, i: int, ctx: ImportCtx) -> int:
    got = json_at(w, i)
    assert got is not None
    items, j = got
    kind = kind_of(items)
    if kind is None:
        return j  # `[]`: an empty table, printed exactly
    for item in items:
        try:
            READERS[kind](item, ctx)
        except (TypeError, ValueError, AttributeError):
            ctx.state.note("unparsed values", f"line {w.lines[i]}: a `{kind}` JSON entry podpath could not read: "
                                              f"{json.dumps(item)[:80]}")
    if kind not in ctx.host.sources:  # the table counts as pasted, as its text form would
        ctx.host.sources.append(kind)
    return j


def read_link(x: dict, ctx: ImportCtx) -> None:
    name = x["ifname"]
    flags = set(x.get("flags") or [])
    link = Link(name=name, index=x.get("ifindex"), mtu=x.get("mtu"), master=x.get("master"),
                mac=mac(x.get("address") or "") if x.get("link_type") != "none" else None,
                up="UP" in flags,
                carrier="NO-CARRIER" not in flags and x.get("operstate") not in ("DOWN", "LOWERLAYERDOWN"),
                peer_index=x.get("link_index"), peer_netnsid=x.get("link_netnsid"))
    if x.get("link") and x.get("link_index") is None:
        link.peer_name = x["link"]
    if x.get("link_type"):
        ctx.state.link_types[name] = x["link_type"]
    info = x.get("linkinfo") or {}
    if info.get("info_kind"):
        link.kind = info["info_kind"]
        data = info.get("info_data") or {}
        if link.kind == "vxlan":
            link.vxlan = Vxlan(vni=data.get("id", 0), local=data.get("local"), dev=data.get("link"),
                               port=data.get("port", 8472), learning=bool(data.get("learning", True)))
    add_link(ctx, link)
    for a in x.get("addr_info") or []:
        if a.get("family") == "inet" and is_ipv4(a.get("local", "")):
            ctx.state.add_unique("addrs", Addr(ifname=name, address=a["local"], prefixlen=a.get("prefixlen", 32),
                                               scope=a.get("scope")))


def read_route(x: dict, ctx: ImportCtx) -> None:
    dst, gw = x["dst"], x.get("gateway")
    if is_ipv6(dst) or (gw and not is_ipv4(gw)):
        ctx.state.v6_skipped += 1
        return
    if dst != "default" and "/" not in dst:
        dst += "/32"
    rtype = x.get("type", "unicast")
    table = table_id(str(x["table"])) if "table" in x else (255 if rtype in ("local", "broadcast") else 254)
    ctx.state.add_unique("routes", Route(
        dst="default" if dst == "0.0.0.0/0" else dst, table=table, type=rtype, gateway=gw, dev=x.get("dev"),
        prefsrc=x.get("prefsrc"), scope=x.get("scope", "global"), metric=x.get("metric"),
        onlink="onlink" in (x.get("flags") or []), proto=x.get("protocol", "boot")))


def read_neigh(x: dict, ctx: ImportCtx) -> None:
    if not is_ipv4(x["dst"]):
        ctx.state.v6_skipped += 1
        return
    ctx.state.add_unique("neigh", Neigh(ifname=x["dev"], dst=x["dst"], lladdr=mac(x.get("lladdr") or ""),
                                        state=list(x.get("state") or ["NONE"]), router="router" in x))


def read_fdb(x: dict, ctx: ImportCtx) -> None:
    dst = x.get("dst")
    if dst is not None and not is_ipv4(dst):
        ctx.state.v6_skipped += 1
        return
    flags = list(x.get("flags") or [])
    if x.get("master"):
        flags.append("master")
    if x.get("state"):
        flags.append(x["state"])
    entry_mac = mac(x["mac"]) or x["mac"].lower()
    if dst is None and entry_mac.startswith(("33:33:", "01:00:5e:")):
        return  # multicast self entries: noise, as in the text form
    ctx.state.add_unique("fdb", Fdb(ifname=x.get("ifname") or x["dev"], mac=entry_mac, master=x.get("master"),
                                    dst=dst, vlan=x.get("vlan"), flags=flags))


READERS = {"ip a": read_link, "ip link": read_link, "ip r": read_route, "ip neigh": read_neigh, "bridge fdb": read_fdb}
