"""`pods/{name}/portforward` over WebSocket, relayed as kubelet relays it.

The wire format is kubelet's WebSocket port-forward (the official Python client's
`kubernetes.stream.portforward` speaks it): subprotocol `v4.channel.k8s.io` (or the older
unnamed channel protocol; `v5.channel.k8s.io` when a client offers only that); binary frames whose
first byte is the channel, two channels per requested port (data 2i, error 2i+1); the server's
first frame on each channel is the port, 2 bytes little-endian. For each port the relay connects
to 127.0.0.1:<port> *inside the pod's network namespace* (from a thread that entered it: a socket
keeps the namespace it was made in) and copies bytes both ways. A failed connection is told on the
port's error channel in kubelet's words. When every port's connection has ended the WebSocket is
closed (kubelet's conn.Close()); when the client goes away every pod-side socket is closed.

kubectl's own port-forward speaks SPDY/3.1 instead (spdy.py): after a POST upgrade
(`spdy_upgrade`) or inside a WebSocket (`spdy_tunnel`); its connections are made the same way.

It never connects anywhere but the pod's namespace: a pod without one is refused (400), and a
namespace that cannot be entered is an error on the channel, never a fallback to our own.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from aiohttp import WSMsgType, web

from ...netns import run_in
from . import spdy

V4 = "v4.channel.k8s.io"
V5 = "v5.channel.k8s.io"
CLOSE_CHANNEL = 255  # v5: [255, channel] = the client closed its writing side of that channel
CONNECT_TIMEOUT = 5.0
CHUNK = 64 * 1024


class Refused(Exception):
    """A request kubelet would not upgrade: (HTTP code, reason, message)."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason = code, reason


def parse_ports(values: list[str]) -> list[int]:
    """`?ports=4244,8080` (or repeated): each a TCP port, no duplicates (as kubelet checks them)."""
    ports: list[int] = []
    for v in values:
        for part in filter(None, (x.strip() for x in v.split(","))):
            try:
                port = int(part)
            except ValueError:
                raise Refused(400, "BadRequest", f"unable to parse {part!r} as a port") from None
            if not 0 < port < 65536:
                raise Refused(400, "BadRequest", f"port {port} must be > 0 and < 65536")
            if port in ports:
                raise Refused(400, "BadRequest", f"port {port} is given twice")
            ports.append(port)
    if not ports:
        raise Refused(400, "BadRequest", 'query parameter "ports" is required: give the pod ports to forward')
    return ports


def choose_protocol(offered: str) -> str | None:
    """kubelet's choice among what the client offers: v4 first (port-forward has no v5 of its own),
    v5 only when that is all a client speaks, the unnamed protocol when none is offered."""
    asked = [p.strip() for p in offered.split(",") if p.strip()]
    if not asked:
        return ""
    for want in (V4, V5, "channel.k8s.io"):
        if want in asked:
            return want
    return None


class _Port:
    def __init__(self, index: int, port: int):
        self.index, self.port = index, port
        self.data, self.error = 2 * index, 2 * index + 1
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)  # client -> pod (None: EOF)
        self.ended = False
        self.sock: socket.socket | None = None


async def connect_in(netns: str, port: int) -> socket.socket:
    """A TCP connection to 127.0.0.1:port made inside netns (a thread enters it; the socket keeps
    it). Raises OSError, or PodpathError when the namespace cannot be entered: never elsewhere."""
    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
    return await asyncio.to_thread(run_in, netns, connect)


