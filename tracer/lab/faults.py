"""The fault catalog: one small entry per way a packet between two pods dies.

Each Fault names DESIGN.md's `cause`, where a diagnoser should blame it (`node`, `location` = a pod
name or "host", `device`), and a `flow` it really breaks. `apply` changes exactly one thing in the
running lab (saving what it needs to undo in `saved`); `revert` restores exactly what `up` built.
The lab test proves every entry: the flow works, breaks after inject, and works again after clear.

Inject and clear through the lab (state file, lock): `Lab.load(name).inject("fdb-missing")`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..bundle import Inventory
from ..checks.causes import Cause
from . import desired
from .topology import (
    FLANNEL_MTU,
    UNDERLAY_MTU,
    DNS_SERVICE_IP,
    VXLAN_PORT,
    mac_for,
    node,
    pod,
)

if TYPE_CHECKING:  # pragma: no cover
    from .build import BuildCtx
    from .core import Lab


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


Step = Callable[["BuildCtx", dict], None]


@dataclass
class Fault:
    name: str
    cause: Cause  # the catalog writes the name; a str enum, so JSON prints it
    summary: str
    node: str  # where a diagnoser should blame it
    location: str  # pod name, or "host"
    flow: FaultFlow
    apply: Step = field(repr=False, compare=False)
    revert: Step = field(repr=False, compare=False)
    device: str | None = None  # the interface to blame, when there is one
    patch_inventory: Callable[[Inventory], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.cause = Cause(self.cause)  # a misspelt cause fails when the catalog is built

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cause": self.cause, "node": self.node, "location": self.location,
                "device": self.device, "summary": self.summary,
                "flow": {"src": self.flow.src, "dst": self.flow.dst, "proto": self.flow.proto,
                         "port": self.flow.port, "size": self.flow.size}}


FAULTS: dict[str, Fault] = {}


def _register(f: Fault) -> None:
    assert f.name not in FAULTS, f.name
    FAULTS[f.name] = f


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


# -------------------------------------------------------------------- pod_route

def _pod_routes_a() -> list:
    return [r for r in desired.pod_routes(pod("pod-a")) if not r.kernel]


def _del_pod_routes(ctx: "BuildCtx", saved: dict) -> None:
    for r in _pod_routes_a():
        _b().del_route(ctx, "pod-a", r)


def _add_pod_routes(ctx: "BuildCtx", saved: dict) -> None:
    for r in _pod_routes_a():
        _b().add_route(ctx, "pod-a", r)


_register(Fault(
    "pod-route-missing", "pod_route",
    "pod-a has lost its default and 10.244.0.0/16 routes: only its own /24 is reachable",
    "node-a", "pod-a", PING_B, device="eth0",
    apply=_del_pod_routes, revert=_add_pod_routes,
))

# -------------------------------------------------------------------- host_route

_register(Fault(
    "host-route-missing", "host_route",
    "node-a has no route to node-b's pod CIDR 10.244.1.0/24 (flannel's route via flannel.1 deleted)",
    "node-a", "host", PING_B, device="flannel.1",
    apply=lambda ctx, saved: _b().del_route(ctx, "node-a", desired.flannel_route(A, B)),
    revert=lambda ctx, saved: _b().add_route(ctx, "node-a", desired.flannel_route(A, B)),
))


def _cni_route(n):
    return next(r for r in desired.node_routes(n) if r.dev == "cni0")


_register(Fault(
    "cni-route-missing", "host_route",
    "node-b has lost the connected route to its own pod subnet 10.244.1.0/24 on cni0",
    "node-b", "host", PING_B, device="cni0",
    apply=lambda ctx, saved: _b().del_route(ctx, "node-b", _cni_route(B)),
    revert=lambda ctx, saved: _b().add_route(ctx, "node-b", _cni_route(B)),
))

# -------------------------------------------------------------------- iptables

def _pod_eth0_down(p) -> Step:
    return lambda ctx, saved: _b().set_link(ctx, p.name, "eth0", state="down")


def _pod_eth0_up(p) -> Step:
    def step(ctx: "BuildCtx", saved: dict) -> None:
        b = _b()
        b.set_link(ctx, p.name, "eth0", state="up")
        for r in desired.pod_routes(p):  # the kernel dropped the gateway routes with the link
            if not r.kernel:
                b.add_route(ctx, p.name, r)
    return step


def _first_rule(short: str, chain: str, rule: str) -> tuple[Step, Step]:
    """A rule inserted first in a filter chain (`iptables -I CHAIN 1 ...`) and its exact deletion."""
    def apply(ctx: "BuildCtx", saved: dict) -> None:
        _b().iptables(ctx, short, "filter", [f"-I {chain} 1 {rule}"], f"iptables -I {chain} 1 {rule}")

    def revert(ctx: "BuildCtx", saved: dict) -> None:
        _b().iptables(ctx, short, "filter", [f"-D {chain} {rule}"], f"iptables -D {chain} {rule}")
    return apply, revert


_apply, _revert = _first_rule("node-b", "FORWARD", f"-d {B.pod_cidr} -j DROP")
_register(Fault(
    "forward-drop", "iptables",
    "a DROP rule for node-b's pod CIDR sits first in node-b's filter FORWARD chain",
    "node-b", "host", PING_B, apply=_apply, revert=_revert,
))

_apply, _revert = _first_rule("node-b", "INPUT", f"-p udp -m udp --dport {VXLAN_PORT} -j DROP")
_register(Fault(
    "vxlan-blocked", "iptables",
    f"node-b's INPUT chain drops VXLAN (UDP {VXLAN_PORT}) from the other node: a host firewall gap",
    "node-b", "host", PING_B, device="eth0", apply=_apply, revert=_revert,
))


def _no_endpoints(svc: str):
    """kube-proxy on both nodes rewrites svc ("ns/name") as having no endpoints (a REJECT)."""
    def step(ctx: "BuildCtx", saved: dict) -> None:
        for n in (A, B):
            _b().write_service_rules(ctx, n, frozenset({svc}))
    return step


def _endpoints_back(ctx: "BuildCtx", saved: dict) -> None:
    for n in (A, B):
        _b().write_service_rules(ctx, n, frozenset())


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
    apply=_no_endpoints("default/web"), revert=_endpoints_back, patch_inventory=_inv_no_endpoints("default/web"),
))

GONE_POD_IP = "10.244.1.9"  # a web pod that was deleted: no namespace has this address any more
WEB_SVC = FaultFlow("pod-a", "svc/default/web:80", "tcp", 80)


def _stale_endpoint(ctx: "BuildCtx", saved: dict) -> None:
    for n in (A, B):
        _b().write_service_rules(ctx, n, frozenset(), {"default/web": [GONE_POD_IP]})


def _stale_endpoint_clear(ctx: "BuildCtx", saved: dict) -> None:
    _endpoints_back(ctx, saved)
    _b().del_neigh(ctx, "node-b", "cni0", GONE_POD_IP)  # the FAILED entry the fault's traffic left


_register(Fault(
    "svc-stale-endpoint", "iptables",
    f"kube-proxy on both nodes still DNATs default/web to {GONE_POD_IP}:8080, a pod that is gone "
    "(the API already lists pod-a2 and pod-b): connections go nowhere",
    "node-a", "host", WEB_SVC, apply=_stale_endpoint, revert=_stale_endpoint_clear,
))

_apply, _revert = _first_rule("node-a", "FORWARD", f"-s {B.pod_cidr} -p tcp -m tcp --sport 8080 -j DROP")
_register(Fault(
    "svc-reply-dropped", "iptables",
    "node-a's FORWARD chain drops the web endpoints' answers from node-b's pods (TCP source port "
    "8080): the request arrives, the reply never makes it home",
    "node-a", "host", WEB_B, apply=_apply, revert=_revert,
))

# -------------------------------------------------------------------- dns

_apply, _revert = _first_rule("node-b", "FORWARD", f"-d {COREDNS.ip}/32 -p udp -m udp --dport 53 -j DROP")
_register(Fault(
    "dns-blocked", "dns",
    "node-b's FORWARD chain drops UDP 53 towards the coredns pod: cluster DNS queries time out",
    "node-b", "host", DNS_UDP, apply=_apply, revert=_revert,
))


def _stop_server(p):
    def step(ctx: "BuildCtx", saved: dict) -> None:
        from . import processes
        ctx.do(f"{ctx.ns(p.name)}: stopped the {p.server} server", processes.stop, ctx.names, p)
    return step


def _start_server(p):
    def step(ctx: "BuildCtx", saved: dict) -> None:
        from . import processes
        ctx.do(f"{ctx.ns(p.name)}: started the {p.server} server", processes.start, ctx.names, p)
    return step


_register(Fault(
    "coredns-down", "dns",
    "the DNS server in the coredns pod is not running: queries to 10.96.0.10 get ICMP port unreachable",
    "node-b", "coredns", DNS_UDP,
    apply=_stop_server(COREDNS), revert=_start_server(COREDNS),
))

_register(Fault(
    "dns-no-endpoints", "dns",
    "kube-dns has no ready endpoints (CoreDNS is not ready): kube-proxy rejects every query to "
    "10.96.0.10 on both nodes",
    "node-a", "host", DNS_UDP,
    apply=_no_endpoints("kube-system/kube-dns"), revert=_endpoints_back,
    patch_inventory=_inv_no_endpoints("kube-system/kube-dns"),
))


_register(Fault(
    "dns-pod-down", "link_down",
    "the coredns pod's eth0 is down: queries DNATed to it never arrive",
    "node-b", "coredns", DNS_UDP, device="eth0",
    apply=_pod_eth0_down(COREDNS), revert=_pod_eth0_up(COREDNS),
))

_apply, _revert = _first_rule("node-a", "FORWARD", f"-s {COREDNS.ip}/32 -p udp -m udp --sport 53 -j DROP")
_register(Fault(
    "dns-reply-dropped", "dns",
    "node-a's FORWARD chain drops the answers coming back from coredns (UDP source port 53): queries "
    "arrive and are answered, lookups still time out",
    "node-a", "host", DNS_UDP, apply=_apply, revert=_revert,
))

STALE_DNS_SPORT = 40053  # the client's fixed source port (many resolvers and sidecars reuse one)


def _ct_tuple() -> list[str]:
    return ["-p", "udp", "-s", POD_A.ip, "-d", DNS_SERVICE_IP, "--sport", str(STALE_DNS_SPORT), "--dport", "53"]


def _stale_dns_entry(ctx: "BuildCtx", saved: dict) -> None:
    """The way it happens: kube-dns's endpoint was a pod (here GONE_POD_IP) when the client sent a
    query from its fixed port, creating a conntrack entry DNATed to it; the pod went, kube-proxy
    rewrote the rules but did not flush the entry, and every query from that port, coming back
    before the entry times out, refreshes it."""
    from . import nsutil
    from ..netns import run_in
    ns = ctx.ns("node-a")
    argv = ["conntrack", "-D", *_ct_tuple()]  # an earlier healthy entry for the port would be reused
    ctx.do(f"{ns}: {' '.join(argv)}", lambda: nsutil.run(ns, argv, check=False))
    for n in (A, B):
        _b().write_service_rules(ctx, n, frozenset(), {"kube-system/kube-dns": [GONE_POD_IP]})

    def query() -> None:
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((POD_A.ip, STALE_DNS_SPORT))
            import dns.message
            s.sendto(dns.message.make_query(".", "A").to_wire(), (DNS_SERVICE_IP, 53))
        finally:
            s.close()
    ctx.do(f"{ctx.ns('pod-a')}: one DNS query from port {STALE_DNS_SPORT} (conntrack DNATs it to {GONE_POD_IP})",
           run_in, ctx.ns("pod-a"), query)
    for n in (A, B):
        _b().write_service_rules(ctx, n, frozenset())  # kube-proxy catches up, without flushing conntrack
    ctx.do(f"{ns}: conntrack -L (the entry is there)", lambda: nsutil.run(ns, ["conntrack", "-L", *_ct_tuple()]))


def _stale_dns_entry_clear(ctx: "BuildCtx", saved: dict) -> None:
    from . import nsutil
    ns = ctx.ns("node-a")
    argv = ["conntrack", "-D", *_ct_tuple()]
    ctx.do(f"{ns}: {' '.join(argv)}", lambda: nsutil.run(ns, argv, check=False))
    _b().del_neigh(ctx, "node-b", "cni0", GONE_POD_IP)


_register(Fault(
    "dns-stale-conntrack", "dns",
    f"node-a's conntrack still maps pod-a:{STALE_DNS_SPORT} → 10.96.0.10:53 to {GONE_POD_IP}, a CoreDNS pod "
    "that is gone: a client reusing its source port keeps asking a dead endpoint (kube-proxy should have "
    "flushed UDP entries of removed endpoints)",
    "node-a", "host", FaultFlow("pod-a", "svc/kube-system/kube-dns:53", "udp", 53, sport=STALE_DNS_SPORT),
    apply=_stale_dns_entry, revert=_stale_dns_entry_clear,
))

# -------------------------------------------------------------------- no_listener

_register(Fault(
    "no-listener", "no_listener",
    "nothing listens on pod-b's port 8080 any more (its web server stopped): connections are reset",
    "node-b", "pod-b", WEB_B,
    apply=_stop_server(POD_B), revert=_start_server(POD_B),
))

# -------------------------------------------------------------------- link_down


_register(Fault(
    "pod-eth0-down", "link_down",
    "pod-b's eth0 is administratively down",
    "node-b", "pod-b", PING_B, device="eth0",
    apply=_pod_eth0_down(POD_B), revert=_pod_eth0_up(POD_B),
))


def _flannel_b_up(ctx: "BuildCtx", saved: dict) -> None:
    b = _b()
    b.set_link(ctx, "node-b", "flannel.1", state="up")
    for remote in (A,):  # the kernel flushed the route and the permanent neighbour with the link
        b.add_route(ctx, "node-b", desired.flannel_route(B, remote))
        b.set_neigh(ctx, "node-b", "flannel.1", remote.subnet_base, remote.vtep_mac)


_register(Fault(
    "flannel-down", "link_down",
    "node-b's VXLAN device flannel.1 is down: VXLAN packets from node-a find no tunnel endpoint",
    "node-b", "host", PING_B, device="flannel.1",
    apply=lambda ctx, saved: _b().set_link(ctx, "node-b", "flannel.1", state="down"),
    revert=_flannel_b_up,
))

# -------------------------------------------------------------------- arp

_register(Fault(
    "neigh-wrong-mac", "arp",
    "node-a's permanent neighbour for 10.244.1.0 on flannel.1 holds a stale VtepMAC, not node-b's",
    "node-a", "host", PING_B, device="flannel.1",
    apply=lambda ctx, saved: _b().set_neigh(ctx, "node-a", "flannel.1", B.subnet_base, WRONG_VTEP_MAC),
    revert=lambda ctx, saved: _b().set_neigh(ctx, "node-a", "flannel.1", B.subnet_base, B.vtep_mac),
))

REBOOTED_VTEP_MAC = mac_for("vtep/node-b/rebooted")  # node-b's VtepMAC once flannel.1 was recreated


def _vtep_rebooted(ctx: "BuildCtx", saved: dict) -> None:
    b = _b()
    b.set_link(ctx, "node-b", "flannel.1", address=REBOOTED_VTEP_MAC)
    # flanneld on the rebooted node rewrites its own side (the kernel may have flushed it with the MAC)
    b.set_neigh(ctx, "node-b", "flannel.1", A.subnet_base, A.vtep_mac)


def _vtep_back(ctx: "BuildCtx", saved: dict) -> None:
    b = _b()
    b.set_link(ctx, "node-b", "flannel.1", address=B.vtep_mac)
    b.set_neigh(ctx, "node-b", "flannel.1", A.subnet_base, A.vtep_mac)


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
    apply=_vtep_rebooted, revert=_vtep_back, patch_inventory=_inv_vtep_rebooted,
))

SOLICIT = {"net.ipv4.neigh/cni0/mcast_solicit": "0", "net.ipv4.neigh/cni0/ucast_solicit": "0"}


def _neigh_failed(ctx: "BuildCtx", saved: dict) -> None:
    b = _b()
    saved["sysctls"] = b.sysctl(ctx, "node-b", SOLICIT)
    b.del_neigh(ctx, "node-b", "cni0", POD_B.ip)
    if not ctx.dry:  # resolve once now, so the FAILED entry is there for a snapshot before any traffic
        from .probe import send_udp
        send_udp(ctx.ns("node-b"), POD_B.ip)


def _neigh_failed_clear(ctx: "BuildCtx", saved: dict) -> None:
    b = _b()
    old = {k: v for k, v in (saved.get("sysctls") or {}).items() if v is not None}
    b.sysctl(ctx, "node-b", old or {k: "3" for k in SOLICIT})
    b.del_neigh(ctx, "node-b", "cni0", POD_B.ip)


_register(Fault(
    "neigh-failed", "arp",
    "node-b cannot resolve pod-b's MAC: its cni0 neighbour entry for 10.244.1.2 is FAILED "
    "(ARP solicitations on cni0 disabled: net.ipv4.neigh.cni0.mcast_solicit=0)",
    "node-b", "host", PING_B, device="cni0",
    apply=_neigh_failed, revert=_neigh_failed_clear,
))

# -------------------------------------------------------------------- fdb

_register(Fault(
    "fdb-missing", "fdb",
    "node-a's flannel.1 FDB entry for node-b's VtepMAC is gone: VXLAN has no VTEP to send to",
    "node-a", "host", PING_B, device="flannel.1",
    apply=lambda ctx, saved: _b().del_fdb(ctx, "node-a", "flannel.1", B.vtep_mac, B.underlay_ip),
    revert=lambda ctx, saved: _b().add_fdb(ctx, "node-a", "flannel.1", B.vtep_mac, B.underlay_ip),
))


def _fdb_wrong(ctx: "BuildCtx", saved: dict) -> None:
    _b().del_fdb(ctx, "node-a", "flannel.1", B.vtep_mac, B.underlay_ip)
    _b().add_fdb(ctx, "node-a", "flannel.1", B.vtep_mac, WRONG_VTEP_DST)


def _fdb_right(ctx: "BuildCtx", saved: dict) -> None:
    _b().del_fdb(ctx, "node-a", "flannel.1", B.vtep_mac, WRONG_VTEP_DST)
    _b().add_fdb(ctx, "node-a", "flannel.1", B.vtep_mac, B.underlay_ip)
    # traffic during the fault made node-a ARP for the wrong VTEP: forget that FAILED entry too
    _b().del_neigh(ctx, "node-a", "eth0", WRONG_VTEP_DST)


_register(Fault(
    "fdb-wrong-dst", "fdb",
    f"node-a's flannel.1 FDB entry for node-b's VtepMAC points at {WRONG_VTEP_DST}, not node-b's 192.168.56.12",
    "node-a", "host", PING_B, device="flannel.1",
    apply=_fdb_wrong, revert=_fdb_right,
))

# -------------------------------------------------------------------- ip_conflict


def _dup_ip(ctx: "BuildCtx", saved: dict) -> None:
    b = _b()
    b.add_addr(ctx, "coredns", "eth0", f"{POD_B.ip}/24")
    # What node-b learns once coredns answers ARP for the address (a gratuitous ARP, or a race won).
    b.set_neigh(ctx, "node-b", "cni0", POD_B.ip, COREDNS.mac, state=b.NUD_REACHABLE)


def _dup_ip_clear(ctx: "BuildCtx", saved: dict) -> None:
    b = _b()
    b.del_addr(ctx, "coredns", "eth0", f"{POD_B.ip}/24")
    b.del_neigh(ctx, "node-b", "cni0", POD_B.ip)  # the kernel re-learns pod-b's MAC


_register(Fault(
    "duplicate-ip", "ip_conflict",
    "the coredns pod also holds pod-b's IP 10.244.1.2 and won node-b's ARP: traffic for pod-b reaches coredns",
    "node-b", "coredns", WEB_B, device="eth0",
    apply=_dup_ip, revert=_dup_ip_clear,
))

# -------------------------------------------------------------------- ip_forward


def _sysctl_fault(short: str, values: dict[str, str], default: dict[str, str]):
    def apply(ctx: "BuildCtx", saved: dict) -> None:
        saved["sysctls"] = _b().sysctl(ctx, short, values)

    def revert(ctx: "BuildCtx", saved: dict) -> None:
        old = {k: v for k, v in (saved.get("sysctls") or {}).items() if v is not None}
        _b().sysctl(ctx, short, old or default)
    return apply, revert


_fwd_apply, _fwd_revert = _sysctl_fault("node-b", {"net.ipv4.ip_forward": "0"}, {"net.ipv4.ip_forward": "1"})
_register(Fault(
    "ip-forward-off", "ip_forward",
    "node-b has net.ipv4.ip_forward=0: packets for its pods arrive on flannel.1 and are not routed on",
    "node-b", "host", PING_B,
    apply=_fwd_apply, revert=_fwd_revert,
))

# -------------------------------------------------------------------- rp_filter


def _asym_route():
    b = _b()
    return b.RouteSpec(f"{pod('pod-a').ip}/32", "eth0", gateway=A.underlay_ip)


_rp_apply_sysctl, _rp_revert_sysctl = _sysctl_fault(
    "node-b", {"net.ipv4.conf.all.rp_filter": "1"}, {"net.ipv4.conf.all.rp_filter": "0"})


def _rp_apply(ctx: "BuildCtx", saved: dict) -> None:
    _b().add_route(ctx, "node-b", _asym_route(), replace=False)
    _rp_apply_sysctl(ctx, saved)


def _rp_revert(ctx: "BuildCtx", saved: dict) -> None:
    _rp_revert_sysctl(ctx, saved)
    _b().del_route(ctx, "node-b", _asym_route())


_register(Fault(
    "rp-filter-strict", "rp_filter",
    "node-b has rp_filter=1 and a /32 route back to pod-a via eth0: packets from pod-a arriving on "
    "flannel.1 fail the strict reverse-path check",
    "node-b", "host", PING_B, device="flannel.1",
    apply=_rp_apply, revert=_rp_revert,
))

# -------------------------------------------------------------------- mtu

_register(Fault(
    "mtu-mismatch", "mtu",
    f"node-b's underlay eth0 MTU is 1400 while flannel.1 stays {FLANNEL_MTU}: full-size VXLAN packets "
    f"({FLANNEL_MTU} + 50 bytes) are dropped on arrival",
    "node-b", "host", FaultFlow("pod-a", "pod-b", "icmp", size=1400), device="eth0",
    apply=lambda ctx, saved: _b().set_link(ctx, "node-b", "eth0", mtu=1400),
    revert=lambda ctx, saved: _b().set_link(ctx, "node-b", "eth0", mtu=UNDERLAY_MTU),
))

# -------------------------------------------------------------------- bridge_port


def _reattach(ctx: "BuildCtx", saved: dict) -> None:
    _b().ensure_link(ctx, "node-b", POD_B.host_veth, master="cni0", hairpin=True)


_register(Fault(
    "veth-detached", "bridge_port",
    f"pod-b's host veth {POD_B.host_veth} is not enslaved to cni0 (nomaster): node-b cannot reach pod-b",
    "node-b", "host", PING_B, device=POD_B.host_veth,
    apply=lambda ctx, saved: _b().set_link(ctx, "node-b", POD_B.host_veth, master=0),
    revert=_reattach,
))
