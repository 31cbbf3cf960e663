"""The fault catalog: one entry per way a packet between two pods dies, for all three labs.

Each Fault names DESIGN.md's `cause`, where a diagnoser should blame it (`node`, `location` = a pod
name or "host", `device`), and a `flow` it really breaks. Its `plan` renders, from the facts of
one node (NodeFacts: its pod CIDR, flannel peers, underlay device, pods, current sysctls), the
plain node-level commands that inject it and the ones that clear it: `ip`, `iptables`, `sysctl`,
`bridge`, `conntrack`, run on the node itself or inside one of its pods' network namespaces.

One definition, three labs:
- the netns lab renders the plan from its topology (plans.py: what a plan is made of) and runs each command with `ip netns exec` in
  the node's (or pod's) namespace (`Lab.load(name).inject("fdb-missing")`), so the lab tests prove
  every command: the flow works, breaks after inject, and works again after clear;
- on a Vagrant or kind node, `podpath lab fault inject NAME --here` renders the same plan from the
  facts it discovers on that node (tracer/lab/here.py) and runs the same commands there, pods
  entered with `nsenter -t PID -n`;
- what only another actor does on a real cluster (kube-proxy rewriting its chains after an
  Endpoints change, kubelet stopping a container, a client's query) is a LabStep: the netns lab
  plays that actor; `--here` refuses those faults and says what to do instead (Fault.here).
IPVS_FAULTS are node-level commands only (`ipvsadm`, `ip`): this kernel has no ip_vs, so they run
in the Vagrant lab and are checked here against fixtures (tests/unit/test_fault_catalog.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..bundle import Inventory
from ..checks.causes import Cause
from ..errors import NodeError
from .plans import Cmd, LabStep, NodeFacts, PeerFacts, Plan, Step, cmd, lab_facts, run_in_lab
from .topology import DNS_SERVICE_IP, FLANNEL_MTU, VXLAN_PORT, mac_for, node, pod

if TYPE_CHECKING:  # pragma: no cover
    from .build import BuildCtx


@dataclass
class FaultFlow:
    """A flow that exercises a fault. src/dst: pod names, "svc/<ns>/<name>:<port>", or IPs."""

    src: str
    dst: str
    proto: str = "icmp"
    port: int | None = None
    size: int | None = None  # ICMP payload bytes (ping -s), sent with DF
    sport: int | None = None  # a fixed source port (a client that reuses its port, like many DNS clients)

    def text(self) -> str:
        s = f"{self.src} -> {self.dst} {self.proto}"
        if self.port and not self.dst.endswith(f":{self.port}"):
            s += f"/{self.port}"
        return s + (f" size {self.size}" if self.size else "")


# -------------------------------------------------------------------- the fault


@dataclass
class Fault:
    name: str
    cause: Cause  # the catalog writes the name; a str enum, so JSON prints it
    summary: str
    node: str  # where a diagnoser should blame it
    location: str  # pod name, or "host"
    flow: FaultFlow
    plan: Callable[[NodeFacts], Plan] = field(repr=False, compare=False)
    device: str | None = None  # the interface to blame, when there is one
    patch_inventory: Callable[[Inventory], None] | None = field(default=None, repr=False, compare=False)
    acts_on: str | None = None  # the node whose facts render the plan, when not `node` (vtep-mac-stale)
    here: str | None = None  # why `--here` cannot inject it on a real node (None: it can)
    labs: tuple[str, ...] = ("netns", "kind", "vagrant")

    def __post_init__(self) -> None:
        self.cause = Cause(self.cause)  # a misspelt cause fails when the catalog is built

    @property
    def role(self) -> str:
        """The lab node the plan's "node" commands run on."""
        return self.acts_on or self.node

    def lab_plan(self) -> Plan:
        return self.plan(lab_facts(self.role))

    def apply(self, ctx: "BuildCtx", saved: dict) -> None:
        """Inject into the netns lab: every step of the plan, commands in the lab's namespaces."""
        run_in_lab(ctx, self.role, self.lab_plan().inject)

    def revert(self, ctx: "BuildCtx", saved: dict) -> None:
        run_in_lab(ctx, self.role, self.lab_plan().clear)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cause": self.cause, "node": self.node, "location": self.location,
                "device": self.device, "summary": self.summary,
                "flow": {"src": self.flow.src, "dst": self.flow.dst, "proto": self.flow.proto,
                         "port": self.flow.port, "size": self.flow.size},
                "labs": list(self.labs), "here": self.here is None, "here_refusal": self.here}


