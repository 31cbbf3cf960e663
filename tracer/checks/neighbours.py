"""Layer 2: neighbour (ARP) entries, bridge and VXLAN forwarding databases, duplicate addresses."""

from __future__ import annotations

import ipaddress

from .causes import Cause
from ..model.reasons import Reason
from ..model.ipvs import SHARED_VIP_DEVICES
from ..model.topology import BAD_NEIGH_STATES
from .base import ERROR, WARNING, Context, Finding, bridge_of, for_host, from_hop, has, ip_cmd, not_checked, ns_cmd, \
    subnet_of, vxlan_of


def detached_pod_veth(ctx: Context, host_names: set[str]):
    """A pod's host-side veth outside the bridge, on one of `host_names`: bridge_port explains it."""
    for name in host_names:
        host = ctx.topo.hosts.get(name)
        if host is None or host.kind != "node" or bridge_of(host) is None:
            continue
        for link in host.links:
            peer = ctx.topo.peer_host_of(host, link)
            if link.kind == "veth" and peer is not None and peer.kind == "pod" and link.master is None:
                return host, link
    return None


def segment_hosts(hop) -> set[str]:
    return {m.split("/")[0] for m in hop.payload.segment or []} | {hop.host}


def arp(ctx: Context) -> list[Finding]:
    out = []
    for _, hop in ctx.hops(Reason.NEIGH_WRONG_MAC):
        host = ctx.host(hop.host)
        ip, dev, want = hop.payload.ip, hop.device, hop.payload.expected
        nud = " nud permanent" if hop.payload.permanent else ""
        out.append(from_hop(hop, Cause.ARP, hop.evidence[0].object if hop.evidence else f"{ip} dev {dev}",
                            hop.detail, ip_cmd(host, f"neigh replace {ip} lladdr {want} dev {dev}{nud}"),
                            severity=ERROR if hop.payload.permanent else WARNING))
    for _, hop in ctx.hops(Reason.NEIGH_UNRESOLVED):
        host = ctx.host(hop.host)
        ip, dev = hop.payload.ip, hop.device
        if not has(host, "neigh"):
            out.append(not_checked(ctx, host, Cause.ARP, "neigh", f"its neighbour entry for {ip} on {dev}"))
            continue
        if detached_pod_veth(ctx, segment_hosts(hop)) or _down_on_segment(ctx, hop):
            continue  # bridge_port / link_down name the cause
        owners = ctx.topo.owners.get(ip, [])
        if hop.payload.solicit is False:
            obj = hop.evidence[0].object if hop.evidence else f"{ip} dev {dev}"
            fix = (ns_cmd(host, f"sysctl -w net.ipv4.neigh.{dev}.mcast_solicit=3 net.ipv4.neigh.{dev}.ucast_solicit=3")
                   + " && " + ip_cmd(host, f"neigh del {ip} dev {dev}"))
        elif hop.payload.vxlan:
            want = hop.payload.expected
            fix = ip_cmd(host, f"neigh replace {ip} lladdr {want} dev {dev} nud permanent") if want else \
                "restart flanneld on this node so it re-installs its neighbours"
            obj = f"{ip} dev {dev} lladdr {want or '<VtepMAC>'} PERMANENT"
        elif not owners:
            obj, fix = f"{ip} dev {dev}", f"{ip} belongs to no interface in the snapshot: is the pod gone? " \
                                          "Check the endpoint or route that sends traffic to it"
        else:
            obj = f"{ip} dev {dev} {'/'.join(hop.payload.state or ['INCOMPLETE'])}"
            fix = ip_cmd(host, f"neigh del {ip} dev {dev}") + f"  # then check why {owners[0].host} does not answer ARP"
        out.append(from_hop(hop, Cause.ARP, obj, hop.detail, fix))
    for _, hop in ctx.hops(Reason.NEIGH_STALE_FAILURE):
        host = ctx.host(hop.host)
        out.append(from_hop(hop, Cause.ARP, hop.evidence[0].object if hop.evidence else hop.payload.ip, hop.detail,
                            ip_cmd(host, f"neigh del {hop.payload.ip} dev {hop.device}"), severity=WARNING))
    for _, hop in ctx.hops(Reason.MAC_MISMATCH):
        host = ctx.host(hop.host)
        out.append(from_hop(hop, Cause.ARP, f"{hop.payload.mac} (frame) vs {hop.payload.dev_mac} ({hop.device})",
                            hop.detail, "fix the sender's neighbour entry for this hop's address: "
                            f"it must hold {hop.payload.dev_mac}"))
    out += _node_wide_neighbours(ctx)
    return out


