"""Build, check and tear down the lab's namespaces: one reconcile that only changes what differs.

What the lab should hold is pure data in desired.py; this module holds the netlink calls that make
the kernel match it. `reconcile(names)` compares every object the lab owns with that and fixes the
difference (missing namespaces, links, addresses, routes, the flannel route/neighbour/FDB triple,
bridge ports, sysctls, iptables rules, servers, resolv.conf files); on a healthy lab it changes
nothing. With dry=True it only reports the differences (`lab status` health). `teardown` removes
all of it. Netlink work goes through pyroute2 (one IPRoute per namespace, opened with flags=0 so a
missing namespace is an error, never silently created); rules through one `iptables-restore
--noflush` per node; sysctls by writing /proc/sys from a thread inside the namespace.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import threading
from typing import Any, Callable

from pyroute2 import IPRoute
from pyroute2 import netns as pnetns
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import LabError
from ..netns import inode
from . import agents, desired, kubeproxy, nsutil, processes
from .desired import (
    Addresses,
    BridgeSpec,
    BuildStep,
    LinkSpec,
    RouteSpec,
    RouteTable,
    VethPair,
    VxlanSpec,
    flannel_fdb,
    flannel_neighs,
    node_dev_sysctls,
)
# faults.py breaks and restores single pieces of the desired state through this module.
from .desired import node_routes
from .topology import NODES, PODS, Names, NodeSpec, PodSpec

IFF_UP = 0x1
NUD_INCOMPLETE, NUD_REACHABLE, NUD_STALE, NUD_DELAY, NUD_PROBE = 0x01, 0x02, 0x04, 0x08, 0x10
NUD_FAILED, NUD_NOARP, NUD_PERMANENT = 0x20, 0x40, 0x80
NTF_SELF = 0x02
RTPROT_KERNEL, RTPROT_BOOT = 2, 3
RTNH_F_ONLINK = 0x4
BRPORT_HAIRPIN = "IFLA_BRPORT_MODE"


# ---------------------------------------------------------------- the reconcile context


class BuildCtx:
    """One reconcile or fault operation: IPRoute sockets per namespace, and the change log."""

    def __init__(self, names: Names, dry: bool = False):
        self.names = names
        self.dry = dry
        self.changes: list[str] = []
        self._ipr: dict[str, IPRoute] = {}
        self._behind: list[tuple[threading.Thread, list[BaseException]]] = []

    def ns(self, short: str) -> str:
        return self.names.netns(short)

    def ipr(self, short: str) -> IPRoute:
        ns = self.ns(short)
        if ns not in self._ipr:
            try:
                self._ipr[ns] = IPRoute(netns=ns, flags=0)
            except FileNotFoundError:
                raise LabError(f"namespace {ns} does not exist; run `podpath lab up --name {self.names.lab}`") from None
        return self._ipr[ns]

    def do(self, msg: str, fn: Callable[..., Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        self.changes.append(msg)
        if not self.dry and fn is not None:
            return fn(*args, **kwargs)
        return None

    def behind(self, name: str, fn: Callable[[], Any]) -> None:
        """Run fn in a thread (a process start whose Python start-up overlaps the rest of the build);
        `join_behind` waits for it and raises what it raised."""
        errors: list[BaseException] = []

        def run() -> None:
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - re-raised by join_behind()
                errors.append(e)
        t = threading.Thread(target=run, name=name, daemon=True)
        t.start()
        self._behind.append((t, errors))

    def join_behind(self) -> None:
        pending, self._behind = self._behind, []
        for t, _ in pending:
            t.join()
        for _, errors in pending:
            if errors:
                raise errors[0]

    def close(self) -> None:
        for ipr in self._ipr.values():
            try:
                ipr.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._ipr.clear()

    def __enter__(self) -> "BuildCtx":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- netlink accessors


def kind(link: Any) -> str | None:
    return link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")


def get_link(ipr: IPRoute, name: str) -> Any | None:
    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError:
        return None


def link_index(ctx: BuildCtx, short: str, name: str) -> int:
    link = get_link(ctx.ipr(short), name)
    if link is None:
        raise LabError(f"{name} is missing in {ctx.ns(short)}; run `podpath lab up --name {ctx.names.lab}`")
    return link["index"]


def addrs_of(ipr: IPRoute, index: int) -> list[str]:
    return [f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(family=socket.AF_INET, index=index)]


def routes_of(ipr: IPRoute) -> list[dict[str, Any]]:
    """Main-table IPv4 routes as plain dicts (dst, type, gateway, oif, onlink, proto, prefsrc, raw)."""
    out = []
    for r in ipr.get_routes(family=socket.AF_INET, table=254):
        if r.get("RTA_TABLE", r["table"]) != 254:
            continue
        out.append({
            "dst": _dst(r), "type": r["type"], "gateway": r.get("RTA_GATEWAY"), "oif": r.get("RTA_OIF"),
            "onlink": bool(r["flags"] & RTNH_F_ONLINK), "proto": r["proto"], "prefsrc": r.get("RTA_PREFSRC"),
            "raw": r,
        })
    return out


def _dst(r: Any) -> str:
    d = r.get("RTA_DST")
    return "default" if d is None and r["dst_len"] == 0 else f"{d}/{r['dst_len']}"


def neighs_of(ipr: IPRoute, index: int) -> list[dict[str, Any]]:
    return [{"dst": n.get("NDA_DST"), "lladdr": n.get("NDA_LLADDR"), "state": n["state"]}
            for n in ipr.get_neighbours(family=socket.AF_INET, ifindex=index)]


def fdb_of(ipr: IPRoute, index: int) -> set[tuple[str, str]]:
    return {(f.get("NDA_LLADDR"), f.get("NDA_DST")) for f in ipr.fdb("dump", ifindex=index)
            if f["ifindex"] == index and f.get("NDA_DST")}


# ---------------------------------------------------------------- primitives (also used by faults)


def set_link(ctx: BuildCtx, short: str, name: str, **attrs: Any) -> None:
    ipr = ctx.ipr(short)
    ctx.do(f"{ctx.ns(short)}: ip link set {name} " + " ".join(f"{k} {v}" for k, v in attrs.items()),
           ipr.link, "set", index=link_index(ctx, short, name), **attrs)


def add_route(ctx: BuildCtx, short: str, spec: RouteSpec, replace: bool = True) -> None:
    ipr = ctx.ipr(short)
    kw: dict[str, Any] = {"dst": "0.0.0.0/0" if spec.dst == "default" else spec.dst,
                          "oif": link_index(ctx, short, spec.dev)}
    if spec.gateway:
        kw["gateway"] = spec.gateway
    if spec.onlink:
        kw["flags"] = RTNH_F_ONLINK
    if spec.kernel:
        kw.update(proto=RTPROT_KERNEL, scope=253, prefsrc=spec.prefsrc)
    else:
        kw.update(proto=RTPROT_BOOT)
    ctx.do(f"{ctx.ns(short)}: ip route {'replace' if replace else 'add'} {spec.text()}",
           ipr.route, "replace" if replace else "add", **kw)


def del_route(ctx: BuildCtx, short: str, spec: RouteSpec) -> None:
    ipr = ctx.ipr(short)
    kw: dict[str, Any] = {"dst": "0.0.0.0/0" if spec.dst == "default" else spec.dst,
                          "oif": link_index(ctx, short, spec.dev)}
    if spec.gateway:
        kw["gateway"] = spec.gateway
    if spec.kernel:
        kw.update(proto=RTPROT_KERNEL, scope=253)
    ctx.do(f"{ctx.ns(short)}: ip route del {spec.text()}", ipr.route, "del", **kw)


def set_neigh(ctx: BuildCtx, short: str, dev: str, dst: str, lladdr: str, state: int = NUD_PERMANENT) -> None:
    ipr = ctx.ipr(short)
    names = {NUD_PERMANENT: "permanent", NUD_REACHABLE: "reachable", NUD_STALE: "stale"}
    ctx.do(f"{ctx.ns(short)}: ip neigh replace {dst} lladdr {lladdr} dev {dev} nud {names.get(state, state)}",
           ipr.neigh, "replace", dst=dst, lladdr=lladdr, ifindex=link_index(ctx, short, dev), state=state)


def del_neigh(ctx: BuildCtx, short: str, dev: str, dst: str) -> None:
    ipr = ctx.ipr(short)

    def _del() -> None:
        try:
            ipr.neigh("del", dst=dst, ifindex=link_index(ctx, short, dev))
        except NetlinkError as e:
            if e.code != 2:  # ENOENT: already gone
                raise
    ctx.do(f"{ctx.ns(short)}: ip neigh del {dst} dev {dev}", _del)


def add_fdb(ctx: BuildCtx, short: str, dev: str, mac: str, dst: str) -> None:
    ipr = ctx.ipr(short)
    ctx.do(f"{ctx.ns(short)}: bridge fdb append {mac} dev {dev} dst {dst} self permanent",
           ipr.fdb, "append", ifindex=link_index(ctx, short, dev), lladdr=mac, dst=dst)


def del_fdb(ctx: BuildCtx, short: str, dev: str, mac: str, dst: str) -> None:
    ipr = ctx.ipr(short)
    ctx.do(f"{ctx.ns(short)}: bridge fdb del {mac} dev {dev} dst {dst} self",
           ipr.fdb, "del", ifindex=link_index(ctx, short, dev), lladdr=mac, dst=dst)


def add_addr(ctx: BuildCtx, short: str, dev: str, cidr: str) -> None:
    ip, plen = cidr.split("/")
    ipr = ctx.ipr(short)
    ctx.do(f"{ctx.ns(short)}: ip addr add {cidr} dev {dev}",
           ipr.addr, "add", index=link_index(ctx, short, dev), address=ip, prefixlen=int(plen))


def del_addr(ctx: BuildCtx, short: str, dev: str, cidr: str) -> None:
    ip, plen = cidr.split("/")
    ipr = ctx.ipr(short)
    ctx.do(f"{ctx.ns(short)}: ip addr del {cidr} dev {dev}",
           ipr.addr, "del", index=link_index(ctx, short, dev), address=ip, prefixlen=int(plen))


def sysctl(ctx: BuildCtx, short: str, values: dict[str, str]) -> dict[str, str | None]:
    """Set sysctls in a namespace; returns the previous values of those that changed."""
    ns = ctx.ns(short)
    cur = nsutil.sysctl_get(ns, list(values))
    diff = {k: v for k, v in values.items() if cur.get(k) != str(v)}
    for k, v in diff.items():
        ctx.changes.append(f"{ns}: sysctl {k.replace('/', '.')}={v} (was {cur.get(k)})")
    if diff and not ctx.dry:
        nsutil.sysctl_set(ns, diff)
    return {k: cur.get(k) for k in diff}


def iptables(ctx: BuildCtx, short: str, table: str, lines: list[str], what: str) -> None:
    """Apply rule commands (-I/-D/-A lines) to one table with a single iptables-restore --noflush."""
    text = f"*{table}\n" + "\n".join(lines) + "\nCOMMIT\n"
    ctx.do(f"{ctx.ns(short)}: {what}", nsutil.run, ctx.ns(short), ["iptables-restore", "--noflush", "-w"],
           input=text)


# ---------------------------------------------------------------- ensure (reconcile) steps


def ensure_namespace(ctx: BuildCtx, short: str) -> bool:
    ns = ctx.ns(short)
    if nsutil.exists(ns):
        return True
    if ctx.dry:
        ctx.changes.append(f"namespace {ns} is missing")
        return False

    def _create() -> None:
        stale = nsutil.ns_path(ns)
        if stale.exists():  # an unmounted leftover file would make create fail
            stale.unlink()
        pnetns.create(ns)
    ctx.do(f"ip netns add {ns}", _create)
    return True


def ensure_link(ctx: BuildCtx, short: str, name: str, *, mtu: int | None = None, mac: str | None = None,
                master: str | None = None, up: bool = True, hairpin: bool | None = None) -> None:
    """Set whatever of mtu/mac/master/up differs, in one `ip link set`; hairpin via brport."""
    ipr = ctx.ipr(short)
    link = get_link(ipr, name)
    if link is None:
        ctx.changes.append(f"{ctx.ns(short)}: {name} is missing")
        return
    attrs: dict[str, Any] = {}
    if mtu is not None and link.get("IFLA_MTU") != mtu:
        attrs["mtu"] = mtu
    if mac is not None and link.get("IFLA_ADDRESS") != mac:
        attrs["address"] = mac
    if master is not None:
        want = link_index(ctx, short, master) if master else 0
        if (link.get("IFLA_MASTER") or 0) != want:
            attrs["master"] = want
    if up and not link["flags"] & IFF_UP:
        attrs["state"] = "up"
    if attrs:
        shown = {k: (master if k == "master" else v) for k, v in attrs.items()}
        ctx.do(f"{ctx.ns(short)}: ip link set {name} " + " ".join(f"{k} {v}" for k, v in shown.items()),
               ipr.link, "set", index=link["index"], **attrs)
    if hairpin is not None:
        mode = None
        if link.get("IFLA_MASTER"):
            info = ipr.brport("show", index=link["index"])
            mode = info[0].get_nested("IFLA_PROTINFO", BRPORT_HAIRPIN) if info else None
        if bool(mode) != hairpin or "master" in attrs:
            ctx.do(f"{ctx.ns(short)}: bridge link set dev {name} hairpin {'on' if hairpin else 'off'}",
                   ipr.brport, "set", index=link["index"], mode=1 if hairpin else 0)


def ensure_addrs(ctx: BuildCtx, short: str, dev: str, want: list[str]) -> None:
    ipr = ctx.ipr(short)
    link = get_link(ipr, dev)
    if link is None:
        return
    have = addrs_of(ipr, link["index"])
    for cidr in have:
        if cidr not in want:
            del_addr(ctx, short, dev, cidr)
    for cidr in want:
        if cidr not in have:
            add_addr(ctx, short, dev, cidr)


def ensure_routes(ctx: BuildCtx, short: str, want: list[RouteSpec]) -> None:
    """Make the main table hold exactly `want` (IPv4)."""
    ipr = ctx.ipr(short)
    index_of = {link.get("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}
    by_dst = {spec.dst: spec for spec in want}
    have = routes_of(ipr)
    seen = set()
    for r in have:
        spec = by_dst.get(r["dst"])
        ok = (spec is not None and r["type"] == 1 and r["oif"] == index_of.get(spec.dev)
              and r["gateway"] == spec.gateway and r["onlink"] == spec.onlink
              and (not spec.kernel or r["prefsrc"] == spec.prefsrc) and r["dst"] not in seen)
        if ok:
            seen.add(r["dst"])
            continue
        raw = r["raw"]
        ctx.do(f"{ctx.ns(short)}: ip route del {r['dst']} (not built by the lab, or wrong)",
               _del_raw_route, ipr, raw)
    for spec in want:
        if spec.dst not in seen and spec.dev in index_of:
            add_route(ctx, short, spec)


def _del_raw_route(ipr: IPRoute, raw: Any) -> None:
    kw: dict[str, Any] = {"dst": raw.get("RTA_DST") or "0.0.0.0", "dst_len": raw["dst_len"],
                          "table": 254, "type": raw["type"]}
    if raw.get("RTA_OIF"):
        kw["oif"] = raw.get("RTA_OIF")
    if raw.get("RTA_GATEWAY"):
        kw["gateway"] = raw.get("RTA_GATEWAY")
    try:
        ipr.route("del", **kw)
    except NetlinkError as e:
        if e.code != 3:  # ESRCH: already gone
            raise


def ensure_flannel_triple(ctx: BuildCtx, n: NodeSpec) -> None:
    """Permanent neighbours and FDB entries on flannel.1, exactly flannel's (routes: ensure_routes)."""
    ipr = ctx.ipr(n.name)
    link = get_link(ipr, "flannel.1")
    if link is None:
        return
    want = flannel_neighs(n)
    for e in neighs_of(ipr, link["index"]):
        if e["dst"] in want:
            if e["lladdr"] == want[e["dst"]] and e["state"] & NUD_PERMANENT:
                want.pop(e["dst"])
        elif e["state"] & (NUD_PERMANENT | NUD_NOARP):  # a static entry flannel did not write
            del_neigh(ctx, n.name, "flannel.1", e["dst"])
    for dst, mac in want.items():
        set_neigh(ctx, n.name, "flannel.1", dst, mac)
    fdb_want = flannel_fdb(n)
    have = fdb_of(ipr, link["index"])
    for mac, dst in sorted(have - fdb_want):
        del_fdb(ctx, n.name, "flannel.1", mac, dst)
    for mac, dst in sorted(fdb_want - have):
        add_fdb(ctx, n.name, "flannel.1", mac, dst)