FAULTS: dict[str, Fault] = {}  # the netns lab runs each (and kind and Vagrant)
IPVS_FAULTS: dict[str, Fault] = {}  # kube-proxy IPVS mode: Vagrant only (this kernel has no ip_vs)


def _register(f: Fault) -> None:
    assert f.name not in FAULTS and f.name not in IPVS_FAULTS, f.name
    (IPVS_FAULTS if f.labs == ("vagrant",) else FAULTS)[f.name] = f


def catalog() -> dict[str, Fault]:
    """Every fault of every lab, netns-lab faults first (what `lab fault list` shows)."""
    return {**FAULTS, **IPVS_FAULTS}


def _b():  # the build module (imports pyroute2: kept out of `fault list`'s import path)
    from . import build
    return build


A, B = node("node-a"), node("node-b")
POD_B = pod("pod-b")
COREDNS = pod("coredns")
POD_A = pod("pod-a")
PING_B = FaultFlow("pod-a", "pod-b", "icmp")
WEB_B = FaultFlow("pod-a", "pod-b", "tcp", 8080)
DNS_UDP = FaultFlow("pod-a", "svc/kube-system/kube-dns:53", "udp", 53)
WRONG_VTEP_MAC = mac_for("vtep/node-b/before-restart")  # node-b's VtepMAC before flanneld regenerated it
WRONG_VTEP_DST = "192.168.56.99"

KUBE_PROXY = ("kube-proxy rewrites its chains when the Service's endpoints change in the API; a hand edit "
              "lasts until its next sync: on a cluster, change the endpoints instead ({api})")


# -------------------------------------------------------------------- pod_route


def _pod_gateway_routes(f: NodeFacts) -> list[str]:
    """A flannel pod's routes besides its connected /24 (the bridge CNI: default and the cluster CIDR)."""
    return [f"default via {f.gateway} dev eth0", f"{f.cluster_cidr} via {f.gateway} dev eth0"]


def _pod_route_missing(f: NodeFacts) -> Plan:
    p = f.pod("pod-a").name
    return Plan([cmd(f"ip route del {r}", p) for r in _pod_gateway_routes(f)],
                [cmd(f"ip route replace {r}", p) for r in _pod_gateway_routes(f)])


_register(Fault(
    "pod-route-missing", "pod_route",
    "pod-a has lost its default and 10.244.0.0/16 routes: only its own /24 is reachable",
    "node-a", "pod-a", PING_B, device="eth0", plan=_pod_route_missing,
))

# -------------------------------------------------------------------- host_route


def _flannel_route(p: PeerFacts) -> str:
    return f"{p.pod_cidr} via {p.subnet_base} dev flannel.1 onlink"


def _host_route_missing(f: NodeFacts) -> Plan:
    r = _flannel_route(f.peer())
    return Plan([cmd(f"ip route del {r}")], [cmd(f"ip route replace {r}")])


_register(Fault(
    "host-route-missing", "host_route",
    "node-a has no route to node-b's pod CIDR 10.244.1.0/24 (flannel's route via flannel.1 deleted)",
    "node-a", "host", PING_B, device="flannel.1", plan=_host_route_missing,
))


def _cni_route_missing(f: NodeFacts) -> Plan:
    return Plan([cmd(f"ip route del {f.pod_cidr} dev cni0")],
                [cmd(f"ip route replace {f.pod_cidr} dev cni0 proto kernel scope link src {f.gateway}")])


_register(Fault(
    "cni-route-missing", "host_route",
    "node-b has lost the connected route to its own pod subnet 10.244.1.0/24 on cni0",
    "node-b", "host", PING_B, device="cni0", plan=_cni_route_missing,
))

# -------------------------------------------------------------------- iptables


def _first_rule(chain: str, rule: Callable[[NodeFacts], str]) -> Callable[[NodeFacts], Plan]:
    """A rule inserted first in a filter chain (`iptables -I CHAIN 1 ...`) and its exact deletion."""
    def plan(f: NodeFacts) -> Plan:
        r = rule(f)
        return Plan([cmd(f"iptables -w -t filter -I {chain} 1 {r}")], [cmd(f"iptables -w -t filter -D {chain} {r}")])
    return plan


