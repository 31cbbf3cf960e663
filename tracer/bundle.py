"""The snapshot bundle: every kernel table podpath reads, as plain JSON-serialisable data.

One `Host` per network namespace (a node or a pod). Live collectors (snapshot/live.py) and
pasted-output importers (snapshot/importers.py) both produce these objects, and everything
downstream (model, checks, diagnose) reads only these, so a saved bundle re-analyses offline.

Conventions: IPv4 addresses as dotted strings, prefixes as "a.b.c.d/len" (a route's dst is
"default" for 0.0.0.0/0), MACs lower-case "aa:bb:cc:dd:ee:ff", interface names as the kernel
spells them. Unknown values are None, never "".
"""

from __future__ import annotations

import base64
import dataclasses
import json
import types
import typing
import zlib
from dataclasses import dataclass, field
from typing import Any

BUNDLE_VERSION = 2  # 2: rule text (iptables_save, nftables) stored zlib-compressed, base64
READABLE_VERSIONS = (1, 2)


@dataclass
class Vxlan:
    vni: int
    port: int = 8472
    local: str | None = None
    dev: str | None = None  # underlay device name
    learning: bool = False


@dataclass
class Link:
    name: str
    index: int | None = None
    kind: str | None = None  # veth, bridge, vxlan, dummy, loopback, ether...
    up: bool = True  # administratively up (IFF_UP)
    carrier: bool = True  # lower layer up (operstate not DOWN / NO-CARRIER)
    mtu: int | None = None
    mac: str | None = None
    master: str | None = None  # bridge this link is enslaved to
    peer_index: int | None = None  # veth: ifindex of the peer (IFLA_LINK)
    peer_netnsid: int | None = None  # veth: peer's netns id as seen from this netns
    peer_host: str | None = None  # veth: resolved Host.name of the peer's namespace
    peer_name: str | None = None  # veth: resolved peer ifname
    vxlan: Vxlan | None = None
    hairpin: bool | None = None  # bridge port hairpin mode
    forwarding: bool | None = None  # per-device net.ipv4.conf.<dev>.forwarding


@dataclass
class Addr:
    ifname: str
    address: str
    prefixlen: int
    scope: str | None = None  # host, link, global


@dataclass
class Route:
    dst: str  # "default" or "a.b.c.d/len"
    table: int = 254  # main
    type: str = "unicast"  # unicast, local, broadcast, blackhole, unreachable, prohibit
    gateway: str | None = None
    dev: str | None = None
    prefsrc: str | None = None
    scope: str | None = None
    metric: int | None = None
    onlink: bool = False
    proto: str | None = None

    def text(self) -> str:
        """The route as `ip route` prints it, so users can paste it into a command."""
        parts = [] if self.type == "unicast" else [self.type]
        parts.append(self.dst)
        if self.gateway:
            parts += ["via", self.gateway]
        if self.dev:
            parts += ["dev", self.dev]
        if self.table not in (254, None):
            parts += ["table", str(self.table)]
        if self.proto:
            parts += ["proto", self.proto]
        if self.scope and self.scope not in ("universe", "global"):
            parts += ["scope", self.scope]
        if self.prefsrc:
            parts += ["src", self.prefsrc]
        if self.metric:
            parts += ["metric", str(self.metric)]
        if self.onlink:
            parts.append("onlink")
        return " ".join(parts)


@dataclass
class Rule:
    """An `ip rule` policy routing rule."""

    priority: int
    table: int | None = None
    action: str = "lookup"  # lookup, blackhole, unreachable, prohibit
    src: str | None = None  # prefix or None for all
    dst: str | None = None
    iif: str | None = None
    oif: str | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    invert: bool = False


@dataclass
class Neigh:
    ifname: str
    dst: str
    lladdr: str | None = None
    state: list[str] = field(default_factory=list)  # REACHABLE, STALE, PERMANENT, FAILED, INCOMPLETE, NOARP...
    router: bool = False

    def text(self) -> str:
        ll = f" lladdr {self.lladdr}" if self.lladdr else ""
        return f"{self.dst} dev {self.ifname}{ll} {' '.join(self.state)}".strip()


