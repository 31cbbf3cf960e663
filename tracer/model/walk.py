"""Simulate the kernel's decisions for one flow, hop by hop, across every namespace in a bundle.

The walk follows what the kernel does with an IPv4 packet: netfilter hooks, policy routing,
neighbour resolution, bridge forwarding by FDB, veth peers across namespaces, VXLAN encapsulation
by the device's FDB, underlay routing, decapsulation on the receiving node, local delivery and the
reply with conntrack's reverse NAT. It records every decision as a Hop with the objects behind it.

Where the kernel would drop but its intent is clear (a dropping rule, forwarding off, a wrong
neighbour MAC, a stale FDB entry), the walk marks the hop failed and goes on as if it had passed,
so that one diagnose run reports every problem on the path, not only the first.
"""

from __future__ import annotations

import copy
import dataclasses

from ..bundle import Bundle, Host, Link
from ..netfilter.evaluate import Netfilter, Packet
from .ipvs import (IPVS_PROTOS, IpvsTable, dest_line, kube_service, live_addresses, picks, runs_ipvs, service_line,
                   service_name)
from .path import FAIL, OK, WARN, Evidence, Flow, Hop, Path, ct_text
from .reasons import (DELIVERED, DROPPED, LOST, UNOBSERVED, UNSENT, ConntrackFacts, EgressFacts, EncapFacts,
                      FdbEntryFacts, IpvsFacts, NeighFacts, Payload, PortFacts, Reason, RemoteNode, RouteFacts, RuleTrail)
from .routing import Decision, local_addresses, lookup
from .topology import BAD_NEIGH_STATES, BROADCAST, Port, Topology

VXLAN_OVERHEAD = 50  # outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
MAX_HOPS = 200
class Stop(Exception):
    """The walk cannot go on (hard failure or end of the snapshot)."""


@dataclasses.dataclass
class Pkt:
    src: str
    dst: str
    proto: str
    sport: int | None
    dport: int | None
    size: int
    ttl: int = 64
    mark: int = 0
    ct_state: str = "NEW"
    icmp_type: int | None = 8
    inner: "Pkt | None" = None  # the encapsulated packet of a VXLAN outer packet
    inner_mac: str | None = None  # inner destination MAC (the remote VtepMAC)
    vni: int | None = None
    ipvs_done: bool = False  # IPVS already forwarded it (skb->ipvs_property): its hooks let it pass

    def nf(self, iif: str | None, oif: str | None) -> Packet:
        return Packet(src=self.src, dst=self.dst, proto=self.proto, sport=self.sport, dport=self.dport,
                      iif=iif, oif=oif, mark=self.mark, ct_state=self.ct_state,
                      icmp_type=self.icmp_type if self.proto == "icmp" else None, size=self.size)


@dataclasses.dataclass
class NatEntry:
    host: str
    kind: str  # dnat, snat
    before: str
    after: str
    before_port: int | None
    after_port: int | None
    by: str = "netfilter"  # netfilter (conntrack undoes it) or ipvs (IPVS's own hooks undo it)


