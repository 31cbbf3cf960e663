"""Cluster DNS of the lab: the dnsmasq command line that plays CoreDNS, and a small client (dnspython).

dnsmasq answers A records for `<svc>.<ns>.svc.cluster.local` from the lab's service table, says
NXDOMAIN for every other name under cluster.local (`--local`), and forwards nothing (`--no-resolv`,
no servers): lab DNS never leaves the lab.
"""

from __future__ import annotations

from pathlib import Path

from .topology import CLUSTER_DOMAIN, SERVICES, PodSpec


def dnsmasq_argv(p: PodSpec, pid_file: Path) -> list[str]:
    argv = [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        f"--listen-address={p.ip}",
        "--bind-interfaces",
        "--port=53",
        f"--pid-file={pid_file}",
        "--log-facility=-",
        f"--local=/{CLUSTER_DOMAIN}/",
        "--user=root",
    ]
    for s in SERVICES:
        argv.append(f"--host-record={s.fqdn},{s.cluster_ip}")
    return argv


def _ask(send, server: str, name: str, timeout: float, port: int, **kw) -> tuple[str, list[str]]:
    import dns.message
    import dns.rcode
    import dns.rdatatype

    import dns.exception

    q = dns.message.make_query(name, "A")
    try:
        r = send(q, server, timeout=timeout, port=port, **kw)
    except dns.exception.Timeout:
        raise TimeoutError(f"no DNS answer from {server} within {timeout:g}s") from None
    addrs = [rd.address for rrset in r.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset]
    return dns.rcode.to_text(r.rcode()), addrs


def query_udp(server: str, name: str, timeout: float = 1.0, port: int = 53,
              sport: int | None = None) -> tuple[str, list[str]]:
    """Ask server over UDP (in the calling thread's netns): (rcode name, A addresses). Raises
    OSError or dns.exception.Timeout. sport: query from this source port (a client that reuses one)."""
    import dns.query
    return _ask(dns.query.udp, server, name, timeout, port, **({"source_port": sport} if sport else {}))


def query_tcp(server: str, name: str, timeout: float = 1.0, port: int = 53) -> tuple[str, list[str]]:
    import dns.query
    return _ask(dns.query.tcp, server, name, timeout, port)
