"""`ipvsadm -Ln` and `ipvsadm -Sn`."""

from __future__ import annotations

import re

from ...bundle import IpvsDest, IpvsService
from .state import ImportCtx
from .text import Words, addr_port, num


# --- ipvsadm -Ln / -Sn --------------------------------------------------------------------------

IPVS_PROTOS = {"TCP", "UDP", "SCTP"}
IPVS_FORWARD = {"Masq", "Local", "Route", "Tunnel", "Bypass", "FullNat"}
IPVS_SAVE_SVC = {"-t": "TCP", "--tcp-service": "TCP", "-u": "UDP", "--udp-service": "UDP",
                 "--sctp-service": "SCTP", "-f": "FWM", "--fwmark-service": "FWM"}
IPVS_SAVE_FWD = {"-m": "Masq", "--masquerading": "Masq", "-g": "Route", "--gatewaying": "Route",
                 "-i": "Tunnel", "--ipip": "Tunnel"}
_SCHED = re.compile(r"^[a-z][a-z0-9]*$")


def detect_ipvsadm(w: Words, i: int, ctx: ImportCtx) -> int:
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


def detect_ipvsadm_save(w: Words, i: int, ctx: ImportCtx) -> int:
    return 2 if w[i] in ("-A", "-a") and w[i + 1] in IPVS_SAVE_SVC and w[i + 2] else 0


def ipvs_dest_at(w: Words, k: int) -> bool:
    return w[k] == "->" and bool(addr_port(w[k + 1]) or w[k + 1].startswith("[")) and w[k + 2] in IPVS_FORWARD


def parse_ipvsadm(w: Words, i: int, ctx: ImportCtx) -> int:
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
        if ap is None and not w[k].startswith("["):
            ctx.state.odd_value(w[k], w, k, "virtual service")
            ctx.state.v6_skipped -= 1  # counted below; it was no IPv6 entry
        k += 1
    if svc is None:
        ctx.state.v6_skipped += 1
    sched = w[k]
    k += 1
    if svc:
        svc.scheduler = sched
    while k < w.n and not w.at_bol(k):  # flags: persistent N, mask M, pe NAME, ops, (sh-port,...)
        if w[k] == "persistent" and svc:
            svc.persistent = num(w[k + 1])  # ClientIP session affinity
        if w[k] in ("persistent", "mask", "pe"):
            k += 2
        elif w[k] in ("ops", "synproxy") or (w[k].startswith("(") and w[k].endswith(")")):
            k += 1
        else:
            break
    if svc:
        ctx.state.add_ipvs(svc)
    return read_ipvs_dests(w, k, ctx, svc)


def read_ipvs_dests(w: Words, k: int, ctx: ImportCtx, svc: IpvsService | None) -> int:
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


def parse_ipvsadm_save(w: Words, i: int, ctx: ImportCtx) -> int:
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
    svc = ctx.state.ipvs.get((proto, *key))
    if svc is None:
        svc = IpvsService(proto=proto, address=key[0], port=key[1], fwmark=key[2])
        ctx.state.add_ipvs(svc)
    if w[i] == "-A":
        svc.scheduler = opts.get("-s", opts.get("--scheduler", svc.scheduler))
        timeout = opts.get("-p", opts.get("--persistent"))
        if timeout is not None:
            svc.persistent = num(timeout)
    else:
        real = addr_port(opts.get("-r", opts.get("--real-server", "")))
        if real:
            weight = num(opts.get("-w", opts.get("--weight", "1")))
            svc.dests.append(IpvsDest(address=real[0], port=real[1], forward=fwd,
                                      weight=weight if weight is not None else 1))
    return k