_register(Fault(
    "forward-drop", "iptables",
    "a DROP rule for node-b's pod CIDR sits first in node-b's filter FORWARD chain",
    "node-b", "host", PING_B, plan=_first_rule("FORWARD", lambda f: f"-d {f.pod_cidr} -j DROP"),
))

_register(Fault(
    "vxlan-blocked", "iptables",
    f"node-b's INPUT chain drops VXLAN (UDP {VXLAN_PORT}) from the other node: a host firewall gap",
    "node-b", "host", PING_B, device="eth0",
    plan=_first_rule("INPUT", lambda f: f"-p udp -m udp --dport {f.vxlan_port} -j DROP"),
))


def _kube_proxy_sync(no_endpoints: frozenset[str] = frozenset(), stale: dict[str, list[str]] | None = None,
                     what: str = "") -> LabStep:
    """kube-proxy on both lab nodes rewriting its chains for these endpoints (iptables-restore)."""
    def run(ctx: "BuildCtx") -> None:
        for n in (A, B):
            _b().write_service_rules(ctx, n, no_endpoints, stale)
    return LabStep("kube-proxy", what or "sync: every endpoint ready", run)


def _kube_proxy_fault(no_endpoints: frozenset[str] = frozenset(), stale: dict[str, list[str]] | None = None,
                      what: str = "", clear: tuple[Step, ...] = ()) -> Callable[[NodeFacts], Plan]:
    return lambda f: Plan([_kube_proxy_sync(no_endpoints, stale, what)], [_kube_proxy_sync(), *clear])


def _inv_no_endpoints(svc: str):
    """The cluster agrees: the Service's endpoint list is empty."""
    def patch(inv: Inventory) -> None:
        for s in inv.services:
            if f"{s.namespace}/{s.name}" == svc:
                s.endpoints = []
    return patch


_register(Fault(
    "svc-no-endpoints", "iptables",
    "default/web has no ready endpoints: kube-proxy rewrote it on both nodes as a filter-table REJECT "
    '("default/web:http has no endpoints")',
    "node-a", "host", FaultFlow("pod-a", "svc/default/web:80", "tcp", 80),
    plan=_kube_proxy_fault(frozenset({"default/web"}), what="sync: default/web has no endpoints"),
    patch_inventory=_inv_no_endpoints("default/web"),
    here=KUBE_PROXY.format(api="`kubectl -n default delete pod -l app=web`, or a selector that matches nothing"),
))

GONE_POD_IP = "10.244.1.9"  # a web pod that was deleted: no namespace has this address any more
WEB_SVC = FaultFlow("pod-a", "svc/default/web:80", "tcp", 80)

_register(Fault(
    "svc-stale-endpoint", "iptables",
    f"kube-proxy on both nodes still DNATs default/web to {GONE_POD_IP}:8080, a pod that is gone "
    "(the API already lists pod-a2 and pod-b): connections go nowhere",
    "node-a", "host", WEB_SVC,
    plan=_kube_proxy_fault(stale={"default/web": [GONE_POD_IP]}, what=f"sync: default/web -> {GONE_POD_IP} (stale)",
                           # the FAILED entry the fault's traffic left on node-b
                           clear=(cmd(f"ip neigh del {GONE_POD_IP} dev cni0", "node-b", check=False),)),
    here=KUBE_PROXY.format(api="a kube-proxy that missed an endpoint removal: stop kube-proxy on the node, "
                               "then delete a web pod"),
))

_register(Fault(
    "svc-reply-dropped", "iptables",
    "node-a's FORWARD chain drops the web endpoints' answers from node-b's pods (TCP source port "
    "8080): the request arrives, the reply never makes it home",
    "node-a", "host", WEB_B,
    plan=_first_rule("FORWARD", lambda f: f"-s {f.peer().pod_cidr} -p tcp -m tcp --sport 8080 -j DROP"),
))

# -------------------------------------------------------------------- dns

_register(Fault(
    "dns-blocked", "dns",
    "node-b's FORWARD chain drops UDP 53 towards the coredns pod: cluster DNS queries time out",
    "node-b", "host", DNS_UDP,
    plan=_first_rule("FORWARD", lambda f: f"-d {f.pod('coredns').ip}/32 -p udp -m udp --dport 53 -j DROP"),
))