@dataclass
class Fdb:
    """A bridge or VXLAN forwarding database entry (`bridge fdb show`)."""

    ifname: str  # the port (bridge port or vxlan device)
    mac: str
    master: str | None = None  # bridge owning the entry when it is a bridge (master) entry
    dst: str | None = None  # VXLAN remote (underlay IP)
    vlan: int | None = None
    flags: list[str] = field(default_factory=list)  # self, master, permanent, static, extern_learn...

    def text(self) -> str:
        s = f"{self.mac} dev {self.ifname}"
        if self.master:
            s += f" master {self.master}"
        if self.dst:
            s += f" dst {self.dst}"
        if self.vlan is not None:
            s += f" vlan {self.vlan}"
        return s + ("" if not self.flags else " " + " ".join(self.flags))


@dataclass
class Listener:
    """A socket that accepts traffic: a TCP LISTEN socket or a bound UDP socket."""

    proto: str  # tcp, udp
    address: str  # "0.0.0.0" for any
    port: int


@dataclass
class IpvsDest:
    address: str
    port: int
    forward: str = "Masq"  # Masq, Local, Route, Tunnel
    weight: int = 1
    active: int = 0
    inactive: int = 0


@dataclass
class IpvsService:
    proto: str  # TCP, UDP, SCTP
    address: str | None  # virtual IP (None for fwmark services)
    port: int | None
    scheduler: str = "rr"
    fwmark: int | None = None
    dests: list[IpvsDest] = field(default_factory=list)


@dataclass
class Conntrack:
    proto: str
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    reply_src: str | None = None  # after DNAT, the endpoint that answers
    reply_dst: str | None = None
    reply_sport: int | None = None
    reply_dport: int | None = None
    state: str | None = None
    mark: int | None = None


@dataclass
class Host:
    """Everything podpath read from one network namespace."""

    name: str  # "node-a", "pod-a", or a name given at import ("ticket-1")
    kind: str = "node"  # node, pod, unknown
    node: str | None = None  # the node a pod runs on; a node's own name for nodes
    netns: str | None = None  # the namespace name it was read from (None for imports)
    namespace: str | None = None  # Kubernetes namespace of a pod
    links: list[Link] = field(default_factory=list)
    addrs: list[Addr] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    # Answers of `ip route get` (pasted): each the Route the kernel chose, dst = the queried /32.
    route_lookups: list[Route] = field(default_factory=list)
    neigh: list[Neigh] = field(default_factory=list)
    fdb: list[Fdb] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)  # "net.ipv4.ip_forward": "1"
    # Raw `iptables-save -c` text per backend ("nft", "legacy"); parsed on load by netfilter/.
    iptables_save: dict[str, str] = field(default_factory=dict)
    nftables: dict[str, Any] | None = None  # `nft -j list ruleset`, as JSON
    ipvs: list[IpvsService] = field(default_factory=list)
    conntrack: list[Conntrack] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # what it was built from ("netlink", "ip a", ...)
    # What the snapshot could not read: {"iptables": "iptables-save not installed"}.
    gaps: dict[str, str] = field(default_factory=dict)

    def link(self, name: str | None) -> Link | None:
        return next((l for l in self.links if l.name == name), None)

    def link_by_index(self, index: int | None) -> Link | None:
        return next((l for l in self.links if l.index == index), None)

    def sysctl(self, key: str, default: str | None = None) -> str | None:
        return self.sysctls.get(key, default)


@dataclass
class NodeInfo:
    name: str
    netns: str | None = None
    underlay_ip: str | None = None
    underlay_dev: str | None = None
    vtep_mac: str | None = None
    pod_cidr: str | None = None


@dataclass
class PodInfo:
    name: str
    namespace: str = "default"
    node: str | None = None
    netns: str | None = None
    ip: str | None = None
    mac: str | None = None
    host_veth: str | None = None


@dataclass
class ServicePort:
    name: str
    port: int
    protocol: str = "TCP"
    target_port: int | None = None


@dataclass
class ServiceInfo:
    name: str
    namespace: str = "default"
    cluster_ip: str | None = None
    ports: list[ServicePort] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)  # pod IPs


