"""`podpath dns POD NAME`: a real DNS lookup from the pod, as its own resolver would make it,
traced with eBPF to the DNS pod and back.

The pod's resolv.conf gives the server and the search list; every name the resolver would try
is queried in order (resolv.candidates). The first query is a `trace`: it shows the DNAT to the
DNS pod, the answer's way back, and, when it fails, where and why. Later queries (the search
list's NXDOMAINs) are plain, unless one goes unanswered: then it is traced too. Conntrack's
per-CPU statistics are read on every node before and after: a rising insert_failed is the
kernel's race between two UDP packets of one socket (the classic 5-second DNS delay).
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import asdict, dataclass, field

from ..errors import UsageError
from .resolv import candidates, parse_resolv_conf

RDTYPES = ("A", "AAAA", "SRV", "CNAME", "TXT", "PTR", "MX", "NS")
CT_COUNTERS = ("insert_failed", "drop", "early_drop")


@dataclass
class Attempt:
    name: str
    rcode: str | None = None  # NOERROR, NXDOMAIN, SERVFAIL, REFUSED…; None: no answer
    answers: list[str] = field(default_factory=list)
    ms: float | None = None
    traced: bool = False
    error: str | None = None  # timeout, refused (ICMP port unreachable), a socket error


@dataclass
class DnsResult:
    pod: str
    query: str
    rdtype: str
    server: str
    server_name: str | None
    resolv: dict
    attempts: list[Attempt] = field(default_factory=list)
    status: str = "timeout"  # answered, nxdomain, nodata, servfail, refused, timeout, unreachable
    answer: list[str] = field(default_factory=list)
    trace: dict | None = None  # the traced attempt that explains the outcome (trace -o json)
    conntrack: dict = field(default_factory=dict)  # node -> {counter: increase during the lookup}
    timings: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "answered"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def check_name(name: str) -> None:
    """A name dnspython can put in a query, else one line saying what is wrong with it."""
    import dns.exception
    import dns.name

    try:
        dns.name.from_text(name)
    except dns.exception.DNSException as e:
        what = (e.__doc__ or type(e).__name__).strip().rstrip(".")
        raise UsageError(f"'{name}' is not a DNS name: {what[0].lower() + what[1:]}") from None


def _message(qname: str, rdtype: str):
    import dns.message
    q = dns.message.make_query(qname, rdtype)
    q.id = secrets.randbelow(0x10000)
    return q


def _read_answer(q, wire_hex: str | None) -> tuple[str | None, list[str], str | None]:
    """(rcode, answers, error) of a reply to q."""
    import dns.exception
    import dns.message
    import dns.rcode
    if not wire_hex:
        return None, [], "timeout"
    try:
        r = dns.message.from_wire(bytes.fromhex(wire_hex))
    except dns.exception.DNSException as e:
        return None, [], f"unreadable answer ({e})"
    if r.id != q.id:
        return None, [], "an answer to another query"
    return dns.rcode.to_text(r.rcode()), [rr.to_text() for rr in r.answer], None


def _plain_query(netns: str, q, server: str, timeout: float, sport: int | None = None) -> tuple[str | None, float]:
    """Send one query from the pod's namespace; the answer's bytes (hex) or None, and ms."""
    from ..netns import run_in

    def make():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        if sport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", sport))
        return s

    s = run_in(netns, make)
    t = time.perf_counter()
    try:
        s.connect((server, 53))  # connected: an ICMP port unreachable surfaces as ECONNREFUSED
        s.send(q.to_wire())
        deadline = t + timeout
        while True:
            s.settimeout(max(0.001, deadline - time.perf_counter()))
            data, _ = s.recvfrom(65535)
            if len(data) >= 2 and int.from_bytes(data[:2], "big") == q.id:
                return data.hex(), (time.perf_counter() - t) * 1000
    except (socket.timeout, TimeoutError):
        return None, (time.perf_counter() - t) * 1000
    except ConnectionRefusedError:
        return "", (time.perf_counter() - t) * 1000
    finally:
        s.close()


def conntrack_stats(bundle) -> dict[str, dict[str, int]]:
    """node -> conntrack counters summed over CPUs (pyroute2, CTNETLINK stats), for the snapshot's nodes."""
    from pyroute2 import Conntrack

    from ..netns import probe_netns, run_in

    out = {}
    for host in bundle.hosts:
        if host.kind != "node":
            continue

        def read():
            with Conntrack() as ct:
                return ct.stat()
        try:
            rows = run_in(probe_netns(host), read)
        except Exception:  # noqa: BLE001 - no conntrack in this namespace: nothing to compare
            continue
        out[host.name] = {k: sum(int(r.get(k, 0)) for r in rows) for k in CT_COUNTERS}
    return out


