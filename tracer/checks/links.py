"""Interfaces: down links, MTUs along the path, and pod veths that left their bridge."""

from __future__ import annotations

from .causes import Cause
from ..model.reasons import NeighFacts, Reason
from ..model.walk import VXLAN_OVERHEAD, link_text
from .base import ERROR, WARNING, Context, Finding, bridge_of, for_host, from_hop, has, ip_cmd, not_checked, pasted, \
    vxlan_of
from .routing import ROUTE_FAILS, down_link_with_address


def link_down(ctx: Context) -> list[Finding]:
    out = []
    for _, hop in ctx.hops(Reason.LINK_DOWN):
        host = ctx.host(hop.host)
        link = host.link(hop.payload.link)
        out.append(from_hop(hop, Cause.LINK_DOWN, link_text(link), f"{link.name} in {host.name} is down ({hop.detail})",
                            ip_cmd(host, f"link set {link.name} up")))
    out += vxlan_devices(ctx)
    for _, hop in ctx.hops(*ROUTE_FAILS):  # a down interface takes its routes with it
        host = ctx.host(hop.host)
        link = down_link_with_address(host)
        if link:
            f = from_hop(hop, Cause.LINK_DOWN, link_text(link),
                         f"{link.name} in {host.name} is down, so its routes are gone ({hop.detail})",
                         ip_cmd(host, f"link set {link.name} up"))
            f.device = link.name
            out.append(f)
    on_path = {h.host for p in ctx.paths for h in p.hops} | {h.name for h in (ctx.src_host, ctx.dst_host) if h}
    on_path |= {m.split("/")[0] for p in ctx.paths for h in p.hops if isinstance(h.payload, NeighFacts)
                for m in h.payload.segment or []}
    if ctx.dst_service is not None:  # a Service's endpoints are where its packets go
        eps = set(getattr(ctx.dst_service, "endpoints", []) or [])
        on_path |= {h.name for h in ctx.bundle.hosts if any(a.address in eps for a in h.addrs)}
    for host in ctx.bundle.hosts:
        for link in host.links:
            if link.up or link.kind == "loopback" or not expected_up(host, link):
                continue
            out.append(for_host(ctx, host, Cause.LINK_DOWN, link_text(link), f"{link.name} in {host.name} is down",
                                ip_cmd(host, f"link set {link.name} up"),
                                severity=ERROR if host.name in on_path or not ctx.paths else WARNING,
                                device=link.name, evidence=[("link", link_text(link))]))
    return out


def vxlan_devices(ctx: Context) -> list[Finding]:
    """Every node needs the VXLAN device its peers send to, with the same VNI and UDP port."""
    out = []
    for _, hop in ctx.hops(Reason.NO_VXLAN_RECEIVER):
        host = ctx.host(hop.host)
        vx = vxlan_of(host)
        have = f"{vx.name} has VNI {vx.vxlan.vni}, port {vx.vxlan.port}" if vx else "there is no VXLAN device"
        out.append(from_hop(hop, Cause.LINK_DOWN, link_text(vx) if vx else f"VXLAN VNI {hop.payload.vni}",
                            f"{hop.detail}: {have}; the encapsulated packet is dropped",
                            "re-create it as flannel does (restart flanneld on this node): VNI "
                            f"{hop.payload.vni}, dstport {hop.payload.port}, nolearning"))
    nodes = [(n, vxlan_of(n)) for n in ctx.nodes()]
    with_vx = [(n, vx) for n, vx in nodes if vx]
    if not with_vx:
        return out
    ref_node, ref = with_vx[0]
    for node, vx in nodes:
        if vx is None and not has(node, "links"):
            out.append(not_checked(ctx, node, Cause.LINK_DOWN, "links", f"has it {ref.name}?"))
        elif vx is None:
            out.append(for_host(ctx, node, Cause.LINK_DOWN, f"{ref.name} (missing)",
                                f"{node.name} has no VXLAN device while {ref_node.name} has {ref.name}: "
                                "it cannot reach pods on other nodes", "restart flanneld on this node so it "
                                f"re-creates {ref.name} (VNI {ref.vxlan.vni}, dstport {ref.vxlan.port})",
                                device=ref.name))
        elif (vx.vxlan.vni, vx.vxlan.port) != (ref.vxlan.vni, ref.vxlan.port) and not assumed_vxlan(node, ref_node):
            out.append(for_host(ctx, node, Cause.LINK_DOWN, link_text(vx),
                                f"{vx.name} on {node.name} has VNI {vx.vxlan.vni} port {vx.vxlan.port}, but "
                                f"{ref_node.name} uses VNI {ref.vxlan.vni} port {ref.vxlan.port}: they cannot "
                                "exchange packets", "make every node's flannel backend config agree "
                                "(net-conf.json Backend.VNI / Port) and restart flanneld", device=vx.name))
    return out