@dataclass
class Inventory:
    """What the cluster says exists (lab status or Kubernetes API), as opposed to kernel state."""

    cluster_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    nodes: list[NodeInfo] = field(default_factory=list)
    pods: list[PodInfo] = field(default_factory=list)
    services: list[ServiceInfo] = field(default_factory=list)


@dataclass
class Bundle:
    version: int = BUNDLE_VERSION
    created: str | None = None
    source: str = "live"  # live, import
    hosts: list[Host] = field(default_factory=list)
    inventory: Inventory | None = None

    def host(self, name: str) -> Host | None:
        return next((h for h in self.hosts if h.name == name), None)

    def to_json(self, indent: int | None = 1) -> str:
        data = dataclasses.asdict(self)
        data["version"] = BUNDLE_VERSION
        for host in data["hosts"]:
            _pack_rules(host)
        return json.dumps(data, indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "Bundle":
        """Load a bundle; raises BundleError (one line, names the problem) on bad input."""
        from .errors import BundleError

        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise BundleError(f"bundle is not JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(raw, dict) or "hosts" not in raw:
            raise BundleError("bundle has no 'hosts' list; make one with `podpath snapshot -o FILE`")
        if raw.get("version") not in READABLE_VERSIONS:
            raise BundleError(
                f"bundle version {raw.get('version')!r} is not {BUNDLE_VERSION}; re-take the snapshot"
            )
        if raw["version"] >= 2 and isinstance(raw["hosts"], list):
            for i, host in enumerate(raw["hosts"]):
                if isinstance(host, dict):
                    _unpack_rules(host, f"hosts[{i}]")
        raw["version"] = BUNDLE_VERSION  # read into today's form
        try:
            return from_dict(cls, raw)
        except (TypeError, ValueError, KeyError) as e:
            raise BundleError(f"bundle is malformed: {e}") from None


# Rule text is most of a big node's bundle (iptables-save of 10,000 Services is 12 MB) and
# compresses tenfold: stored as zlib + base64 strings, so a bundle fits in a ticket.


def _pack(text: str) -> str:
    return base64.b64encode(zlib.compress(text.encode(), 3)).decode("ascii")


def _unpack(packed: Any, where: str) -> str:
    from .errors import BundleError

    if not isinstance(packed, str):
        raise BundleError(f"bundle is malformed: {where} should be zlib+base64 text, "
                          f"got {type(packed).__name__}")
    try:
        return zlib.decompress(base64.b64decode(packed, validate=True)).decode()
    except (ValueError, zlib.error) as e:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise BundleError(f"bundle is malformed: {where} is not zlib+base64 text ({e})") from None


def _pack_rules(host: dict) -> None:
    """A host as to_json writes it (version 2): rule texts compressed."""
    saves = host.get("iptables_save")
    if saves:
        host["iptables_save"] = {k: _pack(v) if isinstance(v, str) else v for k, v in saves.items()}
    if host.get("nftables") is not None:
        host["nftables"] = _pack(json.dumps(host["nftables"], separators=(",", ":")))


def _unpack_rules(host: dict, where: str) -> None:
    from .errors import BundleError

    saves = host.get("iptables_save")
    if isinstance(saves, dict):
        host["iptables_save"] = {k: _unpack(v, f"{where}.iptables_save.{k}") if v is not None else v
                                 for k, v in saves.items()}
    if host.get("nftables") is not None:
        text = _unpack(host["nftables"], f"{where}.nftables")
        try:
            host["nftables"] = json.loads(text)
        except json.JSONDecodeError as e:
            raise BundleError(f"bundle is malformed: {where}.nftables is not JSON ({e.msg})") from None


def from_dict(cls: type, data: Any) -> Any:
    """Rebuild nested dataclasses from `dataclasses.asdict` output (type hints drive it)."""
    hints = typing.get_type_hints(cls)
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} expects an object, got {type(data).__name__}")
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in names:
            continue  # tolerate fields from newer writers
        kwargs[key] = _convert(hints[key], value)
    return cls(**kwargs)


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            return _convert(arg, value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return [_convert(item, v) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        return dict(value)
    return value
