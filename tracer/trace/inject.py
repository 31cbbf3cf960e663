"""Test packets from the source pod's namespace: ICMP echo (default), TCP SYN, UDP.

Sockets are created (and bound, so the source port is known before the BPF filter is loaded) in a
short-lived thread that entered the pod's namespace (tracer/netns.py); a socket keeps the namespace
it was created in, so sending and reading happen from the calling thread afterwards.

A send error (ENETUNREACH without a route, EPERM from an OUTPUT drop, EMSGSIZE with DF over the
MTU) is returned in the result, never raised: it is the `unsent` verdict.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import struct
import time
from dataclasses import asdict, dataclass, field

from ..netns import run_in
from ..packet import inet_checksum as _checksum

IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DO = getattr(socket, "IP_PMTUDISC_DO", 2)
IP_HDR, ICMP_HDR, UDP_HDR, TCP_HDR = 20, 8, 8, 20
MARKER = b"podpath-trace "
FINAL_ANSWERS = ("echo-reply", "datagram", "connected", "refused")


def new_icmp_id() -> int:
    """A random, non-zero ICMP identifier: one per trace, so two traces never see each other's packets."""
    return secrets.randbelow(0xFFFE) + 1


@dataclass
class InjectRequest:
    """What to send (serialisable)."""

    netns: str  # the source pod's namespace (/run/netns name or path)
    src: str
    dst: str
    proto: str = "icmp"
    dport: int | None = None
    size: int = 84  # IP packet size, DF set
    count: int = 1
    icmp_id: int | None = None
    interval: float = 0.0  # between packets when count > 1
    payload_hex: str | None = None  # udp: what to send (a DNS query), instead of podpath's marker
    sport: int | None = None  # tcp/udp: bind this source port (default: any free one)


@dataclass
class InjectResult:
    proto: str
    sent: int = 0
    error: str | None = None  # errno name (ENETUNREACH, EPERM, EMSGSIZE...)
    message: str | None = None  # strerror text
    sport: int | None = None
    icmp_id: int | None = None
    seqs: list[int] = field(default_factory=list)
    answer: str | None = None  # tcp: connected / refused / timeout; icmp: echo-reply / none; udp: datagram / refused / none
    reply_hex: str | None = None  # udp: the first datagram that came back (a DNS answer)
    t_first_send_ns: int | None = None  # CLOCK_MONOTONIC, the clock BPF's ts_ns uses
    # (start, end) of each send call, CLOCK_MONOTONIC ns: the route lookups made inside belong to it
    send_windows: list[tuple[int, int]] = field(default_factory=list)

    @property
    def unsent(self) -> bool:
        return self.sent == 0 and self.error is not None

    def to_dict(self) -> dict:
        return asdict(self)


def _err(e: OSError) -> tuple[str, str]:
    code = e.errno or 0
    return errno.errorcode.get(code, str(code)), os.strerror(code) if code else str(e)


