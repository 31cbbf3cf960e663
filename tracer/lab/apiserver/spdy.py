"""`kubectl port-forward`'s wire: SPDY/3.1 streams of the portforward.k8s.io protocol.

kubectl speaks SPDY to pods/portforward, either after an HTTP upgrade (POST, `Upgrade: SPDY/3.1`,
`X-Stream-Protocol-Version: portforward.k8s.io`) or tunnelled in a WebSocket (GET, subprotocol
`SPDY/3.1+portforward.k8s.io`, its default from 1.31 where KUBECTL_PORT_FORWARD_WEBSOCKETS holds).
For each local connection it opens two streams (SYN_STREAM) with headers streamtype=error|data,
port, requestid; kubelet answers each (SYN_REPLY), connects to 127.0.0.1:port inside the pod's
namespace once both are there, copies bytes on the data stream (DATA, FIN to half-close), and
writes a failure on the error stream. This is that server side, over any byte transport; the
connection itself is portforward.connect_in's, the same as for the WebSocket channels.

Header blocks are zlib streams, one per direction, primed with SPDY/3's dictionary (spdy-py's).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import zlib
from typing import Awaitable, Callable

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FIN = 0x01
VERSION = 3
CHUNK = 32 * 1024
PROTOCOL = "portforward.k8s.io"
TUNNEL = "SPDY/3.1+portforward.k8s.io"


def available() -> bool:
    try:
        from spdy.dictionary import zdict  # noqa: F401
    except ImportError:
        return False
    return True


def control(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def data_frame(stream: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">II", stream & 0x7FFFFFFF, (flags << 24) | len(payload)) + payload


def header_block(headers: dict[str, str]) -> bytes:
    out = struct.pack(">I", len(headers))
    for k, v in headers.items():
        out += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
    return out


def parse_header_block(raw: bytes) -> dict[str, str]:
    (n,), i, out = struct.unpack_from(">I", raw), 4, {}
    for _ in range(n):
        (kl,) = struct.unpack_from(">I", raw, i)
        k = raw[i + 4:i + 4 + kl].decode()
        i += 4 + kl
        (vl,) = struct.unpack_from(">I", raw, i)
        out[k.lower()] = raw[i + 4:i + 4 + vl].decode()
        i += 4 + vl
    return out


class _Pair:
    """One forwarded connection: its error and data streams, and the pod-side socket."""

    def __init__(self) -> None:
        self.error: int | None = None
        self.data: int | None = None
        self.port = 0
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)
        self.task: asyncio.Task | None = None
        self.writer: asyncio.StreamWriter | None = None


class Session:
    """The server end of one SPDY connection. feed() the bytes that arrive; it calls send(bytes)
    for what goes back, and connect(port) (in the pod's namespace) for each forwarded pair."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]],
                 connect: Callable[[int], Awaitable[socket.socket]], who: str, netns: str):
        from spdy.dictionary import zdict

        self.send, self.connect, self.who, self.netns = send, connect, who, netns
        self.inflate = zlib.decompressobj(zdict=zdict)
        self.deflate = zlib.compressobj(zdict=zdict)
        self.buf = b""
        self.pairs: dict[str, _Pair] = {}
        self.by_stream: dict[int, _Pair] = {}
        self.closed = asyncio.Event()
        self._lock = asyncio.Lock()

    async def write(self, frame: bytes) -> None:
        async with self._lock:  # frames never interleave
            await self.send(frame)

    def _headers_out(self, headers: dict[str, str]) -> bytes:
        return self.deflate.compress(header_block(headers)) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    async def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 8:
            (word, flags_len) = struct.unpack_from(">II", self.buf)
            length = flags_len & 0xFFFFFF
            if len(self.buf) < 8 + length:
                return
            flags, payload = flags_len >> 24, self.buf[8:8 + length]
            self.buf = self.buf[8 + length:]
            if word & 0x80000000:
                await self._control((word >> 16) & 0x7FFF, word & 0xFFFF, flags, payload)
            else:
                await self._data(word & 0x7FFFFFFF, flags, payload)

    async def _control(self, version: int, kind: int, flags: int, payload: bytes) -> None:
        if kind == SYN_STREAM:
            stream = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
            headers = parse_header_block(self.inflate.decompress(payload[10:]))
            await self.write(control(SYN_REPLY, 0, struct.pack(">I", stream) + self._headers_out({})))
            await self._new_stream(stream, headers)
        elif kind == PING:
            await self.write(control(PING, 0, payload))
        elif kind == RST_STREAM:
            pair = self.by_stream.get(struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF)
            if pair is not None and pair.task is not None:
                pair.task.cancel()
        elif kind == GOAWAY:
            self.closed.set()
        elif kind == HEADERS:
            self.inflate.decompress(payload[4:])  # keeps the shared zlib stream in step
        # SETTINGS, WINDOW_UPDATE: nothing to do here (the pod side applies TCP's own back-pressure)

    async def _new_stream(self, stream: int, headers: dict[str, str]) -> None:
        rid, kind = headers.get("requestid", ""), headers.get("streamtype", "")
        pair = self.pairs.setdefault(rid, _Pair())
        try:
            pair.port = int(headers.get("port", "0"))
        except ValueError:
            pair.port = 0
        if kind == "error":
            pair.error = stream
        elif kind == "data":
            pair.data = stream
        else:
            await self.write(control(RST_STREAM, 0, struct.pack(">II", stream, 1)))  # PROTOCOL_ERROR
            return
        self.by_stream[stream] = pair
        if pair.error is not None and pair.data is not None and pair.task is None:
            pair.task = asyncio.create_task(self._forward(pair))

    async def _data(self, stream: int, flags: int, payload: bytes) -> None:
        pair = self.by_stream.get(stream)
        if pair is None or stream != pair.data:
            return  # the error stream carries nothing from the client
        if payload:
            await self.write(control(WINDOW_UPDATE, 0, struct.pack(">II", stream, len(payload))))
            await pair.inbox.put(payload)
        if flags & FIN:
            await pair.inbox.put(None)

    async def _forward(self, pair: _Pair) -> None:
        assert pair.data is not None and pair.error is not None
        try:
            sock = await self.connect(pair.port)
        except Exception as e:  # noqa: BLE001 - told on the error stream, as kubelet does
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            msg = (f"error forwarding port {pair.port} to pod {self.who}: failed to connect to "
                   f"localhost:{pair.port} inside namespace {self.netns!r}: {why.lower()}")
            await self.write(data_frame(pair.error, FIN, msg.encode()))
            await self.write(data_frame(pair.data, FIN, b""))
            return
        reader, writer = await asyncio.open_connection(sock=sock)
        pair.writer = writer

        async def to_pod() -> None:
            while (chunk := await pair.inbox.get()) is not None:
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

        up = asyncio.create_task(to_pod())
        try:
            while chunk := await reader.read(CHUNK):
                await self.write(data_frame(pair.data, 0, chunk))
            await self.write(data_frame(pair.data, FIN, b""))
            await self.write(data_frame(pair.error, FIN, b""))
        except (ConnectionError, OSError):
            pass
        finally:
            up.cancel()
            await asyncio.gather(up, return_exceptions=True)
            writer.close()

    async def close(self) -> None:
        """The client went away: every pod-side socket goes too."""
        tasks = [p.task for p in self.pairs.values() if p.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for p in self.pairs.values():
            if p.writer is not None:
                p.writer.close()