def lookup(pod: str, name: str, *, source, rdtype: str = "A", server: str | None = None,
           timeout: float = 1.0, progress=None, nftrace: bool = False, sport: int | None = None) -> DnsResult:
    """Resolve name from pod as its resolver would, tracing the query that explains the outcome.
    source: where the pod and its resolv.conf are (tracer.sources)."""
    from ..netns import probe_netns
    from ..targets.resolve import resolve
    from ..trace import require_root, trace

    require_root()
    say = progress or (lambda _m: None)
    rdtype = rdtype.upper()
    if rdtype not in RDTYPES:
        raise UsageError(f"unknown record type '{rdtype}': use one of {', '.join(RDTYPES)}")
    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    check_name(name)
    t0 = time.perf_counter()
    say(f"snapshotting {source.label}…")
    bundle = source.snapshot((pod,) + ((server,) if server else ()))
    client = resolve(bundle, pod, hint=source.not_found_hint())
    if client.host is None or client.host.kind != "pod":
        raise UsageError(f"'{pod}' is not a pod on {source.label}: `podpath dns` looks the name up from a pod here")
    rc_text = source.resolv_conf(client.host)
    rc = parse_resolv_conf(rc_text, f"{client.host.name}'s resolv.conf")
    netns = probe_netns(client.host)
    server = server or (rc.nameservers[0] if rc.nameservers else None)
    if server is None:
        raise UsageError(f"{pod}'s resolv.conf names no nameserver; give one with --server IP")
    inv = bundle.inventory
    svc = next((f"svc/{s.namespace}/{s.name}" for s in (inv.services if inv else []) if s.cluster_ip == server),
               None)
    res = DnsResult(pod=pod, query=name, rdtype=rdtype, server=server, server_name=svc, resolv=rc.to_dict())
    before = conntrack_stats(bundle)
    def traced(q, att: Attempt) -> str | None:
        """Send q as a trace; the answer's bytes (hex), "" for a port unreachable, None for none."""
        t = trace(pod, server, source=source, bundle=bundle, proto="udp", port=53, payload=q.to_wire(),
                  expect_reply=True, timeout=timeout, progress=say, nftrace=nftrace, sport=sport)
        att.traced, att.ms, res.trace = True, _answer_ms(t), t.to_dict()
        return "" if t.inject.get("answer") == "refused" else t.inject.get("reply_hex")

    def read(q, att: Attempt, wire: str | None) -> None:
        if wire == "":
            att.rcode, att.answers, att.error = None, [], "refused"
        else:
            att.rcode, att.answers, att.error = _read_answer(q, wire)

    for i, qname in enumerate(candidates(name, rc)):
        q = _message(qname, rdtype)
        att = Attempt(qname)
        if i == 0:
            say(f"tracing the query for {qname} to {server}…")
            read(q, att, traced(q, att))
        else:
            say(f"querying {qname}…")
            wire, att.ms = _plain_query(netns, q, server, timeout, sport)
            read(q, att, wire)
        if att.error == "timeout" and not att.traced:  # explain the silence with a trace
            say(f"no answer for {qname}: tracing it…")
            q = _message(qname, rdtype)
            read(q, att, traced(q, att))
        res.attempts.append(att)
        if att.error is not None:
            res.status = "unreachable" if att.error == "refused" else "timeout"
            break
        if att.rcode == "NOERROR" and att.answers:
            res.status, res.answer = "answered", att.answers
            break
        if att.rcode in ("NXDOMAIN", "NOERROR"):  # the resolver goes on down the search list
            res.status = "nxdomain" if att.rcode == "NXDOMAIN" and res.status != "nodata" else "nodata"
            continue
        res.status = (att.rcode or "timeout").lower()  # SERVFAIL, REFUSED…: the resolver gives up
        break
    after = conntrack_stats(bundle)
    res.conntrack = {n: {k: after[n][k] - before[n].get(k, 0) for k in CT_COUNTERS}
                     for n in after if n in before}
    res.timings["total_ms"] = (time.perf_counter() - t0) * 1000
    return res


def _answer_ms(t) -> float | None:
    """Query to answer, from the trace's own hops (first request hop to the reply at the source)."""
    hops = [h for h in t.hops if h.probe in ("tc", "netfilter")]
    if not hops:
        return None
    start = hops[0].time
    back = [h.time for h in hops if h.direction == "reply"]
    return (max(back) - start) / 1e6 if back else None