def icmp_echo(ident: int, seq: int, payload_len: int) -> bytes:
    payload = (MARKER * (payload_len // len(MARKER) + 1))[:max(payload_len, 0)]
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    csum = _checksum(hdr + payload)
    return struct.pack("!BBHHH", 8, 0, csum, ident, seq) + payload


class Injector:
    """prepare() makes the sockets inside the pod (so sport is known), send() fires, close() closes."""

    def __init__(self, req: InjectRequest) -> None:
        self.req = req
        if req.proto == "icmp" and req.icmp_id is None:
            req.icmp_id = new_icmp_id()
        self.result = InjectResult(proto=req.proto, icmp_id=req.icmp_id)
        self.socks: list[socket.socket] = []

    # -- set-up inside the namespace ---------------------------------------------------------

    def prepare(self) -> InjectResult:
        try:
            self.socks = run_in(self.req.netns, self._make)
        except OSError as e:
            self.result.error, self.result.message = _err(e)
        if self.socks and self.req.proto in ("tcp", "udp"):
            self.result.sport = self.socks[0].getsockname()[1]
        return self.result

    def _make(self) -> list[socket.socket]:
        r = self.req
        made: list[socket.socket] = []
        try:
            if r.proto == "icmp":
                s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
                made.append(s)
                s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
            elif r.proto == "udp":
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                made.append(s)
                s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((r.src, r.sport or 0))
            elif r.proto == "tcp":
                # one socket per attempt (count), each bound now so the filter knows the first port
                for _ in range(max(r.count, 1)):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    made.append(s)
                    s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((r.src, r.sport or 0))
                    s.setblocking(False)
                    if r.count > 1:
                        break  # the BPF filter matches one source port: send one SYN per trace
            else:
                raise ValueError(f"unknown protocol {r.proto}")
        except BaseException:
            for s in made:
                s.close()
            raise
        return made

    # -- sending -----------------------------------------------------------------------------

    def send(self) -> InjectResult:
        r, res = self.req, self.result
        if res.error or not self.socks:
            return res
        try:
            self._t_call = None
            if r.proto == "icmp":
                payload = r.size - IP_HDR - ICMP_HDR
                for seq in range(1, max(r.count, 1) + 1):
                    self._stamp()
                    self.socks[0].sendto(icmp_echo(r.icmp_id, seq, payload), (r.dst, 0))
                    res.sent += 1
                    res.seqs.append(seq)
                    if r.interval and seq < r.count:
                        time.sleep(r.interval)
            elif r.proto == "udp":
                payload = bytes.fromhex(r.payload_hex) if r.payload_hex is not None else \
                    (MARKER * (r.size // len(MARKER) + 1))[:max(r.size - IP_HDR - UDP_HDR, 0)]
                # connected, so an ICMP port unreachable (a REJECT, no listener) comes back as ECONNREFUSED
                self.socks[0].connect((r.dst, r.dport))
                for i in range(max(r.count, 1)):
                    self._stamp()
                    self.socks[0].send(payload)
                    res.sent += 1
                    if r.interval and i + 1 < r.count:
                        time.sleep(r.interval)
            elif r.proto == "tcp":
                self._stamp()
                code = self.socks[0].connect_ex((r.dst, r.dport))
                if code not in (0, errno.EINPROGRESS, errno.EALREADY):
                    raise OSError(code, os.strerror(code))
                res.sent += 1
        except OSError as e:
            res.error, res.message = _err(e)
        self._close_window()
        return res

    def _stamp(self) -> None:
        """Called just before each send call: opens its window (and closes the previous one)."""
        self._close_window()
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        if self.result.t_first_send_ns is None:
            self.result.t_first_send_ns = now
        self._t_call = now

    def _close_window(self) -> None:
        if getattr(self, "_t_call", None) is not None:
            self.result.send_windows.append((self._t_call, time.clock_gettime_ns(time.CLOCK_MONOTONIC)))
            self._t_call = None

    def check_answer(self) -> str | None:
        """After waiting: what the source socket itself saw (tcp connect state, icmp echo reply)."""
        r, res = self.req, self.result
        if not self.socks or res.sent == 0 or res.answer in FINAL_ANSWERS:
            return res.answer  # an answer already read stays read
        s = self.socks[0]
        if r.proto == "tcp":
            code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == 0:
                try:
                    s.getpeername()
                    res.answer = "connected"
                except OSError:
                    res.answer = "timeout"
            elif code == errno.ECONNREFUSED:
                res.answer = "refused"
            else:
                res.answer = errno.errorcode.get(code, str(code))
                if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                    res.answer = "unreachable"
        elif r.proto == "udp":
            s.setblocking(False)
            res.answer = "none"
            try:
                data = s.recv(65535)
                res.answer, res.reply_hex = "datagram", data.hex()
            except (BlockingIOError, InterruptedError):
                pass
            except ConnectionRefusedError:
                res.answer = "refused"  # an ICMP port unreachable came back (a REJECT, or no listener)
            except OSError as e:
                res.answer = _err(e)[0]
        elif r.proto == "icmp":
            s.setblocking(False)
            res.answer = "none"
            try:
                while True:
                    data = s.recv(65535)
                    ihl = (data[0] & 0x0F) * 4
                    t, _c, _ck, ident, _seq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
                    if t == 0 and ident == r.icmp_id:
                        res.answer = "echo-reply"
                        break
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:
                res.answer = _err(e)[0]
        return res.answer

    def close(self) -> None:
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.socks = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
