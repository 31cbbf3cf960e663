"""IPVS (kube-proxy in IPVS mode): virtual services and real servers that are wrong, stale or missing.

One function per finding. Each reports what the expected path ran into (the walk's `ipvs_*`
hop reasons) and what it sees on every IPVS node, graded: an error when it breaks the flow being
diagnosed (or when no flow was given), a warning when it only breaks other Services. Objects are
`ipvsadm -Sn` lines or `ip addr` arguments, so they paste into ipvsadm or ip; fixes are commands.

What a Service should look like comes from the inventory (lab status or the Kubernetes API);
pasted bundles have none, so the Service-dependent findings (port mismatch, endpoints) need it.
"""

from __future__ import annotations

from collections import Counter

from .causes import Cause
from ..model.reasons import Reason
from ..bundle import Host, IpvsDest, IpvsService, ServiceInfo, ServicePort
from ..model.ipvs import (KUBE_IPVS_DEVICE, IpvsTable, dest_line, kube_service, live_addresses, picks, runs_ipvs,
                          service_line, service_name, service_option, virtual_ips)
from ..model.path import Evidence, Hop
from ..model.routing import local_addresses
from .base import ERROR, INFO, WARNING, Context, Finding, from_hop, has, ip_cmd, not_checked, ns_cmd, pasted

KUBE_PROXY_RESYNC = "or restart kube-proxy so it re-syncs IPVS with the Service"


# --- helpers ----------------------------------------------------------------------------------


def ipvs_nodes(ctx: Context) -> list[Host]:
    return [h for h in ctx.bundle.hosts if runs_ipvs(h)]


def each_service(ctx: Context):
    for host in ipvs_nodes(ctx):
        for svc in host.ipvs:
            yield host, svc


def known_services(ctx: Context) -> list[ServiceInfo]:
    """Services whose ports and endpoints the cluster vouches for (the inventory)."""
    return ctx.bundle.inventory.services if ctx.bundle.inventory else []


def service_at(ctx: Context, vip: str | None) -> ServiceInfo | None:
    return next((s for s in known_services(ctx) if vip and s.cluster_ip == vip), None)


def usual_scheduler(host: Host) -> str:
    """kube-proxy's --ipvs-scheduler as this node shows it: the one most virtual services use."""
    counts = Counter(s.scheduler for s in host.ipvs)
    return counts.most_common(1)[0][0] if counts else "rr"


def finding(ctx: Context, host: Host, obj: str, message: str, fix: str, severity: str,
            evidence: list[tuple[str, str]] = (), device: str | None = None) -> Finding:
    # A host running IPVS is a node, even one imported from pasted text (kind "unknown").
    node, loc = ctx.topo.node_of(host) or host.name, ctx.topo.location(host)
    return Finding(cause=Cause.IPVS, severity=severity, node=node, location=loc, object=obj, message=message, fix=fix,
                   device=device, evidence=[Evidence(k, node, loc, o) for k, o in evidence])


def hop_finding(hop: Hop, obj: str, message: str, fix: str) -> Finding:
    f = from_hop(hop, Cause.IPVS, obj, message, fix)
    f.node = f.node or hop.host
    for e in f.evidence:
        e.node = e.node or hop.host
    return f


def scheduling_hosts(ctx: Context) -> set[str]:
    """Nodes whose IPVS the diagnosed flow goes through: where it was scheduled, and the client's node."""
    hosts = {h.host for p in ctx.paths for h in p.hops if h.point == "ipvs"}
    if ctx.src_host is not None:
        hosts.add(ctx.src_host.node or ctx.src_host.name)
    return hosts


def grade(ctx: Context, host: Host, vip: str | None, port: int | None = None) -> str:
    """Error when it breaks the diagnosed flow, or when no flow was given; else a warning."""
    if not ctx.paths:
        return ERROR
    hits_flow = ctx.flow is not None and ctx.flow.dst == vip and port in (None, ctx.flow.dport)
    return ERROR if hits_flow and host.name in scheduling_hosts(ctx) else WARNING


def find_service(host: Host, line: str | None) -> IpvsService | None:
    return next((s for s in host.ipvs if service_line(s) == line), None)


def hop_service_dest(host: Host, hop: Hop) -> tuple[IpvsService | None, IpvsDest | None]:
    """The IPVS service and real server a hop's payload names, as the host's snapshot holds them."""
    svc = find_service(host, hop.payload.service)
    dest = next((d for d in (svc.dests if svc else []) if dest_line(svc, d) == hop.payload.dest), None)
    return svc, dest