class Walk:
    """One walk of one flow along one choice of every branch point (statistic endpoints)."""

    def __init__(self, model: "Model", flow: Flow, choices: list[int]):
        self.model = model
        self.topo = model.topo
        self.flow = flow
        self.choices = choices
        self.branch_sizes: list[int] = []
        self.path = Path(flow=flow)
        self.direction = "request"
        self.nat: list[NatEntry] = []
        self.delivered_at: str | None = None
        self.src_host: str | None = None
        self.dst_host: str | None = None  # the namespace the user means to reach, when known
        self.left: tuple | None = None  # (node, remote NodeInfo, inner packet) when it left for a node not here
        self.alternative: list[str] = []

    # -- recording --------------------------------------------------------------------------
    def hop(self, host: Host, point: str, device: str | None, *, status: str = OK, reason: Reason | None = None,
            detail: str = "", hook: str | None = None, evidence: list[tuple[str, str]] = (),
            facts: type[Payload] | None = None, **data) -> Hop:
        """Record a hop. `data` are the fields of its payload: its reason's (REASONS), or for a
        passing hop the `facts` class given (a misspelt field is a TypeError here, not a key a check
        looks up in vain)."""
        kind = reason.spec.payload if reason is not None else facts
        payload = kind.record(**data) if kind is not None else None
        assert payload is not None or not data, f"{point} hop facts {sorted(data)} need a payload class"
        h = Hop(host=host.name, node=self.topo.node_of(host), location=self.topo.location(host), device=device,
                point=point, direction=self.direction, status=status, reason=reason, detail=detail, hook=hook,
                evidence=[Evidence(k, self.topo.node_of(host), self.topo.location(host), o) for k, o in evidence],
                payload=payload)
        self.path.hops.append(h)
        if len(self.path.hops) > MAX_HOPS:
            h.status, h.reason, h.detail = FAIL, Reason.LOOP, f"the path loops: more than {MAX_HOPS} hops"
            raise Stop(Reason.LOOP)
        return h

    def fail(self, host: Host, point: str, device: str | None, reason: Reason, detail: str,
             evidence: list[tuple[str, str]] = (), status: str = FAIL, **data) -> None:
        self.hop(host, point, device, status=status, reason=reason, detail=detail, evidence=evidence, **data)
        if status == FAIL and reason.spec.stops:
            raise Stop(reason)

    def choose(self, n: int) -> int:
        i = len(self.branch_sizes)
        self.branch_sizes.append(n)
        return self.choices[i] if i < len(self.choices) else 0

    # -- netfilter --------------------------------------------------------------------------
    def netfilter(self, host: Host, hook: str, pkt: Pkt, iif: str | None, oif: str | None) -> Pkt:
        pkt = self.conntrack_nat(host, hook, pkt, iif, oif)
        nf = self.model.netfilter(host)
        if nf is None:
            return pkt
        results = nf.evaluate(hook, pkt.nf(iif, oif), self.model.local_addrs(host), self.model.iface_addrs(host))
        if not results:
            return pkt
        pick = results[self.choose(len(results))] if len(results) > 1 else results[0]
        self.path.probability *= pick.probability
        out = dataclasses.replace(pkt, src=pick.packet.src, dst=pick.packet.dst, sport=pick.packet.sport,
                                  dport=pick.packet.dport, mark=pick.packet.mark)
        nat_text = [r.text for r in pick.nat]
        if out.dst != pkt.dst or out.dport != pkt.dport:
            self.nat.append(NatEntry(host.name, "dnat", pkt.dst, out.dst, pkt.dport, out.dport))
            if len(results) > 1:
                self.alternative.append(f"{out.dst}:{out.dport}" if out.dport else out.dst)
        if out.src != pkt.src or out.sport != pkt.sport:
            self.nat.append(NatEntry(host.name, "snat", pkt.src, out.src, pkt.sport, out.sport))
        detail = f"{hook}: {pick.verdict}"
        if nat_text:
            detail += f", {'DNAT' if out.dst != pkt.dst else 'NAT'} {pkt.dst} → {out.dst}" if out.dst != pkt.dst \
                else f", SNAT {pkt.src} → {out.src}"
        data = {"rules": [dataclasses.asdict(r) for r in pick.trail], "probability": pick.probability,
                "unsupported": [dataclasses.asdict(r) for r in pick.unsupported]}
        device = iif if hook in ("prerouting", "input") else oif
        if pick.verdict in ("drop", "reject"):
            rule = pick.decided_by
            ev = [("rule", rule.text)] if rule else []
            self.hop(host, "netfilter", device, status=FAIL, reason=Reason(f"nf_{pick.verdict}"), hook=hook,
                     detail=f"{hook}: {pick.verdict} by {rule.table}/{rule.chain} rule {rule.number}: {rule.text}"
                     if rule else f"{hook}: {pick.verdict}", evidence=ev,
                     rule=dataclasses.asdict(rule) if rule else None, reject_with=pick.reject_with, **data)
        elif pick.trail or pick.nat:
            self.hop(host, "netfilter", device, hook=hook, detail=detail,
                     evidence=[("rule", t) for t in nat_text], facts=RuleTrail, **data)
        return out

    def conntrack_nat(self, host: Host, hook: str, pkt: Pkt, iif: str | None, oif: str | None) -> Pkt:
        """A packet of a connection conntrack already knows takes that entry's NAT, not the rules':
        kube-proxy's DNAT decides a connection's first packet only. A UDP client that reuses its
        source port meets its old entry (and a stale one still points at a gone endpoint)."""
        if self.direction != "request" or pkt.ct_state != "NEW" or hook not in ("prerouting", "output"):
            return pkt
        c = next((c for c in host.conntrack if (c.proto, c.src, c.dst, c.sport, c.dport) ==
                  (pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport)), None)
        if c is None:
            return pkt
        out = dataclasses.replace(pkt, ct_state="ESTABLISHED")
        if c.reply_src and c.reply_src != pkt.dst:
            out = dataclasses.replace(out, dst=c.reply_src, dport=c.reply_sport or pkt.dport)
            self.nat.append(NatEntry(host.name, "dnat", pkt.dst, out.dst, pkt.dport, out.dport))
            self.hop(host, "netfilter", iif if hook == "prerouting" else oif, hook=hook,
                     detail=f"{hook}: conntrack entry, DNAT {pkt.dst} → {out.dst}", evidence=[("conntrack", ct_text(c))],
                     facts=ConntrackFacts, conntrack=ct_text(c))
        return out

    # -- IPVS -------------------------------------------------------------------------------
    def ipvs_schedule(self, host: Host, pkt: Pkt, iif: str | None, hook: str) -> bool:
        """IPVS's scheduling hook (LOCAL_IN for packets from outside, LOCAL_OUT for the node's own):
        pick a real server, DNAT to it (Masq) and send it on. False when IPVS does not take the packet."""
        table = self.model.ipvs(host)
        if table is None or pkt.ipvs_done or self.direction != "request":
            return False
        svc = table.service_for(pkt.proto, pkt.dst, pkt.dport, pkt.mark)
        if svc is None:
            if pkt.dst in table.vips and pkt.proto in IPVS_PROTOS:
                served = table.ports_of(pkt.proto, pkt.dst)
                also = f" (it serves {pkt.dst} on {pkt.proto.upper()} {', '.join(map(str, served))})" if served else ""
                self.fail(host, "ipvs", iif, Reason.IPVS_NO_SERVICE,
                          f"{pkt.dst} is on kube-ipvs0 but IPVS has no virtual service for {pkt.proto.upper()} "
                          f"{pkt.dst}:{pkt.dport}{also}: the node's own stack gets the packet and refuses it",
                          hook=hook, proto=pkt.proto, vip=pkt.dst, port=pkt.dport, served=served)
            return False
        ev = [("ipvs", service_line(svc))] + [("ipvs", dest_line(svc, d)) for d in svc.dests]
        choices = picks(svc)
        if not choices:
            why = "no real servers" if not svc.dests else f"only weight-0 real servers ({len(svc.dests)})"
            self.fail(host, "ipvs", iif, Reason.IPVS_NO_DEST, f"IPVS {service_name(svc)} has {why}: it answers "
                      "ICMP port unreachable", evidence=ev, hook=hook, service=service_line(svc))
        pick = choices[self.choose(len(choices))] if len(choices) > 1 else choices[0]
        dest, target = pick.dest, f"{pick.dest.address}:{pick.dest.port}"
        self.path.probability *= pick.share
        if len(choices) > 1:
            self.alternative.append(target)
        ev = [("ipvs", service_line(svc)), ("ipvs", dest_line(svc, dest))]
        live = self.model.live
        if live is not None and dest.address not in live:
            self.fail(host, "ipvs", iif, Reason.IPVS_DEST_GONE, f"IPVS {service_name(svc)} sends to real server {target}, "
                      "but no pod or node has that address", evidence=ev, hook=hook, service=service_line(svc),
                      dest=dest_line(svc, dest))
        wanted = kube_service(self.model.bundle, svc)
        if wanted and wanted[1] and wanted[1].target_port and dest.port != wanted[1].target_port:
            info, port = wanted
            self.fail(host, "ipvs", iif, Reason.IPVS_WRONG_PORT, f"IPVS {service_name(svc)} sends to {target}, but "
                      f"{info.namespace}/{info.name} port {port.port} targets port {port.target_port}", evidence=ev,
                      hook=hook, service=service_line(svc), dest=dest_line(svc, dest))
        # kube-proxy only uses Masq; other methods do not rewrite the address, so follow them as Masq.
        status = OK if dest.forward in ("Masq", "Local") else WARN
        self.hop(host, "ipvs", iif, hook=hook, status=status, reason=None if status == OK else Reason.IPVS_FORWARD_METHOD,
                 detail=f"{hook}: IPVS {service_name(svc)} {svc.scheduler} → {target} ({dest.forward}, weight "
                 f"{dest.weight}), DNAT {pkt.dst} → {dest.address}", evidence=ev, service=service_line(svc),
                 dest=dest_line(svc, dest), probability=pick.share, facts=IpvsFacts)
        self.nat.append(NatEntry(host.name, "dnat", pkt.dst, dest.address, pkt.dport, dest.port, by="ipvs"))
        # ip_vs_nat_xmit routes to the real server and re-enters LOCAL_OUT, then POSTROUTING.
        self.send(host, dataclasses.replace(pkt, dst=dest.address, dport=dest.port, ipvs_done=True))
        return True

    def check_ipvs_vip(self, host: Host, pkt: Pkt, iif: str, dec: Decision) -> None:
        """A forwarded packet to a virtual service whose VIP is not on kube-ipvs0: IPVS only takes
        packets from outside at LOCAL_IN, so the node routes this one away and it is lost."""
        table = self.model.ipvs(host)
        if table is None or pkt.ipvs_done or self.direction != "request":
            return
        svc = table.service_for(pkt.proto, pkt.dst, pkt.dport, pkt.mark)
        if svc is None or svc.fwmark is not None:
            return
        self.fail(host, "ipvs", iif, Reason.IPVS_VIP_NOT_LOCAL,
                  f"{pkt.dst} is not on kube-ipvs0, so IPVS never sees the packet: the node routes it by "
                  f"`{dec.route.text()}` instead of to {service_name(svc)}'s real servers",
                  evidence=[("route", dec.route.text()), ("ipvs", service_line(svc))], vip=pkt.dst)

    # -- sending ----------------------------------------------------------------------------
    def route(self, host: Host, pkt: Pkt, iif: str | None) -> Decision:
        dec = lookup(host, pkt.dst, src=pkt.src if iif else None, iif=iif, mark=pkt.mark)
        ev = [("route", dec.route.text())] if dec.route else []
        if dec.route is None:
            self.fail(host, "route", iif, Reason.NO_ROUTE, f"no route to {pkt.dst}", evidence=ev, dst=pkt.dst,
                      origin=iif is None)
        if dec.route.type in ("blackhole", "unreachable", "prohibit"):
            self.fail(host, "route", iif, Reason(f"route_{dec.route.type}"), f"{dec.route.type} route for {pkt.dst}",
                      evidence=ev, dst=pkt.dst)
        via = f"via {dec.route.gateway} " if dec.route.gateway else ""
        self.hop(host, "route", dec.route.dev, detail=f"{pkt.dst}: {'local' if dec.local else via + 'dev ' + str(dec.route.dev)}",
                 evidence=ev, facts=RouteFacts, dst=pkt.dst, table=dec.route.table)
        return dec

    def send(self, host: Host, pkt: Pkt) -> None:
        """A packet generated by a socket (or the VXLAN driver) in `host`."""
        dec = self.route(host, pkt, None)
        # IPVS takes locally generated packets at LOCAL_OUT whether or not the VIP is local.
        if self.ipvs_schedule(host, pkt, None, "output"):
            return
        if dec.local:
            self.local_deliver(host, "lo", pkt)
            return
        dnat = self.netfilter(host, "output", pkt, None, dec.route.dev)
        if dnat.dst != pkt.dst:  # OUTPUT DNAT re-routes the packet
            dec = self.route(host, dnat, None)
        pkt = self.netfilter(host, "postrouting", dnat, None, dec.route.dev)
        self.transmit(host, dec.route.dev, dec.route.gateway or pkt.dst, pkt)

    def transmit(self, host: Host, dev: str, nexthop: str, pkt: Pkt) -> None:
        link = host.link(dev)
        if link is None:
            self.fail(host, "egress", dev, Reason.LINK_MISSING, f"route points at {dev}, which does not exist")
        self.check_link(host, link, "egress")
        if link.mtu and pkt.size > link.mtu:
            self.fail(host, "egress", dev, Reason.MTU_EXCEEDED, f"{pkt.size}-byte packet with DF set exceeds "
                      f"{dev} MTU {link.mtu}", evidence=[("link", link_text(link))], size=pkt.size, mtu=link.mtu)
            pkt.size = link.mtu  # walk on with a packet that fits, so one MTU problem is reported once
        if link.kind == "vxlan":
            self.vxlan_xmit(host, link, nexthop, pkt)
            return
        mac = self.resolve(host, link, nexthop)
        self.hop(host, "egress", dev, detail=f"to {nexthop} ({mac})", facts=EgressFacts, mac=mac)
        self.l2_out(host, link, pkt, mac)

    def check_link(self, host: Host, link: Link, point: str) -> None:
        if not link.up or not link.carrier:
            state = "DOWN" if not link.up else "NO-CARRIER"
            self.fail(host, point, link.name, Reason.LINK_DOWN, f"{link.name} is {state}",
                      evidence=[("link", link_text(link))], link=link.name, admin_down=not link.up)

    # -- layer 2 ----------------------------------------------------------------------------
    def resolve(self, host: Host, link: Link, ip: str) -> str | None:
        """The MAC the kernel puts on a packet to `ip` out of `link` (neighbour table, else ARP)."""
        if link.kind == "loopback":
            return None
        entry = self.topo.neighbour(host, link.name, ip)
        answers = self.topo.arp_answerers(Port(host.name, link.name), ip)
        macs = sorted({m for _, m in answers if m})
        owners = [f"{p.host}/{p.link}" for p, _ in answers]
        ev = [("neigh", entry.text())] if entry else []
        if entry and entry.lladdr and not (set(entry.state) & BAD_NEIGH_STATES):
            if macs and entry.lladdr not in macs:
                permanent = "PERMANENT" in entry.state
                self.fail(host, "neigh", link.name, Reason.NEIGH_WRONG_MAC,
                          f"neighbour {ip} → {entry.lladdr}, but {ip} is at {', '.join(macs)} ({', '.join(owners)})",
                          evidence=ev, status=FAIL if permanent else WARN, ip=ip, mac=entry.lladdr,
                          expected=macs[0], owners=owners, permanent=permanent)
                return macs[0]
            self.hop(host, "neigh", link.name, detail=f"{ip} is {entry.lladdr} ({'/'.join(entry.state)})",
                     evidence=ev, facts=NeighFacts, ip=ip, mac=entry.lladdr)
            return entry.lladdr
        if len(macs) > 1:
            self.fail(host, "neigh", link.name, Reason.NEIGH_CONFLICT,
                      f"{len(macs)} interfaces answer ARP for {ip}: {', '.join(owners)}", evidence=ev,
                      ip=ip, macs=macs, owners=owners)
            return self.preferred_mac(ip, answers)
        if macs:
            if entry and not can_solicit(host, link.name):
                self.fail(host, "neigh", link.name, Reason.NEIGH_UNRESOLVED,
                          f"{ip} is {'/'.join(entry.state)} and {link.name} sends no ARP requests "
                          f"(mcast_solicit/app_solicit = 0), though {owners[0]} would answer", evidence=ev, ip=ip,
                          state=entry.state, segment=[], solicit=False)
            if entry:  # FAILED/INCOMPLETE but someone answers: the kernel re-resolves on next send
                self.hop(host, "neigh", link.name, status=WARN, reason=Reason.NEIGH_STALE_FAILURE,
                         detail=f"{ip} is {'/'.join(entry.state)} in the neighbour table, though {owners[0]} answers",
                         evidence=ev, ip=ip, mac=macs[0], state=entry.state)
            else:
                self.hop(host, "neigh", link.name, detail=f"{ip} resolves by ARP to {macs[0]} ({owners[0]})",
                         facts=NeighFacts, ip=ip, mac=macs[0])
            return macs[0]
        outside = link.kind == "veth" and self.topo.peer(Port(host.name, link.name)) is None
        if link.kind not in ("veth", "bridge", "vxlan") or outside:  # a real NIC: the segment leaves the snapshot
            if entry and entry.lladdr is None:
                self.fail(host, "neigh", link.name, Reason.NEIGH_UNRESOLVED, f"{ip} is {'/'.join(entry.state)}: "
                          "nothing answers ARP", evidence=ev, ip=ip, state=entry.state)
            return entry.lladdr if entry else None
        segment = [f"{p.host}/{p.link}" for p in self.topo.segment(Port(host.name, link.name))]
        self.fail(host, "neigh", link.name, Reason.NEIGH_UNRESOLVED,
                  f"nothing on {link.name}'s segment answers ARP for {ip}", evidence=ev, ip=ip,
                  state=entry.state if entry else None, segment=segment)
        return None

    def preferred_mac(self, ip: str, answers) -> str | None:
        # With two owners the packet goes to whichever ARP reply came last: follow the one the user
        # did not mean, so the walk shows the misdelivery (the intended host is the flow's dst name).
        intended = self.flow.dst_name
        for port, mac in answers:
            if port.host != intended:
                return mac
        return answers[0][1]

    def underlay_peer(self, host: Host, ip: str) -> Port | None:
        """Another node's device holding `ip` when the wire between them is in no snapshot (a bundle
        merged from per-node agents: each node's NIC leads out of its own snapshot)."""
        for p in self.topo.owners.get(ip, []):
            other = self.topo.host(p.host)
            if other is not None and other.kind == "node" and other.name != host.name and \
                    self.topo.peer(p) is None:
                return p
        return None

    def l2_out(self, host: Host, link: Link, pkt: Pkt, mac: str | None) -> None:
        if link.kind == "bridge":
            self.bridge_forward(host, link, pkt, mac, in_port=None)
            return
        peer = self.topo.peer(Port(host.name, link.name))
        if peer is None:
            there = self.underlay_peer(host, pkt.dst)
            if there is not None:  # the underlay (in no snapshot) takes it to the node holding its address
                self.receive(self.topo.host(there.host), there.link, pkt, mac)
                return
            remote = self.model.remote_node(pkt.dst)
            if remote is not None:  # another node, known from the cluster's facts but not read here
                self.hop(host, "leave", link.name, reason=Reason.LEFT_NODE, remote=remote.name,
                         detail=f"left {self.topo.node_of(host)} for {remote.name} ({pkt.dst}); {remote.name} is "
                                "not in this snapshot, so what happens there is not observed")
                if self.direction == "request" and pkt.inner is not None:
                    self.left = (host, remote, pkt.inner)  # its answer comes back the same way
                raise Stop(Reason.LEFT_NODE)
            self.fail(host, "egress", link.name, Reason.LEAVES_SNAPSHOT,
                      f"{link.name} leads out of the snapshot (no namespace in the bundle holds its peer)")
        self.receive(self.topo.host(peer.host), peer.link, pkt, mac)

    def bridge_forward(self, host: Host, bridge: Link, pkt: Pkt, mac: str | None, in_port: str | None) -> None:
        self.check_link(host, bridge, "bridge")
        entry = self.topo.bridge_fdb(host, bridge.name, mac) if mac else None
        port = host.link(entry.ifname) if entry else self.topo.port_towards_mac(host, bridge.name, mac, in_port)
        if port is None or port.name == in_port:
            ports = [l.name for l in self.topo.bridge_ports(host, bridge.name)]
            self.fail(host, "bridge", bridge.name, Reason.BRIDGE_NO_PORT,
                      f"no port of {bridge.name} leads to {mac} (ports: {', '.join(ports) or 'none'})",
                      mac=mac, bridge=bridge.name, ports=ports)
        ev = [("fdb", entry.text())] if entry else []
        self.hop(host, "bridge", bridge.name, detail=f"{mac} → port {port.name}" + ("" if entry else " (flooded)"),
                 evidence=ev, facts=PortFacts, port=port.name)
        if host.sysctl("net.bridge.bridge-nf-call-iptables") == "1" and in_port is not None:
            # br_netfilter: bridged IPv4 traverses iptables FORWARD with the bridge as in/out device
            pkt = self.netfilter(host, "forward", pkt, bridge.name, bridge.name)
            if self.direction == "reply":  # a same-node endpoint's reply: conntrack/IPVS un-DNAT it here
                pkt = self.undo_nat(host, pkt, "dnat", "bridge")
        self.check_link(host, port, "egress")
        self.hop(host, "egress", port.name, detail=f"bridged out of {bridge.name}")
        self.l2_out(host, port, pkt, mac)

    def vxlan_xmit(self, host: Host, vx: Link, nexthop: str, pkt: Pkt) -> None:
        entry = self.topo.neighbour(host, vx.name, nexthop)
        owner = next((p for p in self.topo.owners.get(nexthop, []) if (self.topo.link(p) or vx).kind == "vxlan"), None)
        owner_link = self.topo.link(owner) if owner else None
        true_mac = owner_link.mac if owner_link else None
        annotated = self.model.node_for_vtep(nexthop) if owner is None else None
        if annotated is not None and annotated.vtep_mac:
            true_mac = annotated.vtep_mac  # flannel's backend-data annotation of that node
        ev = [("neigh", entry.text())] if entry else []
        if entry is None or not entry.lladdr or set(entry.state) & BAD_NEIGH_STATES:
            self.fail(host, "neigh", vx.name, Reason.NEIGH_UNRESOLVED,
                      f"no neighbour entry for {nexthop} on {vx.name} (flannel installs it permanent; VXLAN "
                      "with nolearning cannot resolve it by ARP)", evidence=ev, ip=nexthop, vxlan=True,
                      expected=true_mac, owner=f"{owner.host}/{owner.link}" if owner else None)
        mac = entry.lladdr
        if true_mac and mac != true_mac:
            who = f"the VTEP {owner.host}/{owner.link} has" if owner else \
                f"{annotated.name}'s flannel annotation (backend-data VtepMAC) says"
            self.fail(host, "neigh", vx.name, Reason.NEIGH_WRONG_MAC,
                      f"neighbour {nexthop} → {mac}, but {who} {true_mac}",
                      evidence=ev, ip=nexthop, mac=mac, expected=true_mac, permanent="PERMANENT" in entry.state,
                      owners=[f"{owner.host}/{owner.link}" if owner else f"{annotated.name}/flannel.1"],
                      annotation=owner is None)
            mac = true_mac  # go on as flannel meant, to find what else is wrong
        else:
            self.hop(host, "neigh", vx.name, detail=f"{nexthop} is {mac} ({'/'.join(entry.state)})",
                     evidence=ev, facts=NeighFacts, ip=nexthop, mac=mac)
        remote = self.vxlan_remote(host, vx, mac, true_mac)
        outer = Pkt(src=vx.vxlan.local or "", dst=remote, proto="udp", sport=None, dport=vx.vxlan.port,
                    size=pkt.size + VXLAN_OVERHEAD, inner=pkt, inner_mac=mac, vni=vx.vxlan.vni)
        self.hop(host, "encap", vx.name, detail=f"VXLAN VNI {vx.vxlan.vni} to {remote}:{vx.vxlan.port}",
                 facts=EncapFacts, remote=remote, vni=vx.vxlan.vni)
        if not outer.src:
            outer.src = self.model.iface_addrs(host).get(vx.vxlan.dev or "", "")
        self.send(host, outer)

    def vxlan_remote(self, host: Host, vx: Link, mac: str, true_mac: str | None) -> str:
        """The underlay IP the VXLAN FDB sends `mac` to; on a missing/wrong entry, the true VTEP."""
        entries = [f for f in self.topo.fdb_entries(host, vx.name, mac) if f.dst]
        vtep = self.topo.vtep_for_mac(true_mac or mac)
        expected = vtep[1].vxlan.local if vtep and vtep[1].vxlan else None
        if vtep is None:  # the remote node is not in this snapshot: its annotations say where it is
            info = self.model.node_for_mac(true_mac or mac)
            if info is not None:
                vtep, expected = (Host(name=info.name, kind="node", node=info.name), vx), info.underlay_ip
        if not entries:
            default = [f for f in self.topo.fdb_entries(host, vx.name, "00:00:00:00:00:00") if f.dst]
            if default:
                return default[0].dst
            self.fail(host, "fdb", vx.name, Reason.FDB_MISSING if expected else Reason.FDB_MISSING_UNKNOWN,
                      f"no FDB entry for {mac} on {vx.name}: the kernel does not know which node to send to",
                      mac=mac, expected_dst=expected, vtep=vtep[0].name if vtep else None)
            return expected
        entry = entries[0]
        if expected and entry.dst != expected:
            self.fail(host, "fdb", vx.name, Reason.FDB_WRONG_DST,
                      f"FDB sends {mac} to {entry.dst}, but that VTEP is {vtep[0].name} at {expected}",
                      evidence=[("fdb", entry.text())], mac=mac, dst=entry.dst, expected_dst=expected,
                      vtep=vtep[0].name)
            return expected
        self.hop(host, "fdb", vx.name, detail=f"{mac} → {entry.dst}", evidence=[("fdb", entry.text())],
                 facts=FdbEntryFacts, dst=entry.dst)
        return entry.dst

    # -- receiving --------------------------------------------------------------------------
    def receive(self, host: Host, dev: str, pkt: Pkt, mac: str | None) -> None:
        link = host.link(dev)
        self.hop(host, "ingress", dev, detail=f"{pkt.src} → {pkt.dst}")
        self.check_link(host, link, "ingress")
        if link.mtu and pkt.size > link.mtu and link.kind == "veth":
            self.fail(host, "ingress", dev, Reason.MTU_EXCEEDED, f"{pkt.size}-byte frame exceeds {dev} MTU {link.mtu}; "
                      "the veth drops it", evidence=[("link", link_text(link))], size=pkt.size, mtu=link.mtu)
            pkt.size = link.mtu
            if pkt.inner is not None:
                pkt.inner.size = min(pkt.inner.size, link.mtu - VXLAN_OVERHEAD)
        if link.master:
            bridge = host.link(link.master)
            if bridge is None:
                self.fail(host, "bridge", dev, Reason.LINK_MISSING, f"{dev} is enslaved to missing {link.master}")
            if mac and mac == bridge.mac:
                self.check_link(host, bridge, "ingress")
                self.l3_receive(host, bridge, pkt)
            else:
                self.bridge_forward(host, bridge, pkt, mac, in_port=dev)
            return
        if mac and link.mac and mac not in (link.mac, BROADCAST):
            owners = [f"{p.host}/{p.link}" for p in self.topo.macs.get(mac, [])]
            self.fail(host, "ingress", dev, Reason.MAC_MISMATCH,
                      f"frame for {mac} arrives at {dev} ({link.mac}); the kernel drops it as PACKET_OTHERHOST",
                      mac=mac, dev_mac=link.mac, owners=owners)
        self.l3_receive(host, link, pkt)

    def l3_receive(self, host: Host, link: Link, pkt: Pkt) -> None:
        if self.direction == "reply":
            pkt = self.undo_nat(host, pkt, "snat", "prerouting")
        pkt = self.netfilter(host, "prerouting", pkt, link.name, None)
        dec = self.route(host, pkt, link.name)
        self.check_rp_filter(host, link, pkt)
        if dec.local:
            pkt = self.netfilter(host, "input", pkt, link.name, None)
            if self.direction == "reply":
                pkt = self.undo_nat(host, pkt, "dnat", "input")
            if self.ipvs_schedule(host, pkt, link.name, "input"):
                return
            self.local_deliver(host, link.name, pkt)
            return
        self.check_ipvs_vip(host, pkt, link.name, dec)
        self.check_forwarding(host, link)
        pkt = dataclasses.replace(pkt, ttl=pkt.ttl - 1)
        if pkt.ttl <= 0:
            self.fail(host, "forward", link.name, Reason.TTL_EXCEEDED, "TTL exceeded: the routes loop")
        pkt = self.netfilter(host, "forward", pkt, link.name, dec.route.dev)
        if self.direction == "reply":
            pkt = self.undo_nat(host, pkt, "dnat", "forward")
        pkt = self.netfilter(host, "postrouting", pkt, None, dec.route.dev)
        self.transmit(host, dec.route.dev, dec.route.gateway or pkt.dst, pkt)

    def check_rp_filter(self, host: Host, link: Link, pkt: Pkt) -> None:
        modes = [sysctl_int(host, f"net.ipv4.conf.{k}.rp_filter") for k in ("all", link.name)]
        mode = max((m for m in modes if m is not None), default=0)
        if mode == 0 or pkt.src in local_addresses(host):
            return
        back = lookup(host, pkt.src, src=pkt.dst)
        ev = [("sysctl", f"net.ipv4.conf.{link.name}.rp_filter = {host.sysctl(f'net.ipv4.conf.{link.name}.rp_filter')}"),
              ("sysctl", f"net.ipv4.conf.all.rp_filter = {host.sysctl('net.ipv4.conf.all.rp_filter')}")]
        if back.route is not None:
            ev.append(("route", back.route.text()))
        if back.drops or (mode == 1 and back.route.dev != link.name):
            why = "no route back" if back.drops else f"the route back to {pkt.src} leaves by {back.route.dev}"
            self.fail(host, "ingress", link.name, Reason.RP_FILTER,
                      f"reverse-path filter ({'strict' if mode == 1 else 'loose'}) drops {pkt.src} arriving on "
                      f"{link.name}: {why}", evidence=ev, mode=mode, back_dev=back.route.dev if back.route else None)

    def check_forwarding(self, host: Host, link: Link) -> None:
        glob = host.sysctl("net.ipv4.ip_forward")
        dev = host.sysctl(f"net.ipv4.conf.{link.name}.forwarding")
        if glob == "0" or dev == "0":
            key, val = ("net.ipv4.ip_forward", glob) if glob == "0" else (f"net.ipv4.conf.{link.name}.forwarding", dev)
            self.fail(host, "forward", link.name, Reason.FORWARDING_OFF, f"forwarding is disabled ({key} = {val})",
                      evidence=[("sysctl", f"{key} = {val}")], key=key)

    def local_deliver(self, host: Host, dev: str, pkt: Pkt) -> None:
        if pkt.inner is not None or (pkt.proto == "udp" and self.vxlan_for(host, pkt)):
            self.decap(host, pkt)
            return
        expected = self.dst_host if self.direction == "request" else self.src_host
        if expected and host.name != expected:
            self.fail(host, "deliver", dev, Reason.WRONG_HOST, f"{pkt.dst} is delivered to {host.name}, not {expected}: "
                      f"another interface answers for {pkt.dst}", expected=expected, ip=pkt.dst,
                      owners=[f"{p.host}/{p.link}" for p in self.topo.owners.get(pkt.dst, [])])
        if pkt.proto in ("tcp", "udp") and self.direction == "request":
            self.check_listener(host, pkt)  # a reply goes to the connected socket that sent the request
        self.hop(host, "deliver", dev, detail=f"delivered to {host.name} ({pkt.proto} {pkt.dst}"
                 f"{':' + str(pkt.dport) if pkt.dport else ''})")
        self.delivered_at = host.name
        self.delivered_pkt = pkt

    def vxlan_for(self, host: Host, pkt: Pkt) -> Link | None:
        for vx in self.topo.vxlan_devices(host):
            if vx.vxlan.port == pkt.dport and (vx.vxlan.local in (None, pkt.dst)):
                if pkt.vni is None or vx.vxlan.vni == pkt.vni:
                    return vx
        return None

    def decap(self, host: Host, outer: Pkt) -> None:
        vx = self.vxlan_for(host, outer)
        if vx is None:
            self.fail(host, "decap", None, Reason.NO_VXLAN_RECEIVER,
                      f"nothing receives VXLAN VNI {outer.vni} on UDP {outer.dport} at {outer.dst}",
                      vni=outer.vni, port=outer.dport)
        self.hop(host, "decap", vx.name, detail=f"VXLAN VNI {vx.vxlan.vni} from {outer.src}")
        if outer.inner_mac and vx.mac and outer.inner_mac != vx.mac:
            self.fail(host, "decap", vx.name, Reason.MAC_MISMATCH,
                      f"inner frame is for {outer.inner_mac}, but {vx.name} here is {vx.mac}: dropped as PACKET_OTHERHOST",
                      mac=outer.inner_mac, dev_mac=vx.mac, owners=[])
        self.receive(host, vx.name, outer.inner, vx.mac)

    def check_listener(self, host: Host, pkt: Pkt) -> None:
        if "listeners" in host.gaps or "netlink" not in host.sources:
            return  # nothing known about sockets here
        for l in host.listeners:
            if l.proto == pkt.proto and l.port == pkt.dport and l.address in ("0.0.0.0", "::", pkt.dst):
                return
        self.fail(host, "deliver", None, Reason.NO_LISTENER, f"nothing listens on {pkt.proto} {pkt.dst}:{pkt.dport}",
                  proto=pkt.proto, port=pkt.dport,
                  listening=[f"{l.proto} {l.address}:{l.port}" for l in host.listeners])

    def undo_nat(self, host: Host, pkt: Pkt, kind: str, at: str) -> Pkt:
        """conntrack's (or IPVS's) reverse translation of a reply at the host that translated the
        request. `at`: where the reply is (prerouting, forward, input, or bridge for br_netfilter)."""
        for e in self.nat:
            if e.host != host.name or e.kind != kind:
                continue
            if kind == "dnat" and pkt.src == e.after and (pkt.sport == e.after_port or e.after_port is None):
                pkt = dataclasses.replace(pkt, src=e.before, sport=e.before_port)
                if e.by == "ipvs":  # ip_vs_out_hook at FORWARD, or at LOCAL_IN for the node's own connection
                    self.hop(host, "ipvs", None, hook="input" if at == "input" else "forward",
                             detail=f"reply: IPVS un-DNAT {e.after} → {e.before}")
                else:
                    self.hop(host, "netfilter", None, hook="input" if at == "input" else "postrouting",
                             detail=f"reply: un-DNAT {e.after} → {e.before}")
            if kind == "snat" and pkt.dst == e.after:
                pkt = dataclasses.replace(pkt, dst=e.before, dport=e.before_port)
                self.hop(host, "netfilter", None, hook="prerouting", detail=f"reply: un-SNAT {e.after} → {e.before}")
        return pkt

    # -- driver -----------------------------------------------------------------------------
    def run(self, src_host: Host, dst_host: str | None) -> Path:
        flow = self.flow
        self.src_host, self.dst_host = src_host.name, dst_host
        pkt = Pkt(src=flow.src, dst=flow.dst, proto=flow.proto, sport=flow.sport, dport=flow.dport,
                  size=flow.size, icmp_type=8 if flow.proto == "icmp" else None)
        try:
            self.send(src_host, pkt)
        except Stop:
            pass
        if self.delivered_at and self.delivered_at != src_host.name:
            self.reply(src_host)
        elif self.left is not None:
            self.reply_arriving(*self.left)
        self.path.outcome = outcome(self.path, src_host.name)
        self.path.alternative = ", ".join(self.alternative) or None
        self.path.endpoint = next((e.after for e in self.nat if e.kind == "dnat"), None)
        return self.path

    def reply_arriving(self, node: Host, remote, req: Pkt) -> None:
        """The answer to a request that left for a node this snapshot does not hold, as it comes back:
        assumed sent by the destination (not observed), walked from where it reaches this node."""
        self.direction = "reply"
        rep = Pkt(src=req.dst, dst=req.src, proto=req.proto, sport=req.dport, dport=req.sport, size=req.size,
                  ct_state="ESTABLISHED", icmp_type=0 if req.proto == "icmp" else None)
        self.arrive(node, remote, rep)

    def arrive(self, node: Host, remote, inner: Pkt) -> bool:
        """`inner` reaching `node` over VXLAN from `remote` (modelled); False when nothing here receives VXLAN."""
        vx = next(iter(self.topo.vxlan_devices(node)), None)
        if vx is None or not remote.underlay_ip:
            self.hop(node, "arrive", None, status=FAIL, reason=Reason.NO_VXLAN_RECEIVER,
                     detail=f"{node.name} has no VXLAN device: nothing receives {remote.name}'s pods' traffic")
            return False
        dev = vx.vxlan.dev or next((r.dev for r in node.routes if r.dst == "default"), None) or "eth0"
        local = vx.vxlan.local or self.model.iface_addrs(node).get(dev, "")
        outer = Pkt(src=remote.underlay_ip, dst=local, proto="udp", sport=None, dport=vx.vxlan.port,
                    size=inner.size + VXLAN_OVERHEAD, inner=inner, inner_mac=vx.mac, vni=vx.vxlan.vni)
        self.hop(node, "arrive", dev, detail=f"from {remote.name} ({remote.underlay_ip}): VXLAN VNI {vx.vxlan.vni} "
                 f"{inner.src} → {inner.dst}, modelled (what happens on {remote.name} is not observed)",
                 facts=RemoteNode, remote=remote.name)
        link = node.link(dev)
        try:
            self.receive(node, dev, outer, link.mac if link else None)
        except Stop:
            pass
        return True

    def run_arriving(self, node: Host, remote, dst_host: str | None) -> Path:
        """The request as it reaches this node from a node the snapshot does not hold (`remote`, an
        inventory NodeInfo): VXLAN from the remote VTEP to this node's underlay device, as flannel on
        the remote node sends it. That arrival is modelled, not observed; from there on it is this
        node's kernel, walked like any other packet."""
        flow = self.flow
        self.src_host, self.dst_host = None, dst_host
        inner = Pkt(src=flow.src, dst=flow.dst, proto=flow.proto, sport=flow.sport, dport=flow.dport,
                    size=flow.size, icmp_type=8 if flow.proto == "icmp" else None)
        if not self.arrive(node, remote, inner):
            self.path.outcome = "dropped"
            return self.path
        if self.delivered_at:
            self.reply(node)
        self.path.outcome = outcome(self.path, "")
        self.path.alternative = ", ".join(self.alternative) or None
        self.path.endpoint = next((e.after for e in self.nat if e.kind == "dnat"), None)
        return self.path

    def reply(self, src_host: Host) -> None:
        req = self.delivered_pkt
        self.direction = "reply"
        rep = Pkt(src=req.dst, dst=req.src, proto=req.proto, sport=req.dport, dport=req.sport, size=req.size,
                  ct_state="ESTABLISHED", icmp_type=0 if req.proto == "icmp" else None)
        at = self.topo.host(self.delivered_at)
        self.delivered_at = None
        try:
            self.send(at, rep)
        except Stop:
            return


