"""Real test traffic between lab pods: ping, TCP connect (+ HTTP), DNS query. Inside lab namespaces only.

Each probe runs in a thread that entered the source pod's namespace, so its sockets live there;
nothing is sent from or to the root namespace. A probe waits at most `timeout` seconds.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import random
import socket
import struct
import time
from dataclasses import dataclass

from ..errors import UsageError
from . import dns, nsutil
from .topology import PODS, SERVICES, Names, pod, service
from ..packet import inet_checksum as _checksum

IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2
DNS_PROBE_NAME = "web.default.svc.cluster.local"
DNS_PROBE_ANSWER = "10.96.0.100"


@dataclass
class Result:
    ok: bool
    detail: str
    answered_by: str | None = None  # TCP: the pod whose server answered (web servers reply their name)
    elapsed: float = 0.0


@dataclass
class Target:
    src_pod: str
    src_netns: str
    dst_ip: str
    proto: str
    port: int | None
    size: int | None
    sport: int | None = None


def resolve(names: Names, src: str, dst: str, proto: str = "icmp", port: int | None = None,
            size: int | None = None, sport: int | None = None) -> Target:
    """src: a pod name or pod IP; dst: a pod name, "svc/<ns>/<name>:<port>", or an IP."""
    by_ip = {p.ip: p.name for p in PODS}
    src_name = by_ip.get(src, src)
    try:
        pod(src_name)
    except KeyError:
        raise UsageError(f"probe source {src!r} is not a lab pod ({', '.join(p.name for p in PODS)})") from None
    if dst.startswith("svc/"):
        try:
            ns_name, _, rest = dst[4:].partition("/")
            svc_name, _, p = rest.partition(":")
            s = service(ns_name, svc_name)
        except KeyError:
            raise UsageError(f"unknown service {dst!r}; lab services: "
                             + ", ".join(f"svc/{s.namespace}/{s.name}" for s in SERVICES)) from None
        dst_ip = s.cluster_ip
        port = port or (int(p) if p else s.ports[0].port)
    else:
        try:
            dst_ip = pod(dst).ip
        except KeyError:
            try:
                dst_ip = str(ipaddress.IPv4Address(dst))
            except ValueError:
                raise UsageError(f"probe destination {dst!r} is not a pod, svc/<ns>/<name>:<port> or IPv4") from None
    proto = proto.lower()
    if proto not in ("icmp", "tcp", "udp"):
        raise UsageError(f"protocol {proto!r} is not icmp, tcp or udp")
    if proto != "icmp" and not port:
        raise UsageError(f"a {proto} probe needs a port")
    return Target(src_name, names.netns(src_name), dst_ip, proto, port, size, sport)


def run(t: Target, timeout: float = 1.0) -> Result:
    start = time.monotonic()
    if t.proto == "icmp":
        fn = _ping
    elif t.port == 53:
        fn = _dns
    elif t.proto == "tcp":
        fn = _http
    else:
        fn = _udp
    try:
        res = nsutil.in_netns(t.src_netns, fn, t, timeout)
    except socket.timeout:
        res = Result(False, f"no answer within {timeout:g}s")
    except ConnectionRefusedError:
        res = Result(False, "connection refused (RST or ICMP port unreachable)")
    except OSError as e:
        res = Result(False, f"{errno.errorcode.get(e.errno or 0, e.errno)}: {e.strerror or e}")
    res.elapsed = round(time.monotonic() - start, 3)
    return res


ICMP_UNREACH = {0: "net unreachable", 1: "host unreachable", 3: "port unreachable", 4: "fragmentation needed",
                9: "net prohibited", 10: "host prohibited", 13: "administratively prohibited"}


def _ping(t: Target, timeout: float) -> Result:
    """One ICMP echo with DF set and `size` payload bytes (default 56, like ping)."""
    size = t.size if t.size is not None else 56
    ident, seq = random.randrange(1, 0xFFFF), 1
    payload = os.urandom(size)
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    pkt = struct.pack("!BBHHH", 8, 0, _checksum(hdr + payload), ident, seq) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        s.settimeout(timeout)
        deadline = time.monotonic() + timeout
        s.sendto(pkt, (t.dst_ip, 0))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return Result(False, f"no echo reply within {timeout:g}s")
            s.settimeout(left)
            data, (frm, _) = s.recvfrom(65535)
            ihl = (data[0] & 0x0F) * 4
            icmp = data[ihl:]
            if len(icmp) < 8:
                continue
            typ, code, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
            if typ == 0 and rid == ident and rseq == seq:
                return Result(True, f"echo reply from {frm}", answered_by=frm)
            if typ in (3, 11) and len(icmp) >= 36:
                inner = icmp[8:]
                iihl = (inner[0] & 0x0F) * 4
                if len(inner) >= iihl + 8:
                    ityp, _, _, iid, _ = struct.unpack("!BBHHH", inner[iihl:iihl + 8])
                    if ityp == 8 and iid == ident:
                        what = ICMP_UNREACH.get(code, f"code {code}") if typ == 3 else "time exceeded"
                        return Result(False, f"ICMP {what} from {frm}")


def _http(t: Target, timeout: float) -> Result:
    with socket.create_connection((t.dst_ip, t.port), timeout=timeout) as s:
        s.sendall(f"GET / HTTP/1.0\r\nHost: {t.dst_ip}\r\n\r\n".encode())
        buf = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/"):
        return Result(False, f"connected, but no HTTP answer ({len(buf)} bytes)")
    who = body.decode(errors="replace").strip() or None
    return Result(True, f"{head.splitlines()[0].decode()} from {who}", answered_by=who)


def _dns(t: Target, timeout: float) -> Result:
    query = dns.query_udp if t.proto == "udp" else dns.query_tcp
    kw = {"sport": t.sport} if t.proto == "udp" and t.sport else {}
    rcode, addrs = query(t.dst_ip, DNS_PROBE_NAME, timeout=timeout, port=t.port or 53, **kw)
    ok = rcode == "NOERROR" and DNS_PROBE_ANSWER in addrs
    return Result(ok, f"{DNS_PROBE_NAME}: {rcode} {' '.join(addrs)}".strip())


def _udp(t: Target, timeout: float) -> Result:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((t.dst_ip, t.port))
        s.send(b"podpath probe\n")
        data = s.recv(4096)
    return Result(True, f"{len(data)} bytes back")


def send_udp(ns: str, dst: str, port: int = 9) -> None:
    """Fire one datagram from namespace ns (to make the kernel resolve a neighbour); errors ignored."""
    def _send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.sendto(b"podpath", (dst, port))
            except OSError:
                pass
    nsutil.in_netns(ns, _send)
