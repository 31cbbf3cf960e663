"""What one import keeps while it reads: the command line's hint, the host being built."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable

from ...bundle import Host, IpvsService, Link
from .text import Words, is_redacted


# --- state of one import --------------------------------------------------------------------


@dataclass
class Hint:
    """What a command line said: which command prints what follows, and its arguments."""

    name: str | None  # a COMMANDS name, or None for a command we do not read
    text: str  # the command as typed
    dev: str | None = None  # `ip r show dev X`, `ip neigh show dev X`: output omits "dev X"
    table: str | None = None  # `ip r show table local`: output omits "table local"
    query: str | None = None  # `ip r get ADDR`
    key: str | None = None  # `cat /proc/sys/net/ipv4/ip_forward` → net.ipv4.ip_forward
    backend: str | None = None  # iptables-nft-save / iptables-legacy-save
    v6: bool = False
    prompt: str | None = None  # the shell prompt before the command, if any
    # `kubectl exec POD --`, `ip netns exec NS`, `nsenter -t PID -n`: whose namespace printed the output
    target: str | None = None
    target_namespace: str | None = None  # Kubernetes namespace of a `kubectl exec` target
    target_netns: str | None = None  # a named netns (`ip netns exec NS`), for fix commands
    target_via: str | None = None  # kubectl, oc, docker, crictl, ip netns exec, nsenter
    # A command that changes state or writes a file (`sysctl -w`, `echo`, `tee`): what it prints is
    # what the user typed, not what the kernel holds. `echo` lines of output follow it.
    input: bool = False
    echo: int = 0


@dataclass
class HostState:
    """What the importer keeps about one host across its files."""

    host: Host
    link_types: dict[str, str] = field(default_factory=dict)  # name → "ether" from link/ether
    from_arp: set[int] = field(default_factory=set)  # id() of Neigh read from arp (state guessed)
    notes: dict[str, dict[str, None]] = field(default_factory=dict)  # gaps, collected (ordered sets)
    legacy_warning: bool = False
    v6_skipped: int = 0
    exec_via: str | None = None  # the `kubectl exec POD --` that read this pod
    route_metric_col: bool = False  # `route -n` (Metric Ref Use), not `netstat -rn` (MSS Window irtt)
    bridge_ports: dict[str, list[str]] = field(default_factory=dict)  # `brctl show`: bridge → ports
    # Indexes that keep the import linear: what each of the host's lists already holds, by value.
    seen: dict[str, set[tuple]] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    ipvs: dict[tuple, IpvsService] = field(default_factory=dict)  # (proto, address, port, fwmark)
    iptables: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)  # backend → (text, inferred)

    def note(self, key: str, message: str) -> None:
        self.notes.setdefault(key, {})[message] = None

    def odd_value(self, value: str, w: Words, i: int, what: str) -> None:
        """A value that is not an IPv4 address where one belongs: redacted, or unreadable. Said with its line."""
        kind = "redacted" if is_redacted(value) else "unparsed values"
        self.note(kind, f"line {w.lines[i]}: `{w.line_text(i)[:80]}`: {what} {value!r} "
                        f"{'is redacted' if kind == 'redacted' else 'is no IPv4 address'}; the entry was not used")

    def add_unique(self, table: str, item: Any) -> bool:
        """Append item to host.<table> unless an equal one is there already; True if appended."""
        key = identity(item)
        seen = self.seen.setdefault(table, set())
        if key in seen:
            return False
        seen.add(key)
        getattr(self.host, table).append(item)
        return True

    def link(self, name: str) -> Link | None:
        return self.links.get(name)

    def add_link(self, link: Link) -> None:
        self.links.setdefault(link.name, link)
        self.host.links.append(link)

    def add_ipvs(self, svc: IpvsService) -> None:
        self.ipvs.setdefault((svc.proto, svc.address, svc.port, svc.fwmark), svc)
        self.host.ipvs.append(svc)


def identity(item: Any) -> tuple:
    """A bundle dataclass as a hashable value (its list fields as tuples)."""
    return tuple(tuple(v) if isinstance(v := getattr(item, f.name), list) else v for f in fields(item))


@dataclass
class Hosts:
    """The hosts one import builds, by name: each file's own host, hosts that prompts or headers
    name, and the pods and namespaces that `kubectl exec` / `ip netns exec` / `nsenter` read."""

    states: dict[str, HostState] = field(default_factory=dict)

    def get(self, name: str, kind: str = "unknown", node: str | None = None, netns: str | None = None,
            namespace: str | None = None) -> HostState:
        st = self.states.get(name)
        if st is None:
            st = self.states[name] = HostState(Host(name=name, kind=kind, node=node, netns=netns,
                                                    namespace=namespace))
        return st


@dataclass
class ImportCtx:
    state: HostState
    hint: Hint | None = None
    current: "Command | None" = None  # the command of the record just parsed
    cat_pending: bool = False  # `cat /proc/sys/...` printed its value next
    node: HostState | None = None  # the machine the prompts are on (state is a pod's when exec'd into)
    discard_to: float | None = None  # records up to this line are input echoed back, not state
    section: str | None = None  # the host the last header (or the file) named

    @property
    def host(self) -> Host:
        return self.state.host

    def hinted(self, *names: str) -> bool:
        return self.hint is not None and self.hint.name in names


Detector = Callable[[Words, int, ImportCtx], int]  # 0: no; 1: at a line start or inside a run; 2: anywhere
Parser = Callable[[Words, int, ImportCtx], int]  # parses one record at i, returns the index after it


@dataclass(frozen=True)
class Command:
    name: str
    detect: Detector
    parse: Parser


# Keywords whose next word is a value: a record never starts right after one of these.
VALUE_KEYS = {
    "via", "src", "from", "dev", "lladdr", "brd", "peer", "inet", "inet6", "local", "remote", "group",
    "dst", "to", "table", "lookup", "metric", "at", "-s", "-d", "--to-destination", "mask", "master",
    "link-netns", "iif", "oif", "mark", "uid", "vlan", "port", "vni", "id", "gw", "nexthop", "-r", "-t",
    "-u",
}


def after_value_key(w: Words, i: int) -> bool:
    return i > 0 and not w.bol[i] and w[i - 1] in VALUE_KEYS


NO_HINT = ImportCtx(HostState(Host(name="-")))  # for detectors asked without a command line's hint