def in_ns(host: Host, *commands: str) -> str:
    return " && ".join(ns_cmd(host, c) for c in commands)


def vip_object(vip: str) -> str:
    return f"{vip}/32 dev {KUBE_IPVS_DEVICE}"


def wanted_service(proto: str, vip: str, port: int, scheduler: str) -> IpvsService:
    return IpvsService(proto=proto.upper(), address=vip, port=port, scheduler=scheduler)


def real_server_commands(svc: IpvsService, info: ServiceInfo | None, port: ServicePort | None) -> list[str]:
    """`ipvsadm -a` for every endpoint of the Service, at its targetPort."""
    if info is None or not info.endpoints:
        return []
    target = (port.target_port if port and port.target_port else None) or svc.port
    return ["ipvsadm " + dest_line(svc, IpvsDest(address=ep, port=target)) for ep in info.endpoints]


def service_port(info: ServiceInfo | None, proto: str, port: int | None) -> ServicePort | None:
    if info is None:
        return None
    return next((p for p in info.ports if p.protocol.upper() == proto.upper() and p.port == port), None)


def endpoints_fix(info: ServiceInfo | None, vip: str | None) -> str:
    if info is None:
        return (f"kubectl get svc -A -o wide | grep -w {vip}  # then its endpoints: kubectl -n NS get "
                "endpointslices -l kubernetes.io/service-name=NAME")
    return (f"kubectl -n {info.namespace} get endpointslices -l kubernetes.io/service-name={info.name}  "
            "# no ready endpoints: check the Service's selector and the pods' readiness")


def port_mismatch_explains(ctx: Context, host: Host, proto: str, vip: str) -> bool:
    """IPVS serves the Service's address on a port the Service does not have: ipvs_port_mismatch says so."""
    info = service_at(ctx, vip)
    if info is None:
        return False
    ports = {p.port for p in info.ports if p.protocol.upper() == proto.upper()}
    return bool(set(IpvsTable(host).ports_of(proto, vip)) - ports)


# --- findings ---------------------------------------------------------------------------------


def ipvs_vip_missing(ctx: Context) -> list[Finding]:
    """A ClusterIP with a virtual service but not on kube-ipvs0: pods' packets never reach IPVS."""
    out = []
    for _, hop in ctx.hops(Reason.IPVS_VIP_NOT_LOCAL):
        host, vip = ctx.host(hop.host), hop.payload.vip
        out.append(hop_finding(hop, vip_object(vip), hop.detail, bind_fix(host, vip)))
    for host in ipvs_nodes(ctx):
        if not has(host, "links"):
            out.append(not_checked(ctx, host, Cause.IPVS, "links", f"are IPVS's virtual IPs on {KUBE_IPVS_DEVICE}?"))
            continue
        if host.link(KUBE_IPVS_DEVICE) is None:
            out.append(finding(ctx, host, f"{KUBE_IPVS_DEVICE} (missing)",
                               f"{host.name} has IPVS virtual services but no {KUBE_IPVS_DEVICE}: no ClusterIP is "
                               "local, so packets from pods to Services never reach IPVS",
                               "restart kube-proxy: it re-creates the dummy device kube-ipvs0 and binds every "
                               "ClusterIP to it", ERROR if not ctx.paths or host.name in scheduling_hosts(ctx)
                               else WARNING))
            continue
        local = local_addresses(host)
        for vip in dict.fromkeys(s.address for s in host.ipvs if s.address):
            if vip in local:  # on kube-ipvs0, or a node address (NodePort)
                continue
            served = [s for s in host.ipvs if s.address == vip]
            out.append(finding(ctx, host, vip_object(vip),
                               f"IPVS serves {', '.join(service_name(s) for s in served)}, but {vip} is not on "
                               f"{KUBE_IPVS_DEVICE}: packets from pods to it are routed away instead of to IPVS",
                               bind_fix(host, vip), grade(ctx, host, vip), [("ipvs", service_line(s)) for s in served],
                               device=KUBE_IPVS_DEVICE))
    return out


def bind_fix(host: Host, vip: str) -> str:
    return ip_cmd(host, f"addr add {vip}/32 dev {KUBE_IPVS_DEVICE}") + \
        "  # kube-proxy binds every ClusterIP there; if it goes again, read kube-proxy's log"


