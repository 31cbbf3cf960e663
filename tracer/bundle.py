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
import functools
import json
import os
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
    table: int | None = 254  # main; None: not said (a pasted `ip route get` answer)
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
    persistent: int | None = None  # `persistent N` / `-p N`: ClientIP session affinity, in seconds


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
class Attachment:
    """A BPF program or tc filter attached where packets pass: a device's tc/tcx/XDP hook or a
    netfilter hook. Foreign ones (ours False: another CNI's leftover, a security agent) can drop."""

    hook: str  # tc_ingress, tc_egress, tcx_ingress, tcx_egress, xdp, netfilter
    kind: str  # clsact, tcx, xdp, nf-link
    device: str | None = None  # None for netfilter links (they hook the whole namespace)
    id: int | None = None  # BPF program id (None for a non-BPF tc filter)
    name: str | None = None  # program name (bpf_prog_info.name, 15 chars)
    tag: str | None = None  # program tag, 16 hex digits as bpftool and tc print it
    priority: int | None = None  # tc pref, tcx position (0 runs first), netfilter priority
    handle: str | None = None  # tc filter handle as tc prints it ("0x1")
    filter: str | None = None  # tc filter kind: bpf, u32, flower, matchall...
    link_id: int | None = None  # the BPF link holding it (tcx, XDP, netfilter)
    owners: list[str] = field(default_factory=list)  # "pid/comm" of processes holding its fd
    ours: bool = False  # podpath's own (pp_*)
    detail: str | None = None  # "direct-action", XDP mode, netfilter hook, how its netns was known

    def text(self) -> str:
        where = f"{self.device} {self.hook}" if self.device else self.hook
        what = f"prog {self.id} {self.name or '?'} tag {self.tag}" if self.id is not None else \
            f"{self.filter or '?'} filter"
        extra = [f"pref {self.priority}" if self.priority is not None else "",
                 f"handle {self.handle}" if self.handle else "", self.detail or "",
                 f"held by {', '.join(self.owners)}" if self.owners else ""]
        return " ".join([where, self.kind, what] + [e for e in extra if e])


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
    # flannel's /run/flannel/subnet.env when pasted (FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU...).
    flannel_env: dict[str, str] = field(default_factory=dict)
    # What the snapshot could not read: {"iptables": "iptables-save not installed"}.
    gaps: dict[str, str] = field(default_factory=dict)
    # Which namespace it is, as the kernel knows it: the nsfs inode (what BPF events carry), the
    # processes that hold it (a pod's pause/holder process), and how its name was found: "api"
    # (pod IP in the Kubernetes API), "inventory" (the lab's), "hostname" (kubelet's
    # /etc/hostname in the holder's root), "ip", or "unknown" (a namespace nobody accounts for).
    inode: int | None = None
    pids: list[int] = field(default_factory=list)
    identified_by: str | None = None
    host_veth: str | None = None  # a pod's veth end in its node's namespace
    programs: list[Attachment] = field(default_factory=list)  # tc/tcx/XDP/netfilter BPF on this netns

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
    underlay_ip: str | None = None  # flannel's public-ip annotation, else the InternalIP
    underlay_dev: str | None = None
    vtep_mac: str | None = None  # flannel's backend-data annotation (VtepMAC)
    pod_cidr: str | None = None
    internal_ip: str | None = None


@dataclass
class PodInfo:
    name: str
    namespace: str = "default"
    node: str | None = None
    netns: str | None = None
    ip: str | None = None
    mac: str | None = None
    host_veth: str | None = None
    host_network: bool = False
    phase: str | None = None


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

    cluster_cidr: str | None = "10.244.0.0/16"
    service_cidr: str | None = "10.96.0.0/12"
    nodes: list[NodeInfo] = field(default_factory=list)
    pods: list[PodInfo] = field(default_factory=list)
    services: list[ServiceInfo] = field(default_factory=list)
    source: str | None = None  # "lab", "kubernetes"
    local_node: str | None = None  # the node the snapshot was taken on (a node source)
    kube_proxy_mode: str | None = None  # iptables, ipvs, nftables (kube-system/kube-proxy ConfigMap)
    dns_service: str | None = None  # "kube-system/kube-dns"
    # Which of its facts the source could not read: {"endpointslices": "403: ..."}
    gaps: dict[str, str] = field(default_factory=dict)

    def node(self, name: str | None) -> NodeInfo | None:
        return next((n for n in self.nodes if n.name == name), None)

    def pod_by_ip(self, ip: str) -> PodInfo | None:
        return next((p for p in self.pods if p.ip == ip), None)


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
        hosts = data["hosts"]
        if sum(_rules_size(h) > 1 << 20 for h in hosts) > 1:  # zlib lets go of the GIL: two 12 MB
            from concurrent.futures import ThreadPoolExecutor  # nodes compress side by side

            with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
                list(pool.map(_pack_rules, hosts))
        else:
            for host in hosts:
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
            return from_dict(cls, raw, "$")
        except BadValue as e:
            raise BundleError(f"bundle is malformed: the value at {e.path} {e.problem}; fix it or re-take the snapshot") from None


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