def _server(p, start: bool) -> LabStep:
    def run(ctx: "BuildCtx") -> None:
        from . import processes
        ctx.do(f"{ctx.ns(p.name)}: {'started' if start else 'stopped'} the {p.server} server",
               processes.start if start else processes.stop, ctx.names, p)
    return LabStep("kubelet", f"{'start' if start else 'stop'} the {p.server} server in {p.name}", run)


def _server_down(p) -> Callable[[NodeFacts], Plan]:
    return lambda f: Plan([_server(p, False)], [_server(p, True)])


SERVER_DOWN = ("a container's server is the runtime's: kubelet restarts a container that exits; on a cluster "
               "{how}")

_register(Fault(
    "coredns-down", "dns",
    "the DNS server in the coredns pod is not running: queries to 10.96.0.10 get ICMP port unreachable",
    "node-b", "coredns", DNS_UDP, plan=_server_down(COREDNS),
    here=SERVER_DOWN.format(how="run a CoreDNS whose Corefile does not listen on 53 "
                                "(kubectl -n kube-system edit configmap coredns)"),
))

_register(Fault(
    "dns-no-endpoints", "dns",
    "kube-dns has no ready endpoints (CoreDNS is not ready): kube-proxy rejects every query to "
    "10.96.0.10 on both nodes",
    "node-a", "host", DNS_UDP,
    plan=_kube_proxy_fault(frozenset({"kube-system/kube-dns"}), what="sync: kube-system/kube-dns has no endpoints"),
    patch_inventory=_inv_no_endpoints("kube-system/kube-dns"),
    here=KUBE_PROXY.format(api="`kubectl -n kube-system scale deployment coredns --replicas=0`"),
))


def _eth0_down(role: str) -> Callable[[NodeFacts], Plan]:
    def plan(f: NodeFacts) -> Plan:
        p = f.pod(role).name
        # the kernel drops the gateway routes with the link: put them back after it is up
        return Plan([cmd("ip link set eth0 down", p)],
                    [cmd("ip link set eth0 up", p), *(cmd(f"ip route replace {r}", p) for r in _pod_gateway_routes(f))])
    return plan


_register(Fault(
    "dns-pod-down", "link_down",
    "the coredns pod's eth0 is down: queries DNATed to it never arrive",
    "node-b", "coredns", DNS_UDP, device="eth0", plan=_eth0_down("coredns"),
))

_register(Fault(
    "dns-reply-dropped", "dns",
    "node-a's FORWARD chain drops the answers coming back from coredns (UDP source port 53): queries "
    "arrive and are answered, lookups still time out",
    "node-a", "host", DNS_UDP,
    plan=_first_rule("FORWARD", lambda f: f"-s {f.pod('coredns', local=False).ip}/32 -p udp -m udp --sport 53 -j DROP"),
))

STALE_DNS_SPORT = 40053  # the client's fixed source port (many resolvers and sidecars reuse one)


def _ct_tuple(f: NodeFacts) -> str:
    return f"-p udp -s {f.pod('pod-a').ip} -d {DNS_SERVICE_IP} --sport {STALE_DNS_SPORT} --dport 53"


def _query_from_fixed_port(ctx: "BuildCtx") -> None:
    from ..netns import run_in

    def query() -> None:
        import socket

        import dns.message
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((POD_A.ip, STALE_DNS_SPORT))
            s.sendto(dns.message.make_query(".", "A").to_wire(), (DNS_SERVICE_IP, 53))
        finally:
            s.close()
    ctx.do(f"{ctx.ns('pod-a')}: one DNS query from port {STALE_DNS_SPORT} (conntrack DNATs it to {GONE_POD_IP})",
           run_in, ctx.ns("pod-a"), query)