def ensure_cni_neighbours(ctx: BuildCtx, n: NodeSpec) -> None:
    """cni0 neighbours are learned, never configured: drop static, failed and wrong-MAC entries."""
    ipr = ctx.ipr(n.name)
    link = get_link(ipr, "cni0")
    if link is None:
        return
    macs = desired.cni_pod_macs(n)
    subnet = ipaddress.ip_network(n.pod_cidr)
    for e in neighs_of(ipr, link["index"]):
        if not e["dst"] or ipaddress.ip_address(e["dst"]) not in subnet:
            continue  # multicast/broadcast entries the kernel keeps itself
        bad = e["state"] & (NUD_PERMANENT | NUD_NOARP | NUD_FAILED | NUD_INCOMPLETE)
        wrong = e["lladdr"] is not None and e["dst"] in macs and e["lladdr"] != macs[e["dst"]]
        if bad or wrong:
            del_neigh(ctx, n.name, "cni0", e["dst"])


def ensure_veth_pair(ctx: BuildCtx, a_short: str, a_name: str, b_short: str, b_name: str, *,
                     a_mac: str | None, b_mac: str | None, mtu: int) -> None:
    """A veth pair with one end `a_name` in a_short and the other `b_name` in b_short."""
    a, b = ctx.ipr(a_short), ctx.ipr(b_short)
    la, lb = get_link(a, a_name), get_link(b, b_name)
    if la is not None and lb is not None and kind(la) == "veth" and kind(lb) == "veth":
        return
    for ipr, short, link, name in ((a, a_short, la, a_name), (b, b_short, lb, b_name)):
        if link is not None:
            ctx.do(f"{ctx.ns(short)}: ip link del {name} (half a pair, or not a veth)", ipr.link, "del",
                   index=link["index"])
    peer: dict[str, Any] = {"ifname": b_name, "net_ns_fd": ctx.ns(b_short), "mtu": mtu}
    if b_mac:
        peer["address"] = b_mac
    kw: dict[str, Any] = {"ifname": a_name, "kind": "veth", "mtu": mtu, "peer": peer}
    if a_mac:
        kw["address"] = a_mac
    ctx.do(f"{ctx.ns(a_short)}: ip link add {a_name} type veth peer name {b_name} netns {ctx.ns(b_short)}",
           a.link, "add", **kw)


