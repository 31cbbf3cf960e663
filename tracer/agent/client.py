"""The coordinator's end of one agent connection: requests by id, answers as futures, events to a
callback, heartbeats watched. A connection that ends, or stays silent for DEAD_AFTER_S, fails every
pending request with AgentError naming the node: the coordinator then calls it not observed.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from concurrent.futures import Future

from . import protocol as P
from .protocol import AgentError


class AgentClient:
    def __init__(self, sock: socket.socket, node: str, on_event=None, on_rows=None) -> None:
        self.sock = sock
        self.node = node
        self.on_event = on_event  # on_event(node, event dict), from the reader thread
        self.on_rows = on_rows  # on_rows(node, rows message): a watch's tick, from the reader thread
        self.agent_node: str | None = None
        self.dead: str | None = None  # why the connection is gone
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._lines = P.LineReader(sock)
        self._reader = threading.Thread(target=self._read, name=f"podpath-agent-{node}", daemon=True)

    @classmethod
    def connect(cls, sock: socket.socket, node: str, on_event=None, timeout: float = 5.0,
                on_rows=None) -> "AgentClient":
        c = cls(sock, node, on_event, on_rows)
        c._reader.start()
        hello = c.request({"type": "hello", "protocol": P.PROTOCOL, "client": "podpath"}).result(timeout)
        c.agent_node = hello.get("node")
        threading.Thread(target=c._watchdog, name=f"podpath-watchdog-{node}", daemon=True).start()
        return c

    def request(self, msg: dict) -> Future:
        fut: Future = Future()
        rid = next(self._ids)
        msg = {**msg, "id": rid}
        with self._lock:
            if self.dead:
                fut.set_exception(AgentError(f"agent on {self.node}: {self.dead}"))
                return fut
            self._pending[rid] = fut
        try:
            self.sock.sendall(P.encode(msg))
        except OSError as e:
            self._fail(f"connection lost ({e.strerror or e})")
        return fut

    def call(self, msg: dict, timeout: float = 30.0) -> dict:
        try:
            return self.request(msg).result(timeout)
        except TimeoutError:
            raise AgentError(f"agent on {self.node} did not answer {msg['type']} within {timeout:g} s") from None

    def _read(self) -> None:
        reader = self._lines
        try:
            while True:
                line = reader.readline()
                if line is None:
                    self._fail("connection closed by the agent")
                    return
                msg = P.decode(line)
                kind = msg["type"]
                if kind == "heartbeat":
                    continue
                if kind == "event":
                    if self.on_event is not None:
                        self.on_event(self.node, msg["event"])
                    continue
                if kind == "rows":
                    if self.on_rows is not None:
                        self.on_rows(self.node, msg)
                    continue
                with self._lock:
                    fut = self._pending.pop(msg.get("id"), None)
                if fut is None:
                    continue  # an error about no request of ours (a watch failed): the stop says it
                if kind == "error":
                    text = msg.get("message", "")
                    e = AgentError(text if msg.get("code") == "version" else f"agent on {self.node}: {text}")
                    e.code = msg.get("code")  # e.g. unknown_type: an older agent
                    fut.set_exception(e)
                else:
                    fut.set_result(msg)
        except P.ProtocolError as e:
            self._fail(f"sent a bad line ({e})")
        except OSError as e:
            self._fail(f"connection lost ({e.strerror or e})")

    def _watchdog(self) -> None:
        while not self.dead:
            time.sleep(P.HEARTBEAT_S)
            if time.monotonic() - self._lines.last_recv > P.DEAD_AFTER_S:
                self._fail(f"silent for {P.DEAD_AFTER_S:g} s (no heartbeat)")

    def _fail(self, why: str) -> None:
        with self._lock:
            if self.dead:
                return
            self.dead = why
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(AgentError(f"agent on {self.node}: {why}"))
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self._fail("closed")
        try:
            self.sock.close()
        except OSError:
            pass