def ipvs_service_missing(ctx: Context) -> list[Finding]:
    """A Service port (or an address on kube-ipvs0) without its virtual service: connections are refused."""
    out = []
    reported: set[tuple[str, str]] = set()
    for _, hop in ctx.hops(Reason.IPVS_NO_SERVICE):
        host, proto, vip, port = ctx.host(hop.host), hop.payload.proto, hop.payload.vip, hop.payload.port
        reported.add((host.name, vip))
        if port_mismatch_explains(ctx, host, proto, vip):
            continue
        want = wanted_service(proto, vip, port, usual_scheduler(host))
        info = service_at(ctx, vip)
        named = f"Service {info.namespace}/{info.name}: " if info else ""
        out.append(hop_finding(hop, service_line(want), named + hop.detail, create_fix(host, want, info)))
    for host in ipvs_nodes(ctx):
        if not has(host, "ipvs"):
            out.append(not_checked(ctx, host, Cause.IPVS, "ipvs", f"has every address on {KUBE_IPVS_DEVICE} a virtual "
                                   "service?"))
            continue
        table = IpvsTable(host)
        for info in known_services(ctx):
            if not info.cluster_ip or info.cluster_ip == "None":  # headless: kube-proxy programs nothing
                continue
            for sp in info.ports:
                if table.service_for(sp.protocol, info.cluster_ip, sp.port) is not None or \
                        port_mismatch_explains(ctx, host, sp.protocol, info.cluster_ip):
                    continue
                want = wanted_service(sp.protocol, info.cluster_ip, sp.port, usual_scheduler(host))
                out.append(finding(ctx, host, service_line(want),
                                   f"Service {info.namespace}/{info.name} port {sp.port}/{sp.protocol.lower()} has no "
                                   f"IPVS virtual service on {host.name}: connections to {info.cluster_ip}:{sp.port} "
                                   "are refused", create_fix(host, want, info),
                                   grade(ctx, host, info.cluster_ip, sp.port)))
        known = {s.cluster_ip for s in known_services(ctx)}
        for vip in virtual_ips(host):
            if vip in known or (host.name, vip) in reported or any(s.address == vip for s in host.ipvs):
                continue
            out.append(finding(ctx, host, vip_object(vip),
                               f"{vip} is bound to {KUBE_IPVS_DEVICE} but IPVS has no virtual service on it: "
                               "connections to it are refused (its Service's virtual services are gone, or the "
                               "Service is gone and its address was left behind)",
                               ip_cmd(host, f"addr del {vip}/32 dev {KUBE_IPVS_DEVICE}") + "  # if its Service is "
                               "gone; if not, restart kube-proxy so it re-creates the virtual services",
                               grade(ctx, host, vip), device=KUBE_IPVS_DEVICE))
    return out


def create_fix(host: Host, want: IpvsService, info: ServiceInfo | None) -> str:
    cmds = []
    if want.address not in local_addresses(host):
        cmds.append(f"ip addr add {want.address}/32 dev {KUBE_IPVS_DEVICE}")
    cmds.append("ipvsadm " + service_line(want))
    cmds += real_server_commands(want, info, service_port(info, want.proto, want.port))
    return in_ns(host, *cmds) + f"  # {KUBE_PROXY_RESYNC}"


def ipvs_no_real_servers(ctx: Context) -> list[Finding]:
    """A virtual service no new connection can be scheduled on: no real servers, or only weight 0."""
    out = []
    for _, hop in ctx.hops(Reason.IPVS_NO_DEST):
        host = ctx.host(hop.host)
        svc = find_service(host, hop.payload.service)
        if svc is not None:
            obj, message, fix = no_real_servers(ctx, host, svc)
            out.append(hop_finding(hop, obj, message, fix))
    for host, svc in each_service(ctx):
        if not picks(svc):
            obj, message, fix = no_real_servers(ctx, host, svc)
            out.append(finding(ctx, host, obj, message, fix, grade(ctx, host, svc.address, svc.port),
                               [("ipvs", dest_line(svc, d)) for d in svc.dests]))
    return out


