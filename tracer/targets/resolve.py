"""Turn what the user typed (pod name, IP, svc/<ns>/<name>[:port]) into a place in a bundle."""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass

from ..bundle import Bundle, Host, ServiceInfo, ServicePort
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

    @property
    def name(self) -> str:
        if self.service:
            return f"svc/{self.service.namespace}/{self.service.name}"
        return self.host.name if self.host else self.ip


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
        for text in host.iptables_save.values():
            for line in text.splitlines():
                if "-A KUBE-SERVICES" not in line or "cluster IP" not in line:
                    continue
                _scan_service_rule(line, found)
    return list(found.values())


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


def resolve(bundle: Bundle, text: str) -> Endpoint:
    text = text.strip()
    if text.startswith("svc/"):
        return _resolve_service(bundle, text)
    if is_ip(text):
        for svc in services(bundle):
            if svc.cluster_ip == text:
                return Endpoint(text, "service", text, service=svc)
        return Endpoint(text, "ip", text, host=owner_of(bundle, text))
    host = find_host(bundle, text)
    if host is None:
        pods = ", ".join(h.name for h in bundle.hosts if h.kind == "pod") or "none"
        raise UsageError(f"unknown target '{text}': not a pod in the snapshot (pods: {pods}), an IPv4 "
                         "address, or svc/<namespace>/<name>[:port]")
    ip = primary_ip(host)
    if ip is None:
        raise UsageError(f"'{text}' has no IPv4 address in the snapshot; is its eth0 configured?")
    return Endpoint(text, "pod" if host.kind == "pod" else "ip", ip, host=host)


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
