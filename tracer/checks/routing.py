"""Route decisions: pod routes, node routes, forwarding and the reverse-path filter."""

from __future__ import annotations

import ipaddress

from .causes import Cause
from ..model.reasons import Reason
from ..bundle import Host, Route
from ..model.routing import lookup
from .base import ERROR, WARNING, Context, Finding, addr_on, bridge_of, for_host, from_hop, has, ip_cmd, \
    not_checked, ns_cmd, pod_gateway, subnet_of, vxlan_of

ROUTE_FAILS = (Reason.NO_ROUTE, Reason.ROUTE_BLACKHOLE, Reason.ROUTE_UNREACHABLE, Reason.ROUTE_PROHIBIT)


def down_link_with_address(host: Host):
    """A configured interface that is down: its routes vanished with it, so it is the cause."""
    for link in host.links:
        if link.kind != "loopback" and not link.up and any(a.ifname == link.name for a in host.addrs):
            return link
    return None


def expected_pod_routes(ctx: Context, host: Host) -> list[Route]:
    """flannel's CNI gives a pod `default via <gw>` and a route for the cluster CIDR via <gw>; the
    CIDR is the cluster's (the API's flannel ConfigMap, the lab's inventory), else flannel's default."""
    gw = pod_gateway(host)
    inv = ctx.bundle.inventory
    cidr = (inv.cluster_cidr if inv and inv.cluster_cidr else None) or DEFAULT_CLUSTER_CIDR
    return [Route(dst="default", gateway=gw, dev="eth0"), Route(dst=cidr, gateway=gw, dev="eth0")] if gw else []


DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"  # flannel's own default Network, when nothing says otherwise


def pod_route(ctx: Context) -> list[Finding]:
    out = []
    for _, hop in ctx.hops(*ROUTE_FAILS):
        host = ctx.host(hop.host)
        if host.kind != "pod" or down_link_with_address(host):
            continue
        if not has(host, "routes"):
            out.append(not_checked(ctx, host, Cause.POD_ROUTE, "routes", f"its route to {hop.payload.dst}"))
            continue
        want = expected_pod_routes(ctx, host)
        obj = want[0].text() if want else f"route to {hop.payload.dst}"
        fix = " && ".join(ip_cmd(host, f"route replace {r.text()}") for r in want) or \
            f"add a route to {hop.payload.dst} in {host.name}"
        out.append(from_hop(hop, Cause.POD_ROUTE, obj, f"{host.name} has no usable route to {hop.payload.dst} "
                            f"({hop.detail}); flannel's CNI gives every pod `{obj}`", fix))
    for host in (h for h in ctx.bundle.hosts if h.kind == "pod"):
        gw = pod_gateway(host)
        if gw is None or down_link_with_address(host):
            continue
        for other in ctx.bundle.hosts:
            if other.kind != "pod" or other is host:
                continue
            ip = addr_on(other, "eth0")
            if ip is None or subnet_of(host, "eth0") and ipaddress.IPv4Address(ip) in subnet_of(host, "eth0"):
                continue
            dec = lookup(host, ip)
            if dec.route is None or dec.drops or dec.route.dev != "eth0" or dec.route.gateway != gw:
                want = expected_pod_routes(ctx, host)[0]
                got = dec.route.text() if dec.route else "no route"
                out.append(for_host(ctx, host, Cause.POD_ROUTE, want.text(),
                                    f"{host.name} routes {ip} ({other.name}) by `{got}`, not via its gateway {gw}",
                                    ip_cmd(host, f"route replace {want.text()}"), device="eth0",
                                    evidence=[("route", got)]))
                break
    return out