def _dns_stale_conntrack(f: NodeFacts) -> Plan:
    """The way it happens: kube-dns's endpoint was a pod (here GONE_POD_IP) when the client sent a
    query from its fixed port, creating a conntrack entry DNATed to it; the pod went, kube-proxy
    rewrote the rules but did not flush the entry, and every query from that port, coming back
    before the entry times out, refreshes it."""
    forget = cmd(f"conntrack -D {_ct_tuple(f)}", check=False)  # an earlier healthy entry would be reused
    return Plan(
        [forget,
         _kube_proxy_sync(stale={"kube-system/kube-dns": [GONE_POD_IP]}, what=f"sync: kube-dns -> {GONE_POD_IP}"),
         LabStep("a client", f"one DNS query from pod-a's port {STALE_DNS_SPORT}", _query_from_fixed_port),
         _kube_proxy_sync(),  # kube-proxy catches up, without flushing conntrack
         cmd(f"conntrack -L {_ct_tuple(f)}")],
        [forget, cmd(f"ip neigh del {GONE_POD_IP} dev cni0", "node-b", check=False)])


_register(Fault(
    "dns-stale-conntrack", "dns",
    f"node-a's conntrack still maps pod-a:{STALE_DNS_SPORT} → 10.96.0.10:53 to {GONE_POD_IP}, a CoreDNS pod "
    "that is gone: a client reusing its source port keeps asking a dead endpoint (kube-proxy should have "
    "flushed UDP entries of removed endpoints)",
    "node-a", "host", FaultFlow("pod-a", "svc/kube-system/kube-dns:53", "udp", 53, sport=STALE_DNS_SPORT),
    plan=_dns_stale_conntrack,
    here="the stale entry needs a CoreDNS endpoint that goes away while a client keeps its port: on a cluster, "
         "query from a fixed port (`dig -b POD_IP#40053`) in a loop, delete the CoreDNS pod it reached, and stop "
         "kube-proxy first so nothing flushes the entry",
))

# -------------------------------------------------------------------- no_listener

_register(Fault(
    "no-listener", "no_listener",
    "nothing listens on pod-b's port 8080 any more (its web server stopped): connections are reset",
    "node-b", "pod-b", WEB_B, plan=_server_down(POD_B),
    here=SERVER_DOWN.format(how="point the Service at a port nothing listens on "
                                "(kubectl -n default patch service web ... targetPort)"),
))

# -------------------------------------------------------------------- link_down

_register(Fault(
    "pod-eth0-down", "link_down",
    "pod-b's eth0 is administratively down",
    "node-b", "pod-b", PING_B, device="eth0", plan=_eth0_down("pod-b"),
))


def _neigh_cmd(p: PeerFacts, mac: str | None = None) -> Cmd:
    return cmd(f"ip neigh replace {p.subnet_base} lladdr {mac or p.vtep_mac} dev flannel.1 nud permanent")


def _flannel_down(f: NodeFacts) -> Plan:
    # the kernel flushes the route and the permanent neighbours with the link: flanneld's triple back
    back = [cmd("ip link set flannel.1 up")]
    for p in f.peers:
        back += [cmd(f"ip route replace {_flannel_route(p)}"), _neigh_cmd(p)]
    return Plan([cmd("ip link set flannel.1 down")], back)


_register(Fault(
    "flannel-down", "link_down",
    "node-b's VXLAN device flannel.1 is down: VXLAN packets from node-a find no tunnel endpoint",
    "node-b", "host", PING_B, device="flannel.1", plan=_flannel_down,
))

# -------------------------------------------------------------------- arp

_register(Fault(
    "neigh-wrong-mac", "arp",
    "node-a's permanent neighbour for 10.244.1.0 on flannel.1 holds a stale VtepMAC, not node-b's",
    "node-a", "host", PING_B, device="flannel.1",
    plan=lambda f: Plan([_neigh_cmd(f.peer(), WRONG_VTEP_MAC)], [_neigh_cmd(f.peer())]),
))

REBOOTED_VTEP_MAC = mac_for("vtep/node-b/rebooted")  # node-b's VtepMAC once flannel.1 was recreated


def _vtep_rebooted(f: NodeFacts) -> Plan:
    # flanneld on the rebooted node rewrites its own side (the kernel may have flushed it with the MAC)
    return Plan([cmd(f"ip link set flannel.1 address {REBOOTED_VTEP_MAC}"), _neigh_cmd(f.peer())],
                [cmd(f"ip link set flannel.1 address {f.vtep_mac}"), _neigh_cmd(f.peer())])


def _inv_vtep_rebooted(inv: Inventory) -> None:
    """node-b's flanneld published its new VtepMAC in its Node annotation (backend-data)."""
    for n in inv.nodes:
        if n.name == B.name:
            n.vtep_mac = REBOOTED_VTEP_MAC


