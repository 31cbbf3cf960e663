"""Cluster DNS of the lab: the dnsmasq command line that plays CoreDNS, and a tiny DNS client.

dnsmasq answers A records for `<svc>.<ns>.svc.cluster.local` from the lab's service table, says
NXDOMAIN for every other name under cluster.local (`--local`), and forwards nothing (`--no-resolv`,
no servers): lab DNS never leaves the lab.
"""

from __future__ import annotations

import random
import socket
import struct
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


def build_query(name: str, qtype: int = 1) -> tuple[int, bytes]:
    """A recursive query for name (A by default); returns (id, wire bytes)."""
    qid = random.randrange(1, 0xFFFF)
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    return qid, header + qname + struct.pack("!HH", qtype, 1)


def _skip_name(data: bytes, off: int) -> int:
    while True:
        n = data[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += n + 1


def parse_answer(data: bytes, qid: int) -> tuple[int, list[str]]:
    """(rcode, A record addresses) of a response; ValueError if it is not the answer to qid."""
    if len(data) < 12:
        raise ValueError("short DNS response")
    rid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
    if rid != qid or not flags & 0x8000:
        raise ValueError("not the response to our query")
    off = 12
    for _ in range(qd):
        off = _skip_name(data, off) + 4
    addrs = []
    for _ in range(an):
        off = _skip_name(data, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[off:off + 10])
        off += 10
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(data[off:off + 4]))
        off += rdlen
    return flags & 0xF, addrs


RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def query_udp(server: str, name: str, timeout: float = 1.0, port: int = 53,
              sport: int | None = None) -> tuple[str, list[str]]:
    """Ask server over UDP (in the calling thread's netns): (rcode name, addresses). Raises OSError/timeout.
    sport: query from this source port (a client that reuses one)."""
    qid, wire = build_query(name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        if sport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", sport))
        s.connect((server, port))
        s.send(wire)
        while True:
            data = s.recv(4096)
            try:
                rcode, addrs = parse_answer(data, qid)
            except ValueError:
                continue
            return RCODES.get(rcode, str(rcode)), addrs


def query_tcp(server: str, name: str, timeout: float = 1.0, port: int = 53) -> tuple[str, list[str]]:
    qid, wire = build_query(name)
    with socket.create_connection((server, port), timeout=timeout) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        buf = b""
        while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("DNS server closed the connection")
            buf += chunk
        rcode, addrs = parse_answer(buf[2:], qid)
        return RCODES.get(rcode, str(rcode)), addrs