def _mac_on_down_link(ctx: Context, mac: str | None) -> bool:
    """The MAC belongs to an interface that is down (the bridge aged its entry out, then floods)."""
    return bool(mac) and any(l.mac == mac and not (l.up and l.carrier) for h in ctx.bundle.hosts for l in h.links)


def _down_on_segment(ctx: Context, hop) -> bool:
    for member in hop.payload.segment or []:
        host, _, name = member.partition("/")
        link = ctx.topo.hosts[host].link(name)
        if link is not None and not link.up:
            return True
    return False


def _node_wide_neighbours(ctx: Context) -> list[Finding]:
    out = []
    vtep_entries: dict[str, dict[str, list]] = {}  # VTEP IP → MAC → [(host, neigh)] across hosts
    for host in ctx.bundle.hosts:
        by_ip: dict[str, set[str]] = {}
        vxlan_devs = {l.name for l in host.links if l.kind == "vxlan"} | \
            {n.ifname for n in host.neigh if n.ifname.startswith("flannel.")}  # a paste may hold no `ip a`
        for n in host.neigh:
            if n.ifname in vxlan_devs and n.lladdr and not set(n.state) & BAD_NEIGH_STATES:
                vtep_entries.setdefault(n.dst, {}).setdefault(n.lladdr, []).append((host, n))
            elif n.lladdr and not set(n.state) & BAD_NEIGH_STATES:
                by_ip.setdefault(n.dst, set()).add(n.lladdr)
            if set(n.state) & BAD_NEIGH_STATES and not _multicast(n.dst):
                owners = ctx.topo.owners.get(n.dst, [])
                out.append(for_host(ctx, host, Cause.ARP, n.text(),
                                    f"neighbour {n.dst} on {n.ifname} is {'/'.join(n.state)}: "
                                    + ("nothing answered ARP for it" if not owners else
                                       f"{owners[0].host} holds it but did not answer"),
                                    ip_cmd(host, f"neigh del {n.dst} dev {n.ifname}"), severity=WARNING,
                                    device=n.ifname, evidence=[("neigh", n.text())]))
        for ip, macs in by_ip.items():
            if len(macs) > 1:
                out.append(for_host(ctx, host, Cause.IP_CONFLICT, f"{ip} at {', '.join(sorted(macs))}",
                                    f"{ip} is known at {len(macs)} MACs ({', '.join(sorted(macs))}) in {host.name}'s "
                                    "neighbour table: two machines answer for one IP", "find the two owners "
                                    f"(`arping -D {ip}`) and give one of them another address", severity=ERROR))
        vx = vxlan_of(host)
        if vx is None:
            continue
        vteps = {l.mac for h in ctx.bundle.hosts for l in h.links if l.kind == "vxlan" and h is not host}
        for n in host.neigh:
            if n.ifname == vx.name and n.lladdr and vteps and n.lladdr not in vteps:
                out.append(for_host(ctx, host, Cause.ARP, n.text(),
                                    f"{vx.name} neighbour {n.dst} → {n.lladdr}, a MAC no node's VTEP has",
                                    ip_cmd(host, f"neigh replace {n.dst} lladdr <VtepMAC of the node owning {n.dst}> "
                                                 f"dev {vx.name} nud permanent"), device=vx.name,
                                    evidence=[("neigh", n.text())]))
    out += _stale_vteps(ctx, vtep_entries)
    return out