_register(Fault(
    "vtep-mac-stale", "arp",
    "node-b rebooted and its flannel.1 has a new MAC (published in its Node annotation), but node-a's "
    "permanent neighbour 10.244.1.0 and its FDB entry on flannel.1 still hold the old VtepMAC",
    "node-a", "host", PING_B, device="flannel.1",
    plan=_vtep_rebooted, patch_inventory=_inv_vtep_rebooted, acts_on="node-b",
    here="the new VtepMAC must reach the Node annotation (flanneld writes it when it starts) while node-a's "
         "flanneld misses it: that needs the API and both nodes; on a cluster, stop flanneld on node-a, then "
         "reboot node-b",
))


def _neigh_failed(f: NodeFacts) -> Plan:
    ip = f.pod("pod-b").ip
    keys = ("net.ipv4.neigh.cni0.mcast_solicit", "net.ipv4.neigh.cni0.ucast_solicit")
    # Any ARP from pod-b teaches the node its MAC and heals the fault, and pod-b asks for its gateway
    # whenever it sends something: resolve that once, then pin it in pod-b (nothing more to ask).
    return Plan(
        [cmd(f"ping -c 1 -W 1 {f.gateway}", on="pod-b", check=False),
         cmd(f"ip neigh change {f.gateway} dev eth0 nud permanent", on="pod-b"),
         *(cmd(f"sysctl -w {k}=0") for k in keys), cmd(f"ip neigh del {ip} dev cni0", check=False),
         # resolve once now, so the FAILED entry is there for a snapshot before any traffic
         cmd(f"ping -c 1 -W 1 {ip}", check=False)],
        [*(cmd(f"sysctl -w {k}={f.sysctls[k]}") for k in keys), cmd(f"ip neigh del {ip} dev cni0", check=False),
         cmd(f"ip neigh del {f.gateway} dev eth0", on="pod-b", check=False)])


_register(Fault(
    "neigh-failed", "arp",
    "node-b cannot resolve pod-b's MAC: its cni0 neighbour entry for 10.244.1.2 is FAILED "
    "(ARP solicitations on cni0 disabled: net.ipv4.neigh.cni0.mcast_solicit=0)",
    "node-b", "host", PING_B, device="cni0", plan=_neigh_failed,
))

# -------------------------------------------------------------------- fdb


def _fdb(p: PeerFacts, dst: str | None = None, op: str = "append") -> Cmd:
    return cmd(f"bridge fdb {op} {p.vtep_mac} dev flannel.1 dst {dst or p.underlay_ip} self"
               + (" permanent" if op == "append" else ""))


_register(Fault(
    "fdb-missing", "fdb",
    "node-a's flannel.1 FDB entry for node-b's VtepMAC is gone: VXLAN has no VTEP to send to",
    "node-a", "host", PING_B, device="flannel.1",
    plan=lambda f: Plan([_fdb(f.peer(), op="del")], [_fdb(f.peer())]),
))


def _fdb_wrong(f: NodeFacts) -> Plan:
    p = f.peer()
    return Plan([_fdb(p, op="del"), _fdb(p, WRONG_VTEP_DST)],
                [_fdb(p, WRONG_VTEP_DST, op="del"), _fdb(p),
                 # traffic during the fault made the node ARP for the wrong VTEP: forget that FAILED entry too
                 cmd(f"ip neigh del {WRONG_VTEP_DST} dev {f.underlay_dev}", check=False)])


_register(Fault(
    "fdb-wrong-dst", "fdb",
    f"node-a's flannel.1 FDB entry for node-b's VtepMAC points at {WRONG_VTEP_DST}, not node-b's 192.168.56.12",
    "node-a", "host", PING_B, device="flannel.1", plan=_fdb_wrong,
))

# -------------------------------------------------------------------- ip_conflict


def _dup_ip(f: NodeFacts) -> Plan:
    victim, thief = f.pod("pod-b"), f.pod("coredns")
    addr = f"{victim.ip}/{f.pod_prefixlen()}"
    # What node-b learns once coredns answers ARP for the address (a gratuitous ARP, or a race won).
    return Plan([cmd(f"ip addr add {addr} dev eth0", thief.name),
                 cmd(f"ip neigh replace {victim.ip} lladdr {thief.mac} dev cni0 nud reachable")],
                [cmd(f"ip addr del {addr} dev eth0", thief.name),
                 cmd(f"ip neigh del {victim.ip} dev cni0", check=False)])  # the kernel re-learns pod-b's MAC