def assumed_vxlan(*nodes) -> bool:
    """An import without `ip -d link` assumed flannel's VNI and port: no ground to call them different."""
    return any(pasted(n) and "vxlan" in n.gaps for n in nodes)


def expected_up(host, link) -> bool:
    """Links the pod network needs: pod eth0, bridges, VXLAN, bridge ports, the underlay."""
    if host.kind == "pod":
        return link.name == "eth0"
    return link.kind in ("bridge", "vxlan") or link.master is not None or link.name == "eth0"


def mtu(ctx: Context) -> list[Finding]:
    out = []
    for _, hop in ctx.hops(Reason.MTU_EXCEEDED):
        host = ctx.host(hop.host)
        link = host.link(hop.device)
        out.append(from_hop(hop, Cause.MTU, link_text(link), hop.detail, mtu_fix(ctx, host, link)))
    for node in ctx.nodes():
        vx = vxlan_of(node)
        under = node.link(vx.vxlan.dev) if vx and vx.vxlan and vx.vxlan.dev else None
        if vx and under and vx.mtu and under.mtu and vx.mtu + VXLAN_OVERHEAD > under.mtu:
            out.append(for_host(ctx, node, Cause.MTU, link_text(vx),
                                f"{vx.name} MTU {vx.mtu} + {VXLAN_OVERHEAD} bytes of VXLAN overhead exceeds "
                                f"{under.name} MTU {under.mtu}: full-size pod packets are dropped",
                                ip_cmd(node, f"link set {vx.name} mtu {under.mtu - VXLAN_OVERHEAD}") +
                                f"  # and pods' eth0 to {under.mtu - VXLAN_OVERHEAD}, or raise {under.name} to "
                                f"{vx.mtu + VXLAN_OVERHEAD}", severity=WARNING, device=vx.name,
                                evidence=[("link", link_text(vx)), ("link", link_text(under))]))
    for pod in (h for h in ctx.bundle.hosts if h.kind == "pod"):
        node = ctx.topo.hosts.get(pod.node or "")
        eth0, vx = pod.link("eth0"), vxlan_of(node) if node else None
        if eth0 and vx and eth0.mtu and vx.mtu and eth0.mtu > vx.mtu:
            out.append(for_host(ctx, pod, Cause.MTU, link_text(eth0),
                                f"{pod.name} eth0 MTU {eth0.mtu} exceeds {vx.name} MTU {vx.mtu} on {node.name}",
                                ip_cmd(pod, f"link set eth0 mtu {vx.mtu}"), severity=WARNING, device="eth0",
                                evidence=[("link", link_text(eth0))]))
    return out


def mtu_fix(ctx: Context, host, link) -> str:
    vx = vxlan_of(host)
    if vx and vx.vxlan and vx.vxlan.dev == link.name:
        return (ip_cmd(host, f"link set {vx.name} mtu {link.mtu - VXLAN_OVERHEAD}") +
                f"  # or raise {link.name} MTU to {vx.mtu + VXLAN_OVERHEAD} on every node")
    return ip_cmd(host, f"link set {link.name} mtu <the path MTU>") + "  # every hop of the path must carry the same MTU"


def bridge_port(ctx: Context) -> list[Finding]:
    out = []
    for node in ctx.nodes():
        br = bridge_of(node)
        if br is None:
            continue
        for link in node.links:
            peer = ctx.topo.peer_host_of(node, link)
            if link.kind != "veth" or peer is None or peer.kind != "pod":
                continue
            if link.master != br.name:
                where = f"enslaved to {link.master}" if link.master else "not enslaved to any bridge"
                out.append(for_host(ctx, node, Cause.BRIDGE_PORT, link_text(link),
                                    f"{peer.name}'s host veth {link.name} is {where}, not {br.name}: "
                                    f"{peer.name} is cut off from its gateway and from other pods",
                                    ip_cmd(node, f"link set {link.name} master {br.name}") + " && " +
                                    ip_cmd(node, f"link set dev {link.name} hairpin on", tool="bridge"),
                                    device=link.name, evidence=[("link", link_text(link))]))
            elif link.hairpin is False:
                out.append(for_host(ctx, node, Cause.BRIDGE_PORT, link_text(link),
                                    f"hairpin is off on {link.name}: {peer.name} cannot reach itself through a Service",
                                    ip_cmd(node, f"link set dev {link.name} hairpin on", tool="bridge"),
                                    severity=WARNING, device=link.name))
    return out