def sysctl_int(host: Host, key: str) -> int | None:
    """A numeric sysctl, or None when absent or not a number (a pasted or edited value)."""
    try:
        return int(str(host.sysctl(key)).strip())
    except (TypeError, ValueError):
        return None


def _in_cidr(ip: str, cidr: str) -> bool:
    import ipaddress
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def can_solicit(host: Host, dev: str) -> bool:
    """Whether the kernel sends ARP requests on `dev` to re-resolve a failed neighbour."""
    def get(key: str) -> int:
        value = sysctl_int(host, f"net.ipv4.neigh.{dev}.{key}")
        return value if value is not None else (3 if key != "app_solicit" else 0)
    return get("mcast_solicit") + get("app_solicit") > 0


def link_text(link: Link) -> str:
    state = "UP" if link.up else "DOWN"
    if link.up and not link.carrier:
        state = "NO-CARRIER"
    s = f"{link.name}: state {state} mtu {link.mtu}"
    if link.master:
        s += f" master {link.master}"
    if link.mac:
        s += f" link/ether {link.mac}"
    return s


def outcome(path: Path, src_host: str) -> str:
    """The path's outcome, from its first failure's row in REASONS (or from where it ended)."""
    fails = [h for h in path.hops if h.status == FAIL]
    over = next((h for h in fails if h.reason is not None and h.reason.spec.overrides), None)
    if over is not None:
        return over.reason.spec.outcome
    first = next((h for h in fails if h.reason is None or h.reason.spec.outcome is not None), None)
    left = any(h.reason == Reason.LEFT_NODE for h in path.hops)
    if first is None:
        if left:  # it left this node for one the snapshot does not hold: fine so far, the rest unseen
            return UNOBSERVED
        return DELIVERED if any(h.point == "deliver" for h in path.hops) else LOST
    spec = first.reason.spec if first.reason is not None else None
    if spec is None:
        return DROPPED
    if spec.outcome == DROPPED and spec.unsent_at_source and first.host == src_host and first.direction == "request":
        return UNSENT
    return spec.outcome