_register(Fault(
    "duplicate-ip", "ip_conflict",
    "the coredns pod also holds pod-b's IP 10.244.1.2 and won node-b's ARP: traffic for pod-b reaches coredns",
    "node-b", "coredns", WEB_B, device="eth0", plan=_dup_ip,
))

# -------------------------------------------------------------------- ip_forward


def _sysctl_fault(key: str, value: str) -> Callable[[NodeFacts], Plan]:
    return lambda f: Plan([cmd(f"sysctl -w {key}={value}")], [cmd(f"sysctl -w {key}={f.sysctls[key]}")])


_register(Fault(
    "ip-forward-off", "ip_forward",
    "node-b has net.ipv4.ip_forward=0: packets for its pods arrive on flannel.1 and are not routed on",
    "node-b", "host", PING_B, plan=_sysctl_fault("net.ipv4.ip_forward", "0"),
))

# -------------------------------------------------------------------- rp_filter


def _rp_filter(f: NodeFacts) -> Plan:
    route = f"{f.pod('pod-a', local=False).ip}/32 via {f.peer().underlay_ip} dev {f.underlay_dev}"
    key = "net.ipv4.conf.all.rp_filter"
    return Plan([cmd(f"ip route add {route}"), cmd(f"sysctl -w {key}=1")],
                [cmd(f"sysctl -w {key}={f.sysctls[key]}"), cmd(f"ip route del {route}")])


_register(Fault(
    "rp-filter-strict", "rp_filter",
    "node-b has rp_filter=1 and a /32 route back to pod-a via eth0: packets from pod-a arriving on "
    "flannel.1 fail the strict reverse-path check",
    "node-b", "host", PING_B, device="flannel.1", plan=_rp_filter,
))

# -------------------------------------------------------------------- mtu

_register(Fault(
    "mtu-mismatch", "mtu",
    f"node-b's underlay eth0 MTU is 1400 while flannel.1 stays {FLANNEL_MTU}: full-size VXLAN packets "
    f"({FLANNEL_MTU} + 50 bytes) are dropped on arrival",
    "node-b", "host", FaultFlow("pod-a", "pod-b", "icmp", size=1400), device="eth0",
    plan=lambda f: Plan([cmd(f"ip link set {f.underlay_dev} mtu 1400")],
                        [cmd(f"ip link set {f.underlay_dev} mtu {f.underlay_mtu}")]),
))

# -------------------------------------------------------------------- bridge_port


def _veth_detached(f: NodeFacts) -> Plan:
    veth = f.pod("pod-b").host_veth
    return Plan([cmd(f"ip link set {veth} nomaster")],
                [cmd(f"ip link set {veth} master cni0"), cmd(f"bridge link set dev {veth} hairpin on")])


_register(Fault(
    "veth-detached", "bridge_port",
    f"pod-b's host veth {POD_B.host_veth} is not enslaved to cni0 (nomaster): node-b cannot reach pod-b",
    "node-b", "host", PING_B, device=POD_B.host_veth, plan=_veth_detached,
))

# -------------------------------------------------------------------- ipvs (Vagrant only)
# kube-proxy in IPVS mode programs one virtual service per Service port (ClusterIP:port, on
# kube-ipvs0 as a /32) with one real server per endpoint. This kernel has no ip_vs: these run in the
# Vagrant lab (KUBE_PROXY_MODE=ipvs), and tests/unit/test_fault_catalog.py applies their commands
# to ipvsadm fixtures and diagnoses the result. kube-proxy resyncs IPVS (30 s by default), so on a
# cluster a fault holds until then: stop kube-proxy on the node first to keep it.

WEB_VIP = "10.96.0.100"  # the web Service's ClusterIP in every lab (labs/workloads.yaml pins it)
WEB_PORT_SVC = 80


def _web_vs(f: NodeFacts) -> tuple[str, list[str]]:
    vip = f"{f.services.get('default/web', WEB_VIP)}:{WEB_PORT_SVC}"
    reals = f.ipvs.get(f"TCP {vip}")
    if not reals:
        raise NodeError(f"no IPVS virtual service TCP {vip} with real servers on this node "
                        "(`ipvsadm -Ln`): is kube-proxy in IPVS mode, and default/web up?")
    return vip, reals