async def relay(request: web.Request, netns: str, who: str) -> web.WebSocketResponse:
    """Upgrade the request and relay each port until both sides are done. who: "ns/name, uid U"."""
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    if spdy.TUNNEL in [p.strip() for p in offered.split(",")] and spdy.available():
        return await spdy_tunnel(request, netns, who)
    protocol = choose_protocol(offered)
    if protocol is None:
        raise Refused(400, "BadRequest", f"unsupported WebSocket subprotocol {offered!r}; ask for {V4}")
    ports = parse_ports(request.query.getall("ports", []) + request.query.getall("port", []))
    ws = web.WebSocketResponse(protocols=[protocol] if protocol else (), max_msg_size=0, autoping=True)
    if not ws.can_prepare(request).ok:
        raise Refused(400, "BadRequest", "Upgrade request required")
    await ws.prepare(request)
    relays = [_Port(i, p) for i, p in enumerate(ports)]
    for r in relays:
        head = struct.pack("<H", r.port)
        await ws.send_bytes(bytes([r.data]) + head)
        await ws.send_bytes(bytes([r.error]) + head)

    workers = [asyncio.create_task(_forward(ws, r, netns, who)) for r in relays]
    reader = asyncio.create_task(_from_client(ws, relays, protocol == V5))
    all_ended = asyncio.gather(*workers)
    all_ended.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: never "unretrieved"
    try:
        await asyncio.wait([all_ended, reader], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in [*workers, reader]:
            t.cancel()
        await asyncio.gather(*workers, reader, return_exceptions=True)
        for r in relays:  # whoever ended first, no pod-side socket outlives the stream
            if r.sock is not None:
                r.sock.close()
        await ws.close()
    return ws


async def _from_client(ws: web.WebSocketResponse, relays: list[_Port], v5: bool) -> None:
    """Frames from the client to their port's inbox, until the client closes or goes away."""
    by_channel = {r.data: r for r in relays}
    async for msg in ws:
        if msg.type != WSMsgType.BINARY or not msg.data:
            continue
        channel, payload = msg.data[0], msg.data[1:]
        if v5 and channel == CLOSE_CHANNEL and payload and payload[0] in by_channel:
            r = by_channel[payload[0]]
            if not r.ended:
                await r.inbox.put(None)
            continue
        r = by_channel.get(channel)
        if r is not None and not r.ended and payload:
            await r.inbox.put(payload)


async def _forward(ws: web.WebSocketResponse, r: _Port, netns: str, who: str) -> None:
    """Connect inside the pod's namespace, then copy both ways; an error goes on the error channel."""
    try:
        r.sock = await connect_in(netns, r.port)
    except Exception as e:  # noqa: BLE001 - OSError, or a namespace that cannot be entered: told, not raised
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        r.ended = True
        _drain(r.inbox)
        await ws.send_bytes(bytes([r.error]) + (
            f"error forwarding port {r.port} to pod {who}: failed to connect to localhost:{r.port} inside "
            f"namespace {netns!r}: {why.lower()}").encode())
        return
    reader, writer = await asyncio.open_connection(sock=r.sock)
    to_pod = asyncio.create_task(_to_pod(r, writer))
    try:
        while data := await reader.read(CHUNK):
            await ws.send_bytes(bytes([r.data]) + data)
    except (ConnectionError, OSError):
        pass
    finally:
        r.ended = True
        to_pod.cancel()
        await asyncio.gather(to_pod, return_exceptions=True)
        writer.close()


async def _to_pod(r: _Port, writer: asyncio.StreamWriter) -> None:
    while True:
        data = await r.inbox.get()
        if data is None:
            if writer.can_write_eof():
                writer.write_eof()
            continue
        writer.write(data)
        await writer.drain()


async def spdy_tunnel(request: web.Request, netns: str, who: str) -> web.WebSocketResponse:
    """kubectl's SPDY/3.1 carried in WebSocket binary messages (subprotocol SPDY/3.1+portforward.k8s.io)."""
    ws = web.WebSocketResponse(protocols=[spdy.TUNNEL], max_msg_size=0, autoping=True)
    await ws.prepare(request)
    session = spdy.Session(ws.send_bytes, lambda port: connect_in(netns, port), who, netns)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await session.feed(msg.data)
            if session.closed.is_set():
                break
    finally:
        await session.close()
        await ws.close()
    return ws


async def spdy_upgrade(request: web.Request, netns: str, who: str) -> web.StreamResponse:
    """kubectl's SPDY/3.1 after an HTTP upgrade (POST, 101 Switching Protocols). aiohttp parses
    only WebSocket upgrades, so the connection's bytes are taken from its parser first."""
    if spdy.PROTOCOL not in ",".join(request.headers.getall("X-Stream-Protocol-Version", [])):
        raise Refused(400, "BadRequest", f"X-Stream-Protocol-Version must offer {spdy.PROTOCOL}")
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("connection lost")
    incoming: asyncio.Queue[bytes | None] = asyncio.Queue()

    class Raw:  # what aiohttp's protocol feeds once a parser is set (as it does for WebSockets)
        def feed_data(self, data: bytes) -> tuple[bool, bytes]:
            incoming.put_nowait(bytes(data))
            return False, b""

        def feed_eof(self) -> None:
            incoming.put_nowait(None)

    request.protocol.set_parser(Raw())
    resp = web.StreamResponse(status=101, headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                                   "X-Stream-Protocol-Version": spdy.PROTOCOL})
    resp.force_close()
    await resp.prepare(request)

    async def send(frame: bytes) -> None:
        if not transport.is_closing():
            transport.write(frame)

    session = spdy.Session(send, lambda port: connect_in(netns, port), who, netns)
    try:
        while not session.closed.is_set() and (data := await incoming.get()) is not None:
            await session.feed(data)
    finally:
        await session.close()
        transport.close()
    return resp


def _drain(q: asyncio.Queue) -> None:
    while not q.empty():
        q.get_nowait()
