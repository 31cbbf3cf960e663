"""`diagnose`: the expected path from the snapshot, and every problem on it, as findings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .bundle import Bundle
from .checks import SEVERITY_ORDER, Context, Finding, run_checks
from .checks.base import missing_tables, pasted
from .errors import UsageError
from .model.path import Flow, Path
from .model.segments import assign_path, ends, path_ends, segment_for
from .model.walk import Model
from .targets.resolve import Endpoint, resolve

PROTOS = ("icmp", "tcp", "udp")
EPHEMERAL_PORT = 40000


@dataclass
class Diagnosis:
    flow: Flow | None
    findings: list[Finding]
    paths: list[Path] = field(default_factory=list)
    src: str | None = None
    dst: str | None = None
    # Pasted bundles: per host, the tables not pasted (so not checked) and what the import could not read.
    not_pasted: dict[str, list[str]] = field(default_factory=dict)
    not_parsed: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """The verdict comes from partial data: some host's tables were not pasted."""
        return bool(self.not_pasted)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def to_dict(self) -> dict:
        main = self.paths[0] if self.paths else None
        return {
            "flow": dataclasses.asdict(self.flow) if self.flow else None,
            "findings": [f.to_dict() for f in self.findings],
            "path": [h.to_dict() for h in main.hops] if main else [],
            "outcome": main.outcome if main else None,
            "paths": [{"alternative": p.alternative, "outcome": p.outcome, "probability": p.probability,
                       "hops": [h.to_dict() for h in p.hops]} for p in self.paths[1:]],
            "partial": self.partial,
            "not_pasted": self.not_pasted,
            "not_parsed": self.not_parsed,
        }


def build_flow(src: Endpoint, dst: Endpoint, proto: str | None, port: int | None, size: int | None,
               sport: int | None = None) -> Flow:
    if proto is not None and proto not in PROTOS:
        raise UsageError(f"unknown protocol {proto!r}: use one of {', '.join(PROTOS)}")
    if dst.kind == "service":
        proto = proto or dst.proto or "tcp"
        port = port or dst.port
        if proto == "icmp":
            raise UsageError("a ClusterIP does not answer ping (kube-proxy only NATs its ports); "
                             "use --proto tcp|udp with --port")
    proto = proto or ("tcp" if port else "icmp")
    if proto in ("tcp", "udp") and not port:
        raise UsageError(f"--proto {proto} needs --port N")
    if size is not None and not 28 <= size <= 65535:
        raise UsageError(f"--size {size} is not a valid IPv4 packet size (28..65535)")
    if sport is not None and not (proto in ("tcp", "udp") and 1 <= sport <= 65535):
        raise UsageError(f"--sport {sport}: a source port (1..65535) needs --proto tcp or udp")
    return Flow(src=src.ip, dst=dst.ip, proto=proto, sport=(sport or EPHEMERAL_PORT) if proto != "icmp" else None,
                dport=port if proto != "icmp" else None, size=size or 84, src_name=src.name,
                dst_name=dst.host.name if dst.host else dst.name)


def diagnose(bundle: Bundle, src: str | None = None, dst: str | None = None, *, proto: str | None = None,
             port: int | None = None, size: int | None = None, sport: int | None = None,
             hint: str = "") -> Diagnosis:
    model = Model(bundle)
    if (src is None) != (dst is None):
        raise UsageError("give both SRC and DST, or neither (node-wide checks only)")
    if src is None:
        ctx = Context(bundle=bundle, topo=model.topo)
        return with_import_gaps(Diagnosis(None, sort_findings(run_checks(ctx), [])), bundle)
    s, d = resolve(bundle, src, hint), resolve(bundle, dst, hint)
    arriving = None
    if s.host is None:
        # a source on another node, to a pod of this one: the packet is modelled from where it
        # reaches this node (the other node's half is not observed from here)
        remote = bundle.inventory.node(s.node) if bundle.inventory and s.node else None
        if d.service is not None:  # kube-proxy DNATs on the source's node: it arrives for a local endpoint
            d, port = _local_endpoint(bundle, d, proto), None
        local = next((h for h in bundle.hosts if h.kind == "node" and d.host is not None
                      and (h.node or h.name) == d.host.node), None)
        if remote is None or local is None:
            where = f" (it runs on {s.node})" if s.node else ""
            raise UsageError(f"source '{src}' is not in this snapshot{where}: the source must be where the packet "
                             "starts, or the destination a pod of this node")
        arriving = remote
    flow = build_flow(s, d, proto, port if arriving is None or d.port is None else d.port, size, sport)
    start = local if arriving is not None else s.host
    paths = model.paths(flow, start, d.host.name if d.host else None, arriving_from=arriving)
    src_node = arriving.name if arriving is not None else None
    for p in paths:
        assign_path(p, path_ends(bundle, p, s.host, d.host, src_node))
    ctx = Context(bundle=bundle, topo=model.topo, flow=flow, paths=paths, src_host=s.host, dst_host=d.host,
                  dst_service=d.service)
    findings = run_checks(ctx)
    main = path_ends(bundle, paths[0], s.host, d.host, src_node) if paths else ends(bundle, s.host, d.host, src_node)
    for f in findings:
        if f.segment is None:
            f.segment = segment_for(f, main, paths)
    return with_import_gaps(Diagnosis(flow, sort_findings(findings, paths), paths, src, dst), bundle)


# Gaps an import records that are about the paste, not about a table podpath leaves unread by design.
IMPORT_GAPS = ("unparsed", "redacted", "unparsed values", "input", "unsupported", "iptables", "iptables -L", "brctl",
               "two hosts?")


def with_import_gaps(d: Diagnosis, bundle: Bundle) -> Diagnosis:
    """What a pasted bundle did not hold (tables not pasted) and what its import could not use."""
    for host in bundle.hosts:
        if not pasted(host):
            continue
        missing = missing_tables(host)
        if missing:
            d.not_pasted[host.name] = missing
        gaps = {k: v for k, v in host.gaps.items() if k in IMPORT_GAPS}
        if gaps:
            d.not_parsed[host.name] = gaps
    return d


def _local_endpoint(bundle: Bundle, d: Endpoint, proto: str | None) -> Endpoint:
    """A Service's endpoint that is a pod of this snapshot, as the packet reaches it after the
    source node's DNAT (its IP and target port); the Service itself when none is here."""
    from .targets.resolve import owner_of

    svc = d.service
    want = (proto or d.proto or "tcp").upper()
    sp = next((p for p in svc.ports if p.port == d.port and p.protocol.upper() == want), None) or \
        next((p for p in svc.ports if p.protocol.upper() == want), None)
    for ip in svc.endpoints:
        host = owner_of(bundle, ip)
        if host is not None and host.kind == "pod":
            target = (sp.target_port or sp.port) if sp else d.port
            return Endpoint(f"{d.text} → {host.name}", "pod", ip, host=host, port=target, proto=want.lower(),
                            node=host.node)
    return d


def sort_findings(findings: list[Finding], paths: list[Path]) -> list[Finding]:
    """Errors first; within a severity, in path order (the first break first)."""
    order = {}
    for p in paths:
        for i, h in enumerate(p.hops):
            order.setdefault((h.node, h.location, h.device), i)
    big = 10 ** 6
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], order.get((f.node, f.location, f.device), big)))