def _ipvs_no_vs(f: NodeFacts) -> Plan:
    vip, reals = _web_vs(f)
    return Plan([cmd(f"ipvsadm -D -t {vip}")],
                [cmd(f"ipvsadm -A -t {vip} -s rr"), *(cmd(f"ipvsadm -a -t {vip} -r {r} -m -w 1") for r in reals)])


def _ipvs_no_reals(f: NodeFacts) -> Plan:
    vip, reals = _web_vs(f)
    return Plan([cmd(f"ipvsadm -d -t {vip} -r {r}") for r in reals],
                [cmd(f"ipvsadm -a -t {vip} -r {r} -m -w 1") for r in reals])


def _ipvs_weight_zero(f: NodeFacts) -> Plan:
    vip, reals = _web_vs(f)
    return Plan([cmd(f"ipvsadm -e -t {vip} -r {r} -m -w 0") for r in reals],
                [cmd(f"ipvsadm -e -t {vip} -r {r} -m -w 1") for r in reals])


def _ipvs_stale_real(f: NodeFacts) -> Plan:
    vip, reals = _web_vs(f)
    remote = [r for r in reals if ipaddress.ip_address(r.rsplit(":", 1)[0]) in ipaddress.ip_network(f.peer().pod_cidr)]
    old = (remote or reals)[-1]
    gone = f"{_gone_in(f.peer().pod_cidr)}:{old.rsplit(':', 1)[1]}"
    return Plan([cmd(f"ipvsadm -d -t {vip} -r {old}"), cmd(f"ipvsadm -a -t {vip} -r {gone} -m -w 1")],
                [cmd(f"ipvsadm -d -t {vip} -r {gone}"), cmd(f"ipvsadm -a -t {vip} -r {old} -m -w 1")])


def _gone_in(cidr: str) -> str:
    """An address of the peer's pod subnet that no pod holds yet (host-local hands them out in order)."""
    return str(ipaddress.ip_network(cidr)[250])


def _ipvs_vip_missing(f: NodeFacts) -> Plan:
    vip = _web_vs(f)[0].rsplit(":", 1)[0]  # refuses a node without IPVS, as the other IPVS faults do
    return Plan([cmd(f"ip addr del {vip}/32 dev kube-ipvs0")], [cmd(f"ip addr add {vip}/32 dev kube-ipvs0")])


WEB_FLOW = FaultFlow("pod-a", "svc/default/web:80", "tcp", 80)
VAGRANT = ("vagrant",)

_register(Fault(
    "ipvs-no-virtual-service", "ipvs",
    "node-a has no IPVS virtual service for default/web (10.96.0.100:80), though the address is still on "
    "kube-ipvs0: the node's own stack refuses the connection",
    "node-a", "host", WEB_FLOW, plan=_ipvs_no_vs, labs=VAGRANT,
))
_register(Fault(
    "ipvs-no-real-servers", "ipvs",
    "node-a's virtual service for default/web has no real servers although the Service has endpoints: "
    "IPVS answers ICMP port unreachable",
    "node-a", "host", WEB_FLOW, plan=_ipvs_no_reals, labs=VAGRANT,
))
_register(Fault(
    "ipvs-weight-zero", "ipvs",
    "every real server of default/web on node-a has weight 0: IPVS schedules nothing and refuses like none",
    "node-a", "host", WEB_FLOW, plan=_ipvs_weight_zero, labs=VAGRANT,
))
_register(Fault(
    "ipvs-stale-real-server", "ipvs",
    f"node-a still sends half of default/web's connections to {_gone_in(B.pod_cidr)}:8080, a real server no pod holds "
    "(the endpoint on node-b was replaced): those connections go nowhere",
    "node-a", "host", WEB_FLOW, plan=_ipvs_stale_real, labs=VAGRANT,
))
_register(Fault(
    "ipvs-vip-missing", "ipvs",
    "10.96.0.100/32 is missing from node-a's kube-ipvs0: pods' packets to the ClusterIP are not local, "
    "IPVS never sees them, and node-a routes them away",
    "node-a", "host", WEB_FLOW, device="kube-ipvs0", plan=_ipvs_vip_missing, labs=VAGRANT,
))