def ensure_bridge(ctx: BuildCtx, short: str, name: str, mtu: int, mac: str | None) -> None:
    ipr = ctx.ipr(short)
    link = get_link(ipr, name)
    if link is not None and kind(link) != "bridge":
        ctx.do(f"{ctx.ns(short)}: ip link del {name} (not a bridge)", ipr.link, "del", index=link["index"])
        link = None
    if link is None:
        kw: dict[str, Any] = {"ifname": name, "kind": "bridge", "mtu": mtu}
        if mac:
            kw["address"] = mac
        ctx.do(f"{ctx.ns(short)}: ip link add {name} type bridge", ipr.link, "add", **kw)


def ensure_vxlan(ctx: BuildCtx, v: VxlanSpec) -> None:
    n = v.node
    ipr = ctx.ipr(n.name)
    eth0 = get_link(ipr, v.dev)
    if eth0 is None:
        return
    link = get_link(ipr, v.name)
    if link is not None:
        data = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        good = (kind(link) == "vxlan" and data is not None
                and data.get("IFLA_VXLAN_ID") == v.vni and data.get("IFLA_VXLAN_PORT") == v.port
                and data.get("IFLA_VXLAN_LOCAL") == n.underlay_ip and data.get("IFLA_VXLAN_LINK") == eth0["index"]
                and not data.get("IFLA_VXLAN_LEARNING"))
        if good:
            return
        ctx.do(f"{ctx.ns(n.name)}: ip link del {v.name} (not flannel's VXLAN device)", ipr.link, "del",
               index=link["index"])
    ctx.do(f"{ctx.ns(n.name)}: ip link add {v.name} type vxlan id {v.vni} local {n.underlay_ip} dev {v.dev} "
           f"dstport {v.port} nolearning",
           ipr.link, "add", ifname=v.name, kind="vxlan", vxlan_id=v.vni, vxlan_port=v.port,
           vxlan_local=n.underlay_ip, vxlan_link=eth0["index"], vxlan_learning=0, mtu=v.mtu,
           address=n.vtep_mac)