def expected_node_route(ctx: Context, node: Host, dst_ip: str) -> Route | None:
    """What flannel would have installed on `node` for the pod subnet holding `dst_ip`."""
    for other in ctx.nodes():
        br, vx = bridge_of(other), vxlan_of(other)
        net = subnet_of(other, br.name) if br else None
        if net is None or ipaddress.IPv4Address(dst_ip) not in net:
            continue
        if other is node:
            return Route(dst=str(net), dev=br.name, proto="kernel", scope="link", prefsrc=addr_on(node, br.name))
        local_vx = vxlan_of(node)
        gw = addr_on(other, vx.name) if vx else None
        if local_vx and gw:
            return Route(dst=str(net), gateway=gw, dev=local_vx.name, onlink=True)
    return None


def host_route(ctx: Context) -> list[Finding]:
    out = []
    for _, hop in ctx.hops(*ROUTE_FAILS):
        host = ctx.host(hop.host)
        if host.kind == "pod" or down_link_with_address(host):
            continue
        dst = hop.payload.dst
        if not has(host, "routes"):
            out.append(not_checked(ctx, host, Cause.HOST_ROUTE, "routes", f"its route to {dst}"))
            continue
        if host.kind == "network":  # the underlay: a node sent pod traffic out of the cluster network
            out.append(from_hop(hop, Cause.HOST_ROUTE, f"route to {dst}", f"{dst} reached the underlay network "
                                f"({host.name}), which cannot route it: a node sent pod traffic out of the "
                                "cluster network instead of into its VXLAN device",
                                "fix the node's route to the pod CIDR (see the node's host_route finding)",
                                severity=WARNING))
            continue
        want = expected_node_route(ctx, host, dst) if dst else None
        if want and want.dev and host.link(want.dev) and not host.link(want.dev).up:
            continue  # the route went with its device: link_down names that
        obj = want.text() if want else f"route to {dst}"
        fix = ip_cmd(host, f"route replace {want.text()}") if want else f"add a route to {dst} on {host.name}"
        out.append(from_hop(hop, Cause.HOST_ROUTE, obj, f"{host.name} has no usable route to {dst} ({hop.detail})", fix))
    for node in ctx.nodes():
        if not has(node, "routes"):
            continue
        out += own_subnet_routes(ctx, node)
        for other in ctx.nodes():
            br = bridge_of(other)
            net = subnet_of(other, br.name) if br else None
            if net is None:
                continue
            probe = str(net.network_address + 2)
            want = expected_node_route(ctx, node, probe)
            if want is None or (want.dev and node.link(want.dev) and not node.link(want.dev).up):
                continue
            dec = lookup(node, probe)
            r = dec.route
            if r is not None and not dec.drops and r.dev == want.dev and r.gateway == want.gateway:
                continue
            got = r.text() if r else "no route"
            fix = ip_cmd(node, f"route replace {want.text()}")
            if r is not None and r.dst not in ("default", want.dst) and \
                    ipaddress.ip_network(r.dst, strict=False).subnet_of(net):  # a narrower route shadows flannel's
                fix = ip_cmd(node, f"route del {got}") + " && " + fix
            out.append(for_host(ctx, node, Cause.HOST_ROUTE, want.text(),
                                f"{node.name} routes {net} ({other.name}'s pods) by `{got}`; expected `{want.text()}`",
                                fix, device=want.dev, evidence=[("route", got)]))
    return out


def own_pod_subnet(node: Host) -> ipaddress.IPv4Network | None:
    """The node's pod subnet: cni0's address, or FLANNEL_SUBNET from a pasted subnet.env."""
    br = bridge_of(node)
    net = subnet_of(node, br.name) if br else None
    value = node.flannel_env.get("FLANNEL_SUBNET")
    if net is None and value:
        try:
            net = ipaddress.IPv4Network(value, strict=False)
        except ValueError:
            return None
    return net


