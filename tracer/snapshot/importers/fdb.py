"""`bridge fdb`: bridge and VXLAN forwarding databases."""

from __future__ import annotations

from ...bundle import Fdb
from .state import ImportCtx, after_value_key
from .text import Words, is_ipv4, is_ipv6, is_mac, mac, num


# --- bridge fdb ---------------------------------------------------------------------------------

FDB_KEYS = {"dev", "link-netnsid", "vlan", "dst", "port", "vni", "src_vni", "via", "nhid", "used", "state"}
FDB_FLAGS = {"self", "router", "extern_learn", "offload", "offloaded", "sticky", "permanent",
             "static", "stale", "locked", "blackhole", "dynamic"}


def detect_bridge_fdb(w: Words, i: int, ctx: ImportCtx) -> int:
    if not is_mac(w[i]) or after_value_key(w, i) or w.at_bol(i + 1) and not ctx.hinted("bridge fdb"):
        return 0
    if w[i + 1] in ("dev", "dst"):
        return 2
    return 1 if w[i + 1] in FDB_KEYS or w[i + 1] in FDB_FLAGS or w[i + 1] == "master" \
        or ctx.hinted("bridge fdb") else 0


def parse_bridge_fdb(w: Words, i: int, ctx: ImportCtx) -> int:
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
    elif dst is not None and not is_ipv4(dst) and not is_ipv6(dst):
        ctx.state.odd_value(dst, w, i, "VTEP address")
    elif dst is not None and not is_ipv4(dst):
        ctx.state.v6_skipped += 1
    elif not (dst is None and entry_mac.startswith(("33:33:", "01:00:5e:"))):  # multicast self noise
        entry = Fdb(ifname=ifname, mac=entry_mac, master=master, dst=dst,
                    vlan=num(keys.get("vlan", "")), flags=flags)
        ctx.state.add_unique("fdb", entry)
    return k
