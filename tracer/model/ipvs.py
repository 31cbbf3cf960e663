"""kube-proxy's IPVS mode, as the walk and the checks read it from a snapshot.

In IPVS mode kube-proxy binds every ClusterIP to the dummy device `kube-ipvs0`, so the node
routes it as local, and programs one IPVS virtual service per ClusterIP:port with one real
server per endpoint, forwarding method Masq (DNAT). The kernel's IPVS hooks schedule a new
connection at LOCAL_IN (packets from pods, which must be addressed to a local address) or at
LOCAL_OUT (packets from the node itself, local address or not), send the DNATed packet out
through LOCAL_OUT and POSTROUTING, and undo the DNAT on the reply at FORWARD or LOCAL_IN.

Objects are rendered the way `ipvsadm -Sn` prints them: that text is also what `ipvsadm` takes
as arguments, so users can paste it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bundle import Bundle, Host, IpvsDest, IpvsService, ServiceInfo, ServicePort

KUBE_IPVS_DEVICE = "kube-ipvs0"
# Dummy devices that hold the same service address on every node by design: no node owns such
# an address, and its being on many nodes is no conflict.
SHARED_VIP_DEVICES = frozenset({KUBE_IPVS_DEVICE, "nodelocaldns"})

_SAVE_PROTO = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}
_SAVE_FORWARD = {"Masq": "-m", "Route": "-g", "Tunnel": "-i"}
# How the kernel's schedulers use weights (net/netfilter/ipvs/ip_vs_*.c): rr, lc and dh only
# skip weight 0; fo (and ovf, until that server overflows) take the highest weight; the rest
# split connections in proportion to weight in the long run.
_UNWEIGHTED = {"rr", "lc", "dh"}
_HIGHEST_WEIGHT = {"fo", "ovf"}
IPVS_PROTOS = ("tcp", "udp", "sctp")  # IPVS schedules no ICMP: a VIP on kube-ipvs0 answers ping itself


def runs_ipvs(host: Host) -> bool:
    """kube-proxy runs in IPVS mode here: it made kube-ipvs0 or programmed virtual services."""
    return host.kind != "pod" and (bool(host.ipvs) or host.link(KUBE_IPVS_DEVICE) is not None)


def virtual_ips(host: Host) -> list[str]:
    """The addresses bound to kube-ipvs0, in the order `ip a` lists them."""
    return [a.address for a in host.addrs if a.ifname == KUBE_IPVS_DEVICE]


def service_option(svc: IpvsService) -> str:
    """The `-t 10.96.0.10:53` part that names a virtual service in every ipvsadm command."""
    if svc.fwmark is not None:
        return f"-f {svc.fwmark}"
    return f"{_SAVE_PROTO.get(svc.proto.upper(), '-t')} {svc.address}:{svc.port}"


def service_line(svc: IpvsService) -> str:
    """The virtual service as `ipvsadm -Sn` prints it: `-A -t 10.96.0.10:53 -s rr`."""
    return f"-A {service_option(svc)} -s {svc.scheduler}"


def dest_line(svc: IpvsService, dest: IpvsDest) -> str:
    """A real server as `ipvsadm -Sn` prints it: `-a -t 10.96.0.10:53 -r 10.244.1.3:53 -m -w 1`."""
    return (f"-a {service_option(svc)} -r {dest.address}:{dest.port} "
            f"{_SAVE_FORWARD.get(dest.forward, '-m')} -w {dest.weight}")


def service_name(svc: IpvsService) -> str:
    """`TCP 10.96.0.10:53`, as people say it."""
    return f"FWM {svc.fwmark}" if svc.fwmark is not None else f"{svc.proto.upper()} {svc.address}:{svc.port}"


@dataclass
class Pick:
    """A real server a new connection can go to, and the share of connections it gets."""

    dest: IpvsDest
    share: float


def picks(svc: IpvsService) -> list[Pick]:
    """Where the scheduler can send a new connection. IPVS never picks a weight-0 real server."""
    usable = [d for d in svc.dests if d.weight > 0]
    if not usable:
        return []
    if svc.scheduler in _HIGHEST_WEIGHT:
        top = max(d.weight for d in usable)
        usable = [next(d for d in usable if d.weight == top)]
    if svc.scheduler in _UNWEIGHTED or svc.scheduler in _HIGHEST_WEIGHT:
        return [Pick(d, 1 / len(usable)) for d in usable]
    total = sum(d.weight for d in usable)
    return [Pick(d, d.weight / total) for d in usable]


class IpvsTable:
    """One node's virtual services, looked up the way ip_vs_service_find does."""

    def __init__(self, host: Host):
        self.vips = set(virtual_ips(host))
        self._by_address = {(s.proto.upper(), s.address, s.port): s for s in host.ipvs if s.fwmark is None}
        self._by_fwmark = {s.fwmark: s for s in host.ipvs if s.fwmark is not None}

    def service_for(self, proto: str, dst: str, dport: int | None, mark: int = 0) -> IpvsService | None:
        """The virtual service a packet hits; fwmark services are looked up first, as the kernel does."""
        if proto.lower() not in IPVS_PROTOS:
            return None
        return (self._by_fwmark.get(mark) if mark else None) or self._by_address.get((proto.upper(), dst, dport))

    def ports_of(self, proto: str, address: str) -> list[int]:
        """Ports IPVS serves on `address` for `proto`: what a missing port's neighbours are."""
        return sorted(p for (pr, a, p), _ in self._by_address.items() if pr == proto.upper() and a == address)


def live_addresses(bundle: Bundle) -> set[str] | None:
    """Addresses a real server may have: pod IPs, and node addresses for host-network endpoints
    (the API server). None when the snapshot knows no pods, so nothing can be called stale."""
    inv = bundle.inventory
    pods = {p.ip for p in inv.pods if p.ip} if inv else set()
    pods |= {a.address for h in bundle.hosts if h.kind == "pod" for a in h.addrs if not a.address.startswith("127.")}
    if not pods:
        return None
    nodes = {a.address for h in bundle.hosts if h.kind != "pod" for a in h.addrs
             if a.ifname not in SHARED_VIP_DEVICES and not a.address.startswith("127.")}
    nodes |= {n.underlay_ip for n in inv.nodes if n.underlay_ip} if inv else set()
    return pods | nodes


def kube_service(bundle: Bundle, svc: IpvsService) -> tuple[ServiceInfo, ServicePort | None] | None:
    """The Service (from the inventory) a virtual service stands for, and the port it serves."""
    inv = bundle.inventory
    info = next((s for s in inv.services if svc.address and s.cluster_ip == svc.address), None) if inv else None
    if info is None:
        return None
    port = next((p for p in info.ports if p.protocol.upper() == svc.proto.upper() and p.port == svc.port), None)
    return info, port