class Model:
    """Expected paths for flows over one bundle. Caches parsed rulesets and address maps."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.topo = Topology(bundle)
        self._nf: dict[str, Netfilter | None] = {}
        self._local: dict[str, set[str]] = {}
        self._iface: dict[str, dict[str, str]] = {}
        self._ipvs: dict[str, IpvsTable | None] = {}
        self.live = live_addresses(bundle)  # addresses a real server may have (None: unknown)

    def netfilter(self, host: Host) -> Netfilter | None:
        if host.name not in self._nf:
            nf = Netfilter.from_host(host)
            self._nf[host.name] = None if nf.is_empty() else nf
        return self._nf[host.name]

    def ipvs(self, host: Host) -> IpvsTable | None:
        """The host's IPVS table when kube-proxy runs in IPVS mode there, else None."""
        if host.name not in self._ipvs:
            self._ipvs[host.name] = IpvsTable(host) if runs_ipvs(host) else None
        return self._ipvs[host.name]

    # -- the cluster's facts (inventory: the API or the lab), for nodes this snapshot does not hold
    def remote_node(self, ip: str):
        """The inventory node `ip` belongs to (its underlay/internal IP, or its pod CIDR) when that
        node is not in the bundle; None otherwise."""
        inv = self.bundle.inventory
        if inv is None or self.topo.owners.get(ip):
            return None
        held = {h.node or h.name for h in self.bundle.hosts if h.kind == "node"}
        for n in inv.nodes:
            if n.name in held:
                continue
            if ip in (n.underlay_ip, n.internal_ip) or (n.pod_cidr and _in_cidr(ip, n.pod_cidr)):
                return n
        return None

    def node_for_vtep(self, ip: str):
        """The inventory node whose flannel.1 address (its pod CIDR's network address) is `ip`."""
        inv = self.bundle.inventory
        if inv is None:
            return None
        return next((n for n in inv.nodes if n.pod_cidr and n.pod_cidr.split("/")[0] == ip), None)

    def node_for_mac(self, mac: str | None):
        inv = self.bundle.inventory
        if inv is None or not mac:
            return None
        return next((n for n in inv.nodes if n.vtep_mac == mac), None)

    def local_addrs(self, host: Host) -> set[str]:
        if host.name not in self._local:
            self._local[host.name] = local_addresses(host)
        return self._local[host.name]

    def iface_addrs(self, host: Host) -> dict[str, str]:
        if host.name not in self._iface:
            m: dict[str, str] = {}
            for a in host.addrs:
                m.setdefault(a.ifname, a.address)
            self._iface[host.name] = m
        return self._iface[host.name]

    def paths(self, flow: Flow, src_host: Host, dst_host: str | None = None, limit: int = 16,
              arriving_from=None) -> list[Path]:
        """Every alternative path (one per -m statistic branch combination, up to `limit`).
        arriving_from: the source's node (inventory NodeInfo) when the source is not in the bundle:
        the walk starts where its packet reaches src_host (this node) over VXLAN."""
        paths: list[Path] = []
        todo: list[list[int]] = [[]]
        while todo and len(paths) < limit:
            choices = todo.pop(0)
            walk = Walk(self, copy.copy(flow), choices)
            if arriving_from is not None:
                path = walk.run_arriving(src_host, arriving_from, dst_host)
            else:
                path = walk.run(src_host, dst_host)
            paths.append(path)
            # enumerate siblings of every branch point beyond the fixed prefix
            for i in range(len(choices), len(walk.branch_sizes)):
                for alt in range(1, walk.branch_sizes[i]):
                    todo.append(choices + [0] * (i - len(choices)) + [alt])
        return paths