def ensure_iptables(ctx: BuildCtx, n: NodeSpec, no_endpoints: frozenset[str] = frozenset()) -> None:
    ns = ctx.ns(n.name)
    expected = desired.node_rules(n, no_endpoints)
    actual = kubeproxy.parse_save(nsutil.run(ns, ["iptables-save"]).stdout)
    problems = kubeproxy.diff(expected, actual)
    if not problems:
        return
    existing = {name: set(t.chains) for name, t in actual.items()}
    text = kubeproxy.restore_text(expected, existing)
    ctx.do(f"{ns}: iptables-restore --noflush (kube-proxy + flannel rules: {problems[0]}"
           f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''})",
           nsutil.run, ns, ["iptables-restore", "--noflush", "-w"], input=text)


def write_service_rules(ctx: BuildCtx, n: NodeSpec, no_endpoints: frozenset[str],
                        stale: dict[str, list[str]] | None = None) -> None:
    """One kube-proxy sync: rewrite only kube-proxy's chains for these endpoints (stale chains -X)."""
    ns = ctx.ns(n.name)
    expected = desired.node_rules(n, no_endpoints, stale)
    actual = kubeproxy.parse_save(nsutil.run(ns, ["iptables-save"]).stdout)
    existing = {name: set(t.chains) for name, t in actual.items()}
    text = kubeproxy.restore_text(expected, existing, services_only=True)
    gone = sorted(no_endpoints)
    what = ('no endpoints for ' + ', '.join(gone) if gone else
            'stale endpoints ' + ', '.join(f"{k} -> {' '.join(v)}" for k, v in stale.items()) if stale else
            'all endpoints ready')
    ctx.do(f"{ns}: iptables-restore --noflush (kube-proxy sync: {what})",
           nsutil.run, ns, ["iptables-restore", "--noflush", "-w"], input=text)