def _rules_size(host: dict) -> int:
    return sum(len(v) for v in (host.get("iptables_save") or {}).values() if isinstance(v, str))


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



class BadValue(ValueError):
    """A bundle value of the wrong type or form, with its JSON path ($.hosts[2].addrs[0].address)."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


# Fields whose text must be an address or a prefix: checked on load, so a hand-edited or corrupt
# bundle is one line naming the place, not a traceback deep in the model.
_ADDRESS_FIELDS = {"address", "gateway", "prefsrc", "local", "underlay_ip", "internal_ip", "src", "dst",
                   "reply_src", "reply_dst", "cluster_ip", "ip"}
_PREFIX_FIELDS = {("Route", "dst"), ("Rule", "src"), ("Rule", "dst"), ("NodeInfo", "pod_cidr")}


def _check_text(cls: type, key: str, value: Any, path: str) -> None:
    import ipaddress

    if key == "prefixlen" and isinstance(value, int) and not 0 <= value <= 32:
        raise BadValue(path, f"is not an IPv4 prefix length (0..32): {value}")
    if not isinstance(value, str):
        return
    try:
        if (cls.__name__, key) in _PREFIX_FIELDS:
            if value != "default":
                ipaddress.ip_network(value, strict=False)
        elif key in _ADDRESS_FIELDS and cls.__name__ not in ("Rule", "Route"):
            ipaddress.ip_address(value)
        elif key in ("gateway", "prefsrc"):
            ipaddress.ip_address(value)
    except ValueError:
        raise BadValue(path, f"is not an address or prefix: {value!r}") from None


def from_dict(cls: type, data: Any, path: str = "$") -> Any:
    """Rebuild nested dataclasses from `dataclasses.asdict` output (type hints drive it); a value of
    the wrong type or form raises BadValue naming its JSON path."""
    hints, required = _shape(cls)
    if not isinstance(data, dict):
        raise BadValue(path, f"should be an object ({cls.__name__}), not {type(data).__name__}")
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            continue  # tolerate fields from newer writers
        if value is None and not _nullable(hints[key]):
            if key in required:  # a route with no dst, an address with none
                raise BadValue(f"{path}.{key}", "should not be null")
            continue  # a null where the field has a default: the default
        kwargs[key] = _convert(hints[key], value, f"{path}.{key}")
        _check_text(cls, key, kwargs[key], f"{path}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field missing
        raise BadValue(path, f"is incomplete ({e})") from None


@functools.cache
def _shape(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    """A dataclass's field types and its fields without a default, worked out once per class:
    get_type_hints evaluates every annotation's text each time (most of loading a bundle)."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    return ({f.name: hints[f.name] for f in fields},
            frozenset(f.name for f in fields if f.default is dataclasses.MISSING
                      and f.default_factory is dataclasses.MISSING))


def _nullable(tp: Any) -> bool:
    return tp is Any or (typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp))


_SCALARS = {int: "an integer", str: "a string", bool: "true or false", float: "a number"}


def _convert(tp: Any, value: Any, path: str = "$") -> Any:
    if value is None:  # a null list item or map value of a non-null type: an fdb flag, a sysctl
        if _nullable(tp):
            return None
        raise BadValue(path, "should not be null")
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            return _convert(arg, value, path)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise BadValue(path, f"should be a list, not {type(value).__name__}")
        return [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise BadValue(path, f"should be an object, not {type(value).__name__}")
        _key_t, val_t = typing.get_args(tp) or (str, Any)
        if val_t in _SCALARS:  # {"net.ipv4.ip_forward": "1"}: each value of the declared type
            for k, v in value.items():
                _convert(val_t, v, f"{path}[{json.dumps(k)}]")
        return dict(value)
    if tp in _SCALARS:
        ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise BadValue(path, f"should be {_SCALARS[tp]}, not {json.dumps(value)[:40]}")
    return value