def _multicast(ip: str) -> bool:
    """224.0.0.0/4 and broadcast: nobody answers ARP for them, so FAILED there is no failure."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    return addr.is_multicast or ip == "255.255.255.255"


def _stale_vteps(ctx: Context, entries: dict[str, dict[str, list]]) -> list[Finding]:
    """One remote VTEP IP at different MACs on different hosts of one paste: not two machines with one
    IP, but a VTEP re-created with a new MAC that some nodes have not learned (flanneld did not resync)."""
    out = []
    vteps = {l.mac for h in ctx.bundle.hosts for l in h.links if l.kind == "vxlan" and l.mac}
    for ip, macs in entries.items():
        if len(macs) < 2:
            continue
        current = [m for m in macs if m in vteps]
        # the MAC a node's VTEP really has is current; without one, the MAC most hosts hold
        keep = current[0] if current else max(macs, key=lambda m: len(macs[m]))
        for mac, holders in macs.items():
            if mac == keep:
                continue
            for host, n in holders:
                out.append(for_host(ctx, host, Cause.ARP, n.text(),
                                    f"stale VTEP: {n.ifname} on {host.name} has {ip} at {mac}, other hosts have it at "
                                    f"{keep}: the remote VTEP was re-created with a new MAC",
                                    ip_cmd(host, f"neigh replace {ip} lladdr {keep} dev {n.ifname} nud permanent")
                                    + "  # or restart flanneld on this node", severity=WARNING, device=n.ifname,
                                    evidence=[("neigh", n.text())]))
    return out


def fdb(ctx: Context) -> list[Finding]:
    out = []
    for _, hop in ctx.hops(Reason.FDB_MISSING, Reason.FDB_MISSING_UNKNOWN):
        host = ctx.host(hop.host)
        if not has(host, "fdb"):
            out.append(not_checked(ctx, host, Cause.FDB, "fdb", f"its FDB entry for {hop.payload.mac}"))
            continue
        mac, dst = hop.payload.mac, hop.payload.expected_dst
        want = f"{mac} dev {hop.device} dst {dst or '<node IP>'} self permanent"
        out.append(from_hop(hop, Cause.FDB, want, hop.detail + (f"; it should send to {hop.payload.vtep} ({dst})"
                                                            if dst else ""),
                            _bridge_cmd(host, f"fdb append {want}")))
    for _, hop in ctx.hops(Reason.FDB_WRONG_DST):
        host = ctx.host(hop.host)
        entry = hop.evidence[0].object if hop.evidence else hop.payload.mac
        want = f"{hop.payload.mac} dev {hop.device} dst {hop.payload.expected_dst} self permanent"
        out.append(from_hop(hop, Cause.FDB, entry, hop.detail,
                            _bridge_cmd(host, f"fdb del {hop.payload.mac} dev {hop.device} dst {hop.payload.dst} self")
                            + " && " + _bridge_cmd(host, f"fdb append {want}")))
    for _, hop in ctx.hops(Reason.BRIDGE_NO_PORT):
        if detached_pod_veth(ctx, {hop.host}) or _mac_on_down_link(ctx, hop.payload.mac):
            continue  # bridge_port / link_down name the cause: the bridge forgot a MAC it cannot reach
        host = ctx.host(hop.host)
        out.append(from_hop(hop, Cause.FDB, f"{hop.payload.mac} master {hop.payload.bridge}", hop.detail,
                            _bridge_cmd(host, "fdb show br " + hop.payload.bridge) + "  # find where the MAC went"))
    out += _node_wide_vxlan_fdb(ctx)
    return out


def _bridge_cmd(host, args: str) -> str:
    return ip_cmd(host, args, tool="bridge")


def _node_wide_vxlan_fdb(ctx: Context) -> list[Finding]:
    """flannel's triple: every permanent VXLAN neighbour needs an FDB entry to that VTEP's node."""
    out = []
    for node in ctx.nodes():
        vx = vxlan_of(node)
        if vx is None:
            continue
        if not has(node, "fdb"):
            if any(n.ifname == vx.name for n in node.neigh):
                out.append(not_checked(ctx, node, Cause.FDB, "fdb", f"has every {vx.name} neighbour its FDB entry?"))
            continue
        out += _two_macs_for_one_vtep(ctx, node, vx.name)
        for n in node.neigh:
            if n.ifname != vx.name or not n.lladdr:
                continue
            vtep = ctx.topo.vtep_for_mac(n.lladdr)
            expected = vtep[1].vxlan.local if vtep and vtep[1].vxlan else None
            entries = [f for f in ctx.topo.fdb_entries(node, vx.name, n.lladdr) if f.dst]
            if not entries and expected:
                want = f"{n.lladdr} dev {vx.name} dst {expected} self permanent"
                out.append(for_host(ctx, node, Cause.FDB, want, f"no FDB entry sends {vtep[0].name}'s VTEP MAC "
                                    f"{n.lladdr} anywhere: pods behind {n.dst} are unreachable",
                                    _bridge_cmd(node, f"fdb append {want}"), device=vx.name))
            elif entries and expected and entries[0].dst != expected:
                want = f"{n.lladdr} dev {vx.name} dst {expected} self permanent"
                out.append(for_host(ctx, node, Cause.FDB, entries[0].text(),
                                    f"FDB sends {n.lladdr} to {entries[0].dst}, but {vtep[0].name} is at {expected}",
                                    _bridge_cmd(node, f"fdb del {n.lladdr} dev {vx.name} dst {entries[0].dst} self")
                                    + " && " + _bridge_cmd(node, f"fdb append {want}"), device=vx.name,
                                    evidence=[("fdb", entries[0].text())]))
    return out


def _two_macs_for_one_vtep(ctx: Context, node, dev: str) -> list[Finding]:
    """Two FDB MACs sending to one remote VTEP: one is the VTEP's old MAC, left behind."""
    out = []
    by_dst: dict[str, list] = {}
    for f in node.fdb:
        if f.ifname == dev and f.dst and f.mac != "00:00:00:00:00:00":
            by_dst.setdefault(f.dst, []).append(f)
    vteps = {l.mac for h in ctx.bundle.hosts for l in h.links if l.kind == "vxlan" and l.mac}
    neighbours = {n.lladdr for n in node.neigh if n.ifname == dev and n.lladdr}
    for dst, entries in by_dst.items():
        if len({f.mac for f in entries}) < 2:
            continue
        # the MAC a node's VTEP really has is current; else the one a neighbour entry uses
        stale = [f for f in entries if f.mac not in vteps] if any(f.mac in vteps for f in entries) else \
            [f for f in entries if f.mac not in neighbours] or entries[1:]
        for f in stale:
            out.append(for_host(ctx, node, Cause.FDB, f.text(),
                                f"{dev} has {len(entries)} MACs for VTEP {dst} ({', '.join(e.mac for e in entries)}): "
                                f"{f.mac} is stale (that node's {dev} was re-created with a new MAC)",
                                _bridge_cmd(node, f"fdb del {f.mac} dev {dev} dst {dst} self"), severity=WARNING,
                                device=dev, evidence=[("fdb", e.text()) for e in entries]))
    return out