def ensure_pod_etc(ctx: BuildCtx, p: PodSpec) -> None:
    """/etc/netns/<pod netns>/{resolv.conf,hostname}: what kubelet gives a pod, bind-mounted over
    /etc by `ip netns exec` for every process started there (the holder, the servers)."""
    d = ctx.names.etc_dir(p.name)
    for fname, want in desired.pod_files(p).items():
        f = d / fname
        try:
            if f.read_text() == want:
                continue
        except OSError:
            pass

        def _write(f=f, want=want) -> None:
            d.mkdir(parents=True, exist_ok=True)
            f.write_text(want)
        ctx.do(f"wrote {f}", _write)


def ensure_holder(ctx: BuildCtx, p: PodSpec) -> None:
    if processes.holder_pid(ctx.names, p):
        return
    ctx.do(f"{ctx.ns(p.name)}: started the holder of {p.name}", processes.start_holder, ctx.names, p)


def apply(ctx: BuildCtx, steps: list[BuildStep]) -> None:
    """Make the kernel hold each step of the desired state, in order."""
    for st in steps:
        if isinstance(st, LinkSpec):
            ensure_link(ctx, st.ns, st.name, mtu=st.mtu, mac=st.mac, master=st.master, up=st.up, hairpin=st.hairpin)
        elif isinstance(st, VethPair):
            ensure_veth_pair(ctx, st.a_ns, st.a_name, st.b_ns, st.b_name, a_mac=st.a_mac, b_mac=st.b_mac, mtu=st.mtu)
        elif isinstance(st, BridgeSpec):
            ensure_bridge(ctx, st.ns, st.name, st.mtu, st.mac)
        elif isinstance(st, VxlanSpec):
            ensure_vxlan(ctx, st)
        elif isinstance(st, Addresses):
            ensure_addrs(ctx, st.ns, st.dev, list(st.cidrs))
        elif isinstance(st, RouteTable):
            ensure_routes(ctx, st.ns, list(st.routes))
        else:  # pragma: no cover - a new kind of step without its netlink call
            raise TypeError(f"no reconcile step for {st!r}")


