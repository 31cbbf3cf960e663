"""The agent protocol: JSON lines over one byte stream (docs/agent-protocol.md is its reference).

One UTF-8 JSON object per line, each with a "type". The client speaks first (`hello` with its
PROTOCOL); the agent answers `hello` (or one `error` naming both versions, then closes). Requests
carry an "id" that the answer repeats. The agent also writes, unasked, `event` lines (an armed
session's events as they come) and `heartbeat` lines (every HEARTBEAT_S seconds), so a silent
agent is a dead one after DEAD_AFTER_S.

Everything here is pure: encoding, decoding with limits, and the error a bad line becomes. The
stream ends (server.py, client.py) only read and write lines.
"""

from __future__ import annotations

import json
import socket
import time

from ..errors import PodpathError

PROTOCOL = 1
PORT = 4244
# A node's bundle is the largest message: a few MB on a busy node. Anything longer is refused
# (and skipped up to its newline) rather than buffered without end.
MAX_LINE = 64 * 1024 * 1024
HEARTBEAT_S = 0.5
DEAD_AFTER_S = 3.0  # no line at all for this long: the agent (or the way to it) is gone

# `counters`, `watch` and `chains` came within protocol 1: an agent of an older release answers
# them unknown_type, which the coordinator says in one line (`chains` is asked for only after a
# snapshot answered with live_rules, which such an agent never sends)
REQUESTS = ("hello", "snapshot", "arm", "attach", "send", "stop", "counters", "watch", "chains", "ping")
# what the agent writes: answers to requests, and the unsolicited lines (`rows`: a watch's rows of
# one tick, until `stop`)
ANSWERS = {"hello": "hello", "snapshot": "bundle", "arm": "armed", "attach": "attached", "send": "result",
           "stop": "result", "counters": "counters", "watch": "watching", "chains": "chains", "ping": "pong"}
UNSOLICITED = ("event", "heartbeat", "error", "rows")
ERROR_CODES = ("bad_json", "too_long", "bad_request", "unknown_type", "version", "not_armed", "busy", "failed",
               "no_pod")


class AgentError(PodpathError):
    """An agent could not be reached, spoke another protocol, or failed a request."""

    exit_code = 8


class ProtocolError(ValueError):
    """One bad line: code is one of ERROR_CODES; the connection stays usable."""

    def __init__(self, code: str, message: str, req_id=None) -> None:
        super().__init__(message)
        self.code = code
        self.req_id = req_id


def encode(msg: dict) -> bytes:
    """One message as its line (compact JSON, newline-terminated)."""
    line = json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    if len(line) > MAX_LINE:
        raise ProtocolError("too_long", f"message of {len(line)} bytes is over the {MAX_LINE}-byte line limit",
                            msg.get("id"))
    return line


def decode(line: bytes) -> dict:
    """A line back to a message, or ProtocolError (never anything else) saying what is wrong."""
    try:
        msg = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError("bad_json", f"line is not JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_request", "a message is a JSON object with a \"type\"")
    kind = msg.get("type")
    req_id = msg.get("id")
    if not isinstance(req_id, (int, str, type(None))) or isinstance(req_id, bool):
        raise ProtocolError("bad_request", "\"id\" must be a number or a string")
    if not isinstance(kind, str):
        raise ProtocolError("bad_request", "message has no \"type\"", req_id)
    return msg


def error(code: str, message: str, req_id=None) -> dict:
    return {"type": "error", "id": req_id, "code": code, "message": message}


def version_mismatch(theirs, ours: int = PROTOCOL) -> str:
    """The one line both ends print when their versions differ."""
    return (f"agent protocol version mismatch: the coordinator speaks {theirs!r}, the agent speaks {ours}; "
            "run the same podpath release on both ends")


def check_hello(msg: dict) -> None:
    if msg.get("type") != "hello":
        raise ProtocolError("bad_request", f"the first message must be hello, not {msg.get('type')!r}",
                            msg.get("id"))
    if msg.get("protocol") != PROTOCOL:
        raise ProtocolError("version", version_mismatch(msg.get("protocol")), msg.get("id"))


class LineReader:
    """Lines off a socket with a length limit: an over-long line is reported once and skipped."""

    def __init__(self, sock: socket.socket, limit: int = MAX_LINE) -> None:
        self.sock = sock
        self.limit = limit
        self._buf = bytearray()
        self._skipping = False
        self.last_recv = time.monotonic()  # any bytes count as life: a bundle can take seconds to arrive

    def readline(self) -> bytes | None:
        """The next line (without its newline); None at end of stream; ProtocolError("too_long")
        for a line over the limit (the rest of it is then discarded)."""
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[:nl + 1]
                if self._skipping:
                    self._skipping = False
                    continue
                if len(line) > self.limit:
                    raise ProtocolError("too_long", f"line of {len(line)} bytes is over the {self.limit}-byte limit")
                return line
            if len(self._buf) > self.limit:
                was = self._skipping
                self._buf.clear()
                self._skipping = True
                if not was:
                    raise ProtocolError("too_long", f"line over the {self.limit}-byte limit; skipped to its end")
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.last_recv = time.monotonic()
            self._buf += chunk