def no_real_servers(ctx: Context, host: Host, svc: IpvsService) -> tuple[str, str, str]:
    info = service_at(ctx, svc.address)
    if svc.dests:
        what = (f"only weight-0 real servers ({', '.join(f'{d.address}:{d.port}' for d in svc.dests)}): IPVS "
                "schedules no new connection to them")
    else:
        what = "no real servers"
    message = f"IPVS {service_name(svc)} has {what}, so every new connection is refused (ICMP port unreachable)"
    if info is not None and info.endpoints:
        message += f"; {info.namespace}/{info.name} has endpoints {', '.join(info.endpoints)}: kube-proxy has not " \
                   "synced them"
        cmds = real_server_commands(svc, info, service_port(info, svc.proto, svc.port))
        fix = in_ns(host, *cmds) + f"  # {KUBE_PROXY_RESYNC}"
    else:
        if info is not None:
            message += f"; {info.namespace}/{info.name} has no ready endpoints"
        fix = endpoints_fix(info, svc.address)
    return service_line(svc), message, fix


def known_live_addresses(ctx: Context) -> set[str] | None:
    """Every pod's address, when the snapshot knows every pod: a paste names only some of them."""
    if ctx.bundle.inventory is None and any(pasted(h) for h in ctx.bundle.hosts):
        return None
    return live_addresses(ctx.bundle)


def ipvs_stale_real_server(ctx: Context) -> list[Finding]:
    """A schedulable real server that is no live pod (or node), or no endpoint of its Service."""
    out = []
    for _, hop in ctx.hops(Reason.IPVS_DEST_GONE):
        host = ctx.host(hop.host)
        svc, dest = hop_service_dest(host, hop)
        if dest is not None:
            out.append(hop_finding(hop, dest_line(svc, dest), hop.detail, delete_fix(host, svc, dest)))
    live = known_live_addresses(ctx)
    pods = {p.ip: p.name for p in ctx.bundle.inventory.pods} if ctx.bundle.inventory else {}
    for host, svc in each_service(ctx):
        info = service_at(ctx, svc.address)
        for d in svc.dests:
            if d.weight == 0:
                continue  # ipvs_weight_zero reports those
            if live is not None and d.address not in live:
                why = "no pod or node has that address (the pod is gone)"
            elif info is not None and d.address not in info.endpoints:
                owner = pods.get(d.address)
                why = f"it is no endpoint of {info.namespace}/{info.name}" + \
                    (f" ({d.address} is {owner}'s address now)" if owner else "")
            else:
                continue
            out.append(finding(ctx, host, dest_line(svc, d),
                               f"IPVS {service_name(svc)} sends connections to real server {d.address}:{d.port}, but "
                               f"{why}: those connections fail", delete_fix(host, svc, d),
                               grade(ctx, host, svc.address, svc.port), [("ipvs", service_line(svc))]))
    return out


def delete_fix(host: Host, svc: IpvsService, dest: IpvsDest) -> str:
    return in_ns(host, f"ipvsadm -d {service_option(svc)} -r {dest.address}:{dest.port}") + \
        "  # kube-proxy should have removed it; if it comes back, restart kube-proxy"


def ipvs_weight_zero(ctx: Context) -> list[Finding]:
    """Weight-0 real servers: draining after their endpoint went (fine), or left behind (stale)."""
    out = []
    live = known_live_addresses(ctx)
    for host, svc in each_service(ctx):
        for d in svc.dests:
            if d.weight != 0:
                continue
            gone = " and no pod has that address" if live is not None and d.address not in live else ""
            conns = d.active + d.inactive
            if conns:
                out.append(finding(ctx, host, dest_line(svc, d),
                                   f"real server {d.address}:{d.port} of {service_name(svc)} has weight 0{gone} and "
                                   f"still {conns} connections: a terminating endpoint draining; kube-proxy deletes "
                                   "it when they end", "nothing to do; " + delete_fix(host, svc, d).split("  #")[0] +
                                   " cuts those connections now", INFO, [("ipvs", service_line(svc))]))
            else:
                out.append(finding(ctx, host, dest_line(svc, d),
                                   f"real server {d.address}:{d.port} of {service_name(svc)} has weight 0{gone} and no "
                                   "connections left: left behind (kube-proxy deletes a terminated endpoint's real "
                                   "server once it is drained)", delete_fix(host, svc, d), WARNING,
                                   [("ipvs", service_line(svc))]))
    return out