def ip_conflict(ctx: Context) -> list[Finding]:
    out = []
    for _, hop in ctx.hops(Reason.NEIGH_CONFLICT, Reason.WRONG_HOST):
        owners = hop.payload.owners or [hop.payload.expected]
        ip = hop.payload.ip or (ctx.flow.dst if ctx.flow else "")
        out.append(from_hop(hop, Cause.IP_CONFLICT, f"{ip} on {', '.join(o for o in owners if o)}", hop.detail,
                            f"give one of {', '.join(o for o in owners if o)} another address (the CNI's IPAM "
                            "must not hand out one IP twice)"))
    seen: dict[str, list[tuple]] = {}
    for host in ctx.bundle.hosts:
        for a in host.addrs:
            if not a.address.startswith("127.") and a.ifname not in SHARED_VIP_DEVICES:
                seen.setdefault(a.address, []).append((host, a.ifname))
    for ip, holders in seen.items():
        if any(h.identified_by == "unknown" for h, _ in holders):
            continue  # a namespace nobody accounts for: cluster.pod_identity names it (inode, pid, veth)
        if len({h.name for h, _ in holders}) > 1:
            names = [f"{h.name}/{i}" for h, i in holders]
            host, ifname = holders[-1]
            out.append(for_host(ctx, host, Cause.IP_CONFLICT, f"{ip} on {', '.join(names)}",
                                f"{ip} is assigned in {len(holders)} namespaces ({', '.join(names)}): ARP answers race",
                                ip_cmd(host, f"addr del {ip}/{_prefix(host, ip)} dev {ifname}") +
                                "  # or re-create the pod so IPAM gives it a free address", device=ifname))
    nets = [(n, subnet_of(n, bridge_of(n).name)) for n in ctx.nodes() if bridge_of(n) and subnet_of(n, bridge_of(n).name)]
    for i, (a, na) in enumerate(nets):
        for b, nb in nets[i + 1:]:
            if na.overlaps(nb):
                out.append(for_host(ctx, b, Cause.IP_CONFLICT, f"{nb} (cni0) overlaps {na} on {a.name}",
                                    f"pod CIDRs of {a.name} ({na}) and {b.name} ({nb}) overlap",
                                    "give each node its own podCIDR (kubectl get nodes -o jsonpath="
                                    "'{.items[*].spec.podCIDR}')"))
    return out


def _prefix(host, ip: str) -> int:
    return next((a.prefixlen for a in host.addrs if a.address == ip), 32)