def ensure_server(ctx: BuildCtx, p: PodSpec) -> None:
    if processes.server_pid(ctx.names, p):
        return
    ctx.do(f"{ctx.ns(p.name)}: started the {p.server} server", processes.start, ctx.names, p)


def reconcile(names: Names, dry: bool = False, servers: bool = True) -> list[str]:
    """Make the lab exactly what `up` builds; return what was (dry: what would be) changed."""
    with BuildCtx(names, dry=dry) as ctx:
        try:
            _reconcile(ctx, servers)
        except LabError as e:
            if not dry:
                raise
            ctx.changes.append(str(e))  # a dry run stops at the first object it cannot look at
        return ctx.changes


def _reconcile(ctx: BuildCtx, servers: bool) -> None:
    names, dry = ctx.names, ctx.dry
    # Namespaces first, then sysctls (IPv6 off before any link exists), the switch, nodes and pods,
    # then what needs the devices: routes, the flannel triple, per-device sysctls, iptables, servers.
    shorts = names.all_short
    for ns in legacy_pod_netns(names):  # a lab built before pods had CNI names: its pods move
        ctx.do(f"ip netns del {ns} (pod namespace named before CNI names)", pnetns.remove, ns)
    present = {s: ensure_namespace(ctx, s) for s in shorts}
    if dry and not all(present.values()):
        return
    for s in shorts:
        sysctl(ctx, s, desired.namespace_sysctls(s))
    apply(ctx, desired.switch())
    apply(ctx, desired.control_plane())
    if servers:  # early: the API server starts while the nodes are built
        from .apiserver import control

        control.ensure(ctx)
    for n in NODES:
        apply(ctx, desired.node_devices(n))
    if servers:  # once the nodes' loopbacks are up: they bind 127.0.0.1 there while the rest is built
        agents.ensure(ctx)
    for n in NODES:
        ensure_routes(ctx, n.name, node_routes(n))
        ensure_flannel_triple(ctx, n)
        ensure_cni_neighbours(ctx, n)
        sysctl(ctx, n.name, node_dev_sysctls(n))
        ensure_iptables(ctx, n)
        ensure_no_stale_conntrack(ctx, n)
    for p in PODS:
        ensure_pod_etc(ctx, p)
    if servers:
        for p in PODS:
            ensure_holder(ctx, p)
            if p.server:
                ensure_server(ctx, p)
        ctx.join_behind()  # the API server and the agents started meanwhile