def own_subnet_routes(ctx: Context, node: Host) -> list[Finding]:
    """Partial data allows these: the node's own pod subnet routed anywhere but its bridge, and two
    routes for one prefix (the kernel uses one; the other is left over)."""
    out = []
    main = [r for r in node.routes if r.table in (254, None) and r.type == "unicast" and r.dst != "default"]
    net = own_pod_subnet(node)
    bridge = (bridge_of(node).name if bridge_of(node) else "cni0")
    if net is not None:
        for r in main:
            if r.dst == str(net) and r.dev != bridge:
                want = Route(dst=str(net), dev=bridge, proto="kernel", scope="link", prefsrc=addr_on(node, bridge))
                out.append(for_host(ctx, node, Cause.HOST_ROUTE, r.text(),
                                    f"{node.name} routes its own pod subnet {net} by `{r.text()}`, not to {bridge}: "
                                    "its pods are unreachable (often flannel's route for another node's old subnet)",
                                    ip_cmd(node, f"route del {r.text()}") + " && " +
                                    ip_cmd(node, f"route replace {want.text()}"), device=r.dev,
                                    evidence=[("route", r.text())]))
    by_dst: dict[tuple, list[Route]] = {}
    for r in main:
        by_dst.setdefault((r.dst, r.table, r.metric), []).append(r)
    for (dst, _, _), routes in by_dst.items():
        if len({(r.dev, r.gateway) for r in routes}) < 2:
            continue
        own = net is not None and dst == str(net)
        texts = [r.text() for r in routes]
        out.append(for_host(ctx, node, Cause.HOST_ROUTE, texts[-1],
                            f"{node.name} has {len(routes)} routes for {dst} ({'; '.join(texts)}): the kernel uses "
                            "the first, the other is left over (a node re-joined with a new subnet, or a hand-made "
                            "route)",
                            ip_cmd(node, f"route del {texts[-1]}") + "  # keep the one to the right device",
                            severity=ERROR if own else WARNING, device=routes[-1].dev,
                            evidence=[("route", t) for t in texts]))
    return out


def ip_forward(ctx: Context) -> list[Finding]:
    out = [from_hop(hop, Cause.IP_FORWARD, hop.evidence[0].object if hop.evidence else hop.payload.key,
                    f"{hop.host} does not forward: {hop.detail}", ns_cmd(ctx.host(hop.host), f"sysctl -w {hop.payload.key}=1"))
           for _, hop in ctx.hops(Reason.FORWARDING_OFF)]
    for node in ctx.nodes():
        if node.sysctl("net.ipv4.ip_forward") == "0":
            out.append(for_host(ctx, node, Cause.IP_FORWARD, "net.ipv4.ip_forward = 0",
                                f"{node.name} has forwarding disabled: no pod traffic can cross it",
                                ns_cmd(node, "sysctl -w net.ipv4.ip_forward=1"),
                                evidence=[("sysctl", "net.ipv4.ip_forward = 0")]))
    return out


def rp_filter(ctx: Context) -> list[Finding]:
    out = []
    for _, hop in ctx.hops(Reason.RP_FILTER):
        host = ctx.host(hop.host)
        key = next((e.object.split(" = ")[0] for e in hop.evidence if e.kind == "sysctl" and e.object.endswith("= 1")),
                   f"net.ipv4.conf.{hop.device}.rp_filter")
        fix = (ns_cmd(host, f"sysctl -w {key}=2") + f"  # loose mode; or make the route back to the source "
               f"leave by {hop.device}")
        out.append(from_hop(hop, Cause.RP_FILTER, f"{key} = 1", hop.detail, fix))
    for node in ctx.nodes():
        vx = vxlan_of(node)
        if vx and node.sysctl(f"net.ipv4.conf.{vx.name}.rp_filter") == "1":
            out.append(for_host(ctx, node, Cause.RP_FILTER, f"net.ipv4.conf.{vx.name}.rp_filter = 1",
                                f"strict reverse-path filtering on {vx.name}: any asymmetric route drops pod traffic",
                                ns_cmd(node, f"sysctl -w net.ipv4.conf.{vx.name}.rp_filter=2"), severity=WARNING,
                                device=vx.name))
    return out
