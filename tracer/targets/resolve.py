"""Turn what the user typed (pod name, IP, svc/<ns>/<name>[:port]) into a place in a bundle."""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass

from ..bundle import Bundle, Host, PodInfo, ServiceInfo, ServicePort
from ..errors import UsageError
from ..model.ipvs import SHARED_VIP_DEVICES

SVC_COMMENT = re.compile(r"^(?P<ns>[^/\s]+)/(?P<name>[^:\s]+):?(?P<port>\S*) cluster IP$")


@dataclass
class Endpoint:
    text: str  # as typed
    kind: str  # pod, ip, service
    ip: str
    host: Host | None = None  # the namespace that owns the IP (pods, nodes)
    port: int | None = None
    proto: str | None = None  # tcp/udp for a service port
    service: ServiceInfo | None = None
    pod: PodInfo | None = None  # the API's (or inventory's) pod, also when its namespace is on another node
    node: str | None = None  # the node it lives on, when known

    @property
    def name(self) -> str:
        if self.service:
            return f"svc/{self.service.namespace}/{self.service.name}"
        if self.host:
            return self.host.name
        return self.pod.name if self.pod else self.ip


def is_ip(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False


def services(bundle: Bundle) -> list[ServiceInfo]:
    """Services from the inventory, else read back from kube-proxy's KUBE-SERVICES comments."""
    if bundle.inventory and bundle.inventory.services:
        return bundle.inventory.services
    found: dict[tuple[str, str], ServiceInfo] = {}
    for host in bundle.hosts:
        for line in _kube_services_lines(host.iptables_save):
            if "-A KUBE-SERVICES" not in line or "cluster IP" not in line:
                continue
            _scan_service_rule(line, found)
    return list(found.values())


def _kube_services_lines(saves: dict) -> list[str]:
    """Every rule line of a host's rulesets; of a big live one (netfilter/live.py), only its
    KUBE-SERVICES chains, read per chain rather than 80,000 rules."""
    from ..netfilter.live import LiveSaves

    live = saves.live if isinstance(saves, LiveSaves) else {}
    lines = [line for b in dict.keys(saves) if b not in live for line in dict.__getitem__(saves, b).splitlines()]
    for rules in live.values():
        for table in rules.tables:
            lines += rules.chain_lines(table, "KUBE-SERVICES")
    return lines


def _scan_service_rule(line: str, found: dict) -> None:
    try:
        toks = shlex.split(line.split("] ", 1)[-1] if line.startswith("[") else line)
    except ValueError:
        return
    opt = {toks[i]: toks[i + 1] for i in range(len(toks) - 1) if toks[i].startswith("-")}
    m = SVC_COMMENT.match(opt.get("--comment", ""))
    if not m or "-d" not in opt:
        return
    svc = found.setdefault((m["ns"], m["name"]), ServiceInfo(name=m["name"], namespace=m["ns"],
                                                             cluster_ip=opt["-d"].split("/")[0]))
    if "--dport" in opt:
        svc.ports.append(ServicePort(name=m["port"], port=int(opt["--dport"]), protocol=opt.get("-p", "tcp").upper()))


def find_host(bundle: Bundle, name: str) -> Host | None:
    if "/" in name:  # <namespace>/<pod>
        ns, _, pod = name.partition("/")
        return next((h for h in bundle.hosts if h.name == pod and h.namespace in (ns, None)), None)
    return bundle.host(name)


def owner_of(bundle: Bundle, ip: str) -> Host | None:
    # A ClusterIP on kube-ipvs0 is every node's and none's: the packet is meant for a Service.
    owners = [h for h in bundle.hosts for a in h.addrs if a.address == ip and a.ifname not in SHARED_VIP_DEVICES]
    pods = [h for h in owners if h.kind == "pod"]
    return (pods or owners or [None])[0]


def resolve(bundle: Bundle, text: str, hint: str = "") -> Endpoint:
    """SRC/DST as typed: `[ns/]pod`, `svc/ns/name[:port]`, `node/NAME`, or an IP. A pod or node this
    snapshot does not hold (another node's) is resolved from the inventory (the API's facts)."""
    text = text.strip()
    inv = bundle.inventory
    if text.startswith("svc/"):
        return _resolve_service(bundle, text)
    if text.startswith("node/"):
        return _resolve_node(bundle, text)
    if is_ip(text):
        for svc in services(bundle):
            if svc.cluster_ip == text:
                return Endpoint(text, "service", text, service=svc)
        host = owner_of(bundle, text)
        pod = inv.pod_by_ip(text) if inv else None
        if host is None and pod is not None:
            return Endpoint(text, "pod", text, pod=pod, node=pod.node)
        return Endpoint(text, "ip", text, host=host, node=host.node if host else _node_by_cidr(bundle, text))
    host = find_host(bundle, text)
    if host is None:
        pod = _inventory_pod(bundle, text)
        if pod is not None:
            if not pod.ip:
                raise UsageError(f"pod {pod.namespace}/{pod.name} has no IP yet (phase {pod.phase or 'unknown'})")
            return Endpoint(text, "pod", pod.ip, pod=pod, node=pod.node)
        pods = ", ".join(h.name for h in bundle.hosts if h.kind == "pod") or "none"
        raise UsageError(f"unknown target '{text}': not a pod in the snapshot (pods: {pods}), an IPv4 "
                         f"address, node/NAME or svc/<namespace>/<name>[:port]{hint}")
    ip = primary_ip(host)
    if ip is None:
        raise UsageError(f"'{text}' has no IPv4 address in the snapshot; is its eth0 configured?")
    pod = _inventory_pod(bundle, f"{host.namespace}/{host.name}" if host.namespace else host.name)
    return Endpoint(text, "pod" if host.kind == "pod" else "ip", ip, host=host, pod=pod, node=host.node)


def _inventory_pod(bundle: Bundle, text: str) -> PodInfo | None:
    inv = bundle.inventory
    if inv is None:
        return None
    ns, _, name = text.rpartition("/")
    same = [p for p in inv.pods if p.name == name and (not ns or p.namespace == ns)]
    return next((p for p in same if p.namespace == "default"), None) or (same[0] if same else None)


def _resolve_node(bundle: Bundle, text: str) -> Endpoint:
    name = text.split("/", 1)[1]
    host = next((h for h in bundle.hosts if h.kind == "node" and h.name == name), None)
    info = bundle.inventory.node(name) if bundle.inventory else None
    ip = (info.internal_ip or info.underlay_ip) if info else None
    if host is not None:
        ip = ip if ip and any(a.address == ip for a in host.addrs) else _node_ip(host)
        return Endpoint(text, "node", ip, host=host, node=name)
    if ip is None:
        nodes = ", ".join(sorted({h.name for h in bundle.hosts if h.kind == "node"} |
                                 {n.name for n in (bundle.inventory.nodes if bundle.inventory else [])})) or "none"
        raise UsageError(f"unknown node '{name}' (nodes: {nodes})")
    return Endpoint(text, "node", ip, node=name)


def _node_by_cidr(bundle: Bundle, ip: str) -> str | None:
    """The inventory node whose podCIDR holds `ip` (an address on a node this snapshot does not hold)."""
    addr = ipaddress.IPv4Address(ip)
    for n in (bundle.inventory.nodes if bundle.inventory else []):
        try:
            if n.pod_cidr and addr in ipaddress.ip_network(n.pod_cidr, strict=False):
                return n.name
        except ValueError:
            continue
    return None


def _node_ip(host: Host) -> str | None:
    """A node's own address: the one its default route leaves from, else its first global one."""
    dev = next((r.dev for r in host.routes if r.dst == "default" and r.table == 254), None)
    return next((a.address for a in host.addrs if a.ifname == dev), None) or primary_ip(host)


def primary_ip(host: Host) -> str | None:
    for pref in ("eth0", None):
        for a in host.addrs:
            if a.address.startswith("127.") or (pref and a.ifname != pref):
                continue
            return a.address
    return None


def _resolve_service(bundle: Bundle, text: str) -> Endpoint:
    m = re.fullmatch(r"svc/(?P<ns>[^/:]+)/(?P<name>[^/:]+)(?::(?P<port>[\w-]+))?", text)
    if not m:
        raise UsageError(f"malformed service '{text}': write svc/<namespace>/<name>[:port], e.g. svc/default/web:80")
    svc = next((s for s in services(bundle) if s.namespace == m["ns"] and s.name == m["name"]), None)
    if svc is None:
        known = ", ".join(f"svc/{s.namespace}/{s.name}" for s in services(bundle)) or "none"
        raise UsageError(f"unknown service {m['ns']}/{m['name']} (known: {known})")
    port = None
    if svc.ports:
        want = m["port"]
        port = next((p for p in svc.ports if want and (str(p.port) == want or p.name == want)), None)
        if want and port is None:
            ports = ", ".join(f"{p.port}/{p.protocol.lower()}" for p in svc.ports)
            raise UsageError(f"service {m['ns']}/{m['name']} has no port '{want}' (ports: {ports})")
        port = port or svc.ports[0]
    return Endpoint(text, "service", svc.cluster_ip, service=svc, port=port.port if port else None,
                    proto=port.protocol.lower() if port else None)