def ensure_no_stale_conntrack(ctx: BuildCtx, n: NodeSpec) -> None:
    """What kube-proxy does when an endpoint goes: no UDP conntrack entry may still DNAT a Service's
    ClusterIP to an address that is not one of its endpoints (dns-stale-conntrack leaves one)."""
    from pyroute2 import Conntrack
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    from ..netns import run_in

    endpoints = desired.service_endpoints()

    def stale():
        with Conntrack() as ct:
            return [(e.tuple_orig.saddr, e.tuple_orig.daddr, e.tuple_orig.sport, e.tuple_orig.dport,
                     e.tuple_reply.saddr) for e in ct.dump_entries(tuple_orig=NFCTAttrTuple(proto=17))
                    if e.tuple_orig.daddr in endpoints and e.tuple_reply.saddr not in endpoints[e.tuple_orig.daddr]]

    ns = ctx.ns(n.name)
    for src, dst, sport, dport, to in run_in(ns, stale):
        argv = ["conntrack", "-D", "-p", "udp", "-s", src, "-d", dst, "--sport", str(sport), "--dport", str(dport)]
        ctx.do(f"{ns}: {' '.join(argv)}  # still DNATs {dst} to {to}, no endpoint", nsutil.run, ns, argv)


def teardown(names: Names) -> list[str]:
    """Stop the servers, delete every namespace and /etc/netns dir of the lab; fine if already gone."""
    from .apiserver import control

    done = agents.stop(names)
    for p in PODS:
        if p.server and processes.stop(names, p):
            done.append(f"stopped the {p.server} server of {p.name}")
        if processes.stop_holder(names, p):
            done.append(f"stopped the holder of {p.name}")
    if control.stop(names):
        done.append("stopped the API server")
    for ns, pids in sorted(holders(names).items()):  # not ours: warn, never kill
        done.append(f"warning: pids {' '.join(map(str, pids))} still run in {ns}; the namespace lives on "
                    "(invisible to `ip netns`) until they exit")
    for ns in names.all_netns + legacy_pod_netns(names):
        path = nsutil.ns_path(ns)
        if path.exists() or nsutil.exists(ns):
            try:
                pnetns.remove(ns)
            except OSError as e:
                raise LabError(f"cannot delete namespace {ns}: {e.strerror}") from None
            done.append(f"ip netns del {ns}")
    for short in names.all_short:
        d = names.etc_dir(short)
        if d.exists():
            shutil.rmtree(d, ignore_errors=True)
            done.append(f"removed {d}")
    if names.run_dir.exists():
        shutil.rmtree(names.run_dir, ignore_errors=True)
    return done


def legacy_pod_netns(names: Names) -> list[str]:
    """`<lab>-pod-a` namespaces left by a lab built before pod namespaces had CNI names."""
    return [f"{names.lab}-{p.name}" for p in PODS if nsutil.exists(f"{names.lab}-{p.name}")]


def holders(names: Names) -> dict[str, list[int]]:
    """Processes still inside the lab's namespaces (they keep a namespace alive after its unmount)."""
    from ..sources.discovery import holders_by_inode

    inodes = {inode(ns): ns for ns in names.all_netns}
    inodes.pop(None, None)
    out: dict[str, list[int]] = {}
    for ino, pids in holders_by_inode().items():
        if ino in inodes:
            alive = [pid for pid in pids if processes.alive_in(pid, inodes[ino])]
            if alive:
                out[inodes[ino]] = alive
    return out