def ipvs_port_mismatch(ctx: Context) -> list[Finding]:
    """IPVS serves a Service on another port than the Service's, or sends to another port than its targetPort."""
    out = []
    for _, hop in ctx.hops(Reason.IPVS_WRONG_PORT):
        host = ctx.host(hop.host)
        svc, dest = hop_service_dest(host, hop)
        found = kube_service(ctx.bundle, svc) if svc else None
        if dest is not None and found and found[1]:
            out.append(hop_finding(hop, *wrong_target_port(host, svc, dest, *found)))
    for host in ipvs_nodes(ctx):
        table = IpvsTable(host)
        for info in known_services(ctx):
            if not info.cluster_ip:
                continue
            vip = info.cluster_ip
            for proto in dict.fromkeys(p.protocol.upper() for p in info.ports):
                ports = {p.port for p in info.ports if p.protocol.upper() == proto}
                served = set(table.ports_of(proto, vip))
                missing = sorted(ports - served)
                for extra in sorted(served - ports):
                    f = wrong_service_port(ctx, host, info, table.service_for(proto, vip, extra), missing)
                    refused = next((h for _, h in ctx.hops(Reason.IPVS_NO_SERVICE) if h.host == host.name
                                    and h.payload.vip == vip and h.payload.proto.upper() == proto), None)
                    if refused is not None:  # the flow was refused for this: say where
                        f.device, f.hook, f.segment = refused.device, refused.hook, refused.segment
                    out.append(f)
            for sp in info.ports:
                svc = table.service_for(sp.protocol, vip, sp.port)
                for d in (svc.dests if svc and sp.target_port else []):
                    if d.port != sp.target_port:
                        out.append(finding(ctx, host, *wrong_target_port(host, svc, d, info, sp),
                                           grade(ctx, host, vip, sp.port), [("ipvs", service_line(svc))]))
    return out


def wrong_target_port(host: Host, svc: IpvsService, dest: IpvsDest, info: ServiceInfo,
                      sp: ServicePort) -> tuple[str, str, str]:
    good = IpvsDest(address=dest.address, port=sp.target_port, forward=dest.forward, weight=dest.weight)
    message = (f"IPVS {service_name(svc)} sends to {dest.address}:{dest.port}, but {info.namespace}/{info.name} "
               f"port {sp.port} targets port {sp.target_port}: connections reach a port the pod does not serve")
    fix = in_ns(host, f"ipvsadm -d {service_option(svc)} -r {dest.address}:{dest.port}",
                "ipvsadm " + dest_line(svc, good)) + f"  # {KUBE_PROXY_RESYNC}"
    return dest_line(svc, dest), message, fix


def wrong_service_port(ctx: Context, host: Host, info: ServiceInfo, svc: IpvsService, missing: list[int]) -> Finding:
    name = f"{info.namespace}/{info.name}"
    if not missing:
        return finding(ctx, host, service_line(svc),
                       f"IPVS serves {service_name(svc)}, a port {name} does not have: left behind by an old "
                       "version of the Service", in_ns(host, f"ipvsadm -D {service_option(svc)}"), WARNING)
    right = wanted_service(svc.proto, svc.address, missing[0], svc.scheduler)
    cmds = [f"ipvsadm -D {service_option(svc)}", "ipvsadm " + service_line(right)]
    cmds += real_server_commands(right, info, service_port(info, svc.proto, missing[0]))
    severity = ERROR if any(grade(ctx, host, svc.address, p) == ERROR for p in missing) else WARNING
    return finding(ctx, host, service_line(svc),
                   f"IPVS serves {service_name(svc)}, but {name}'s {svc.proto} port is "
                   f"{', '.join(map(str, missing))}: connections to the Service port are refused",
                   in_ns(host, *cmds) + f"  # {KUBE_PROXY_RESYNC}", severity,
                   [("ipvs", dest_line(svc, d)) for d in svc.dests])


def ipvs_scheduler_mismatch(ctx: Context) -> list[Finding]:
    """kube-proxy gives every virtual service its one --ipvs-scheduler: one that differs was changed by hand."""
    out = []
    for host in ipvs_nodes(ctx):
        counts = Counter(s.scheduler for s in host.ipvs)
        if not counts:
            continue
        usual, n = counts.most_common(1)[0]
        if n * 2 <= len(host.ipvs):
            continue  # no clear majority: cannot tell kube-proxy's scheduler
        for svc in host.ipvs:
            if svc.scheduler == usual:
                continue
            out.append(finding(ctx, host, service_line(svc),
                               f"IPVS {service_name(svc)} uses scheduler {svc.scheduler}, but the other {n} virtual "
                               f"services here use {usual}: kube-proxy gives all of them its one --ipvs-scheduler, so "
                               "this one was changed by hand or left by an older kube-proxy configuration",
                               in_ns(host, f"ipvsadm -E {service_option(svc)} -s {usual}"), WARNING))
    return out
