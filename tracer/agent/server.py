"""`podpath agent`: one per node, listening on 127.0.0.1 only, serving coordinators over the protocol.

Warm state: the imports done, the API client made once, and podpath's BPF programs loaded once
(a ProbePool: the verifier's work is paid at start, not per trace). Each `arm` takes a loaded set
from the pool, writes its flow's filter into it (.data), opens its gate and attaches what the set
does not already have; the session's end closes the gate and gives the set back with its links
lingering (the next trace reuses them). Idle for the linger period (probes.LINGER_S), the agent
holds loaded programs and no link: nothing runs on traffic. Two coordinators at once take two sets
(a second one is loaded then, and kept).

Each connection is one coordinator, served by its own thread with its own session; a connection
that drops closes its session (every link is fd-owned: nothing stays attached). Events are kept
only from this node's namespaces (tracepoints are global; in the lab several agents share one
kernel) and stamped relative to the arm time (join.shift): no coordinator compares two clocks.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from ..errors import PodpathError, UsageError
from . import protocol as P

log = logging.getLogger("podpath.agent")


class OwnNamespaces:
    """keep(event): the event happened in one of this node's namespaces. An event without a
    namespace (some route lookups) goes with the one before it on the same CPU, as join.split does."""

    def __init__(self, inodes) -> None:
        self.inodes = set(inodes)
        self._last_on_cpu: dict[int, bool] = {}

    def __call__(self, e) -> bool:
        if e.netns:
            mine = e.netns in self.inodes
            self._last_on_cpu[e.cpu] = mine
            return mine
        return self._last_on_cpu.get(e.cpu, False)


def node_inodes() -> set[int]:
    """This node's namespace and its pods' (what an agent keeps events of)."""
    from ..netns import inode
    from ..sources.discovery import discover

    return {inode(None)} | {ns.inode for ns in discover(None)}


def _fewer_malloc_arenas() -> None:
    """glibc gives each new thread its own malloc arena (up to 8 per CPU); an agent starts threads
    per connection and per session, and the arenas' freed memory stays in its RSS. Two suffice."""
    import ctypes
    import ctypes.util

    M_ARENA_MAX = -8
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


class Agent:
    """The warm, shared part: how to snapshot this node. Connections hold everything else."""

    def __init__(self, kube=None, node_name: str | None = None, warn=None) -> None:
        self.kube = kube
        self.node_name = node_name
        self.warn = warn or (lambda m: log.warning("%s", m))
        self.traces = 0
        self.pod_netns: dict[str, str] = {}  # pod IP -> its namespace here, from the last snapshot
        from ..probes import ProbePool
        self.probes = ProbePool()  # loaded probe sets, shared by the sessions of every connection
        self._snap_lock = threading.Lock()
        self._warm()

    def _warm(self) -> None:
        """What every trace would otherwise pay first: imports, the probes loaded (in the
        background: a trace that comes first waits for them)."""
        from .. import diagnose  # noqa: F401
        from ..probes import keep_kernel_names, object_path
        from ..snapshot import live  # noqa: F401
        from ..trace import session  # noqa: F401

        keep_kernel_names()
        _fewer_malloc_arenas()
        for name in ("tc.agent", "trace.agent"):  # what ProbePool loads
            try:
                object_path(name)
            except PodpathError as e:  # said now; the first `arm` fails with the same words
                self.warn(f"BPF object {name}: {e}")
                return
        self.probes.preload()

    def snapshot(self, targets=(), inventory: bool = True):
        """This node's bundle; inventory False: its API view holds only the names of its hosts (a
        coordinator that reads the cluster's facts itself wants no more)."""
        from ..sources.node import NodeSource

        src = NodeSource(self.kube, warn=self.warn, kube_error="" if self.kube is None else None,
                         node_name=self.node_name, names_only=not inventory)
        bundle = src.snapshot(tuple(targets))
        self.last_snapshot_timings = dict(src.timings)
        if self.node_name is None:
            self.node_name = bundle.hosts[0].name
        from ..targets.resolve import primary_ip
        self.pod_netns = {ip: h.netns for h in bundle.hosts[1:] if h.netns and (ip := primary_ip(h))}
        self._remember_path(bundle)
        return bundle

    def _remember_path(self, bundle) -> None:
        """What flannel's path crosses here, for attaching before the next trace's snapshot is done:
        each pod's eth0, its host veth and bridge; the VXLAN device and the uplink."""
        from ..netns import OWN_NETNS
        from ..targets.resolve import primary_ip

        node = bundle.hosts[0]
        pods = {}
        for h in bundle.hosts[1:]:
            ip = primary_ip(h)
            veth = next((l for l in node.links if l.kind == "veth" and l.peer_host == h.name), None)
            if ip and h.netns:
                pods[ip] = [(h.netns, "eth0")] + ([(OWN_NETNS, veth.name)] if veth else []) + \
                    ([(OWN_NETNS, veth.master)] if veth is not None and veth.master else [])
        uplink = next((r.dev for r in node.routes if r.dst == "default" and r.dev), None)
        cross = [(OWN_NETNS, l.name) for l in node.links if l.kind == "vxlan"] + ([(OWN_NETNS, uplink)] if uplink else [])
        self.path = {"pods": pods, "cross": cross}

    def path_devices(self, ips, cross: bool) -> list[tuple[str, str]]:
        path = getattr(self, "path", None) or {"pods": {}, "cross": []}
        out = [d for ip in ips for d in path["pods"].get(ip, [])] + (path["cross"] if cross else [])
        return list(dict.fromkeys(out))

    def netns_of(self, ip: str) -> str | None:
        """The namespace of this node's pod with address ip: the last snapshot's, if it still
        exists, else from a fresh snapshot (a pod started since)."""
        from ..netns import inode

        ns = self.pod_netns.get(ip)
        if ns is not None and inode(ns) is not None:
            return ns
        with self._snap_lock:
            self.snapshot()
        return self.pod_netns.get(ip)


class Connection:
    """One coordinator: reads requests, writes answers, events and heartbeats."""

    def __init__(self, agent: Agent, sock: socket.socket, peer: str = "") -> None:
        self.agent = agent
        self.sock = sock
        self.peer = peer
        self._wlock = threading.Lock()
        self._closed = threading.Event()
        self.session = None
        self.state = "idle"
        self._t_arm = 0
        self._inodes: set[int] | None = None
        self._bundle = None  # this connection's last snapshot: the namespaces `counters` reads again
        self._worker: threading.Thread | None = None  # a send or a watch in progress
        self._loader: threading.Thread | None = None  # the armed session's probes loading
        self._load_error: BaseException | None = None
        self._keep = OwnNamespaces(())
        self._result = None
        self._recorder = None  # a `watch` in progress (watch.recorder.Recorder), run by _worker

    # -- writing ------------------------------------------------------------------------------

    def write(self, msg: dict) -> bool:
        try:
            line = P.encode(msg)
        except P.ProtocolError as e:
            line = P.encode(P.error(e.code, str(e), msg.get("id")))
        with self._wlock:
            if self._closed.is_set():
                return False
            try:
                self.sock.sendall(line)
                return True
            except OSError:
                self._closed.set()
                return False

    def _heartbeats(self) -> None:
        while not self._closed.wait(P.HEARTBEAT_S):
            self.write({"type": "heartbeat", "t": time.monotonic(), "state": self.state})

    # -- serving ------------------------------------------------------------------------------

    def serve(self) -> None:
        threading.Thread(target=self._heartbeats, name="podpath-heartbeat", daemon=True).start()
        reader = P.LineReader(self.sock)
        greeted = False
        try:
            while not self._closed.is_set():
                try:
                    line = reader.readline()
                    if line is None:
                        break
                    if not line.strip():
                        continue
                    msg = P.decode(line)
                    if not greeted:
                        P.check_hello(msg)
                        greeted = True
                        self.write({"type": "hello", "id": msg.get("id"), "protocol": P.PROTOCOL,
                                    "node": self.agent.node_name, "heartbeat": P.HEARTBEAT_S,
                                    "max_line": P.MAX_LINE})
                        continue
                    self.dispatch(msg)
                except P.ProtocolError as e:
                    self.write(P.error(e.code, str(e), e.req_id))
                    if e.code == "version":
                        break  # nothing else can be understood on this connection
        except OSError:
            pass
        finally:
            self.close()

    def dispatch(self, msg: dict) -> None:
        kind, rid = msg["type"], msg.get("id")
        handler = getattr(self, f"on_{kind}", None) if kind in P.REQUESTS and kind != "hello" else None
        if handler is None:
            raise P.ProtocolError("unknown_type", f"unknown message type {kind!r}; requests are "
                                  + ", ".join(P.REQUESTS), rid)
        try:
            handler(msg, rid)
        except P.ProtocolError:
            raise
        except (PodpathError, KeyError, TypeError, ValueError) as e:
            # a request this node cannot do (or a malformed one): said, and the agent serves on
            code = "bad_request" if isinstance(e, (KeyError, TypeError, ValueError)) else "failed"
            self.write(P.error(code, f"{kind}: {e}", rid))

    def on_ping(self, msg, rid) -> None:
        self.write({"type": "pong", "id": rid, "state": self.state, "node": self.agent.node_name})

    def on_snapshot(self, msg, rid) -> None:
        """In a worker: an `arm` may come meanwhile (its probes load while the node is read)."""
        import json

        from .rules import PER_CHAIN, wire_bundle

        def run() -> None:
            t = time.perf_counter()
            try:
                bundle = self.agent.snapshot(msg.get("targets") or (), inventory=msg.get("inventory") is not False)
            except PodpathError as e:
                self.write(P.error("failed", f"snapshot: {e}", rid))
                return
            self._inodes = {h.inode for h in bundle.hosts if h.inode is not None}
            self._bundle = bundle
            answer = {"type": "bundle", "id": rid, "node": self.agent.node_name}
            if msg.get("rules") == PER_CHAIN:  # big tables: their chain names now, their rules on request
                wire, answer["live_rules"], self._live_rules = wire_bundle(bundle)
            else:
                wire, self._live_rules = bundle, {}
            answer["bundle"] = json.loads(wire.to_json(indent=None))
            answer["timings"] = {**getattr(self.agent, "last_snapshot_timings", {}),
                                 "answer_ms": (time.perf_counter() - t) * 1000}
            self.write(answer)

        threading.Thread(target=run, name="podpath-snapshot", daemon=True).start()

    def on_arm(self, msg, rid) -> None:
        """Open the socket now (the answer carries its source port), load the probes in the
        background; `attach` waits for them."""
        from ..trace.session import Session, SessionRequest

        if self.session is not None or self._recorder is not None:
            raise P.ProtocolError("busy", "a session or a watch is already running on this connection; stop it "
                                  "first", rid)
        req = SessionRequest.from_dict(msg["session"])
        if not req.watch_only and req.inject.netns is None:  # "the pod with this address", as this node knows it
            req.inject.netns = self.agent.netns_of(req.inject.src)
            if req.inject.netns is None:
                raise P.AgentError(f"no pod with address {req.inject.src} on node {self.agent.node_name}")
        self._keep = OwnNamespaces(())
        self._t_arm = time.monotonic_ns()
        s = Session(req, keep=self._keep, pool=self.agent.probes).prepare()
        self.session, self.state, self._result, self._worker = s, "armed", None, None
        self._load_error = None
        self.agent.traces += 1

        pre = msg.get("preattach") or {}
        early = self.agent.path_devices(pre.get("pods") or [], bool(pre.get("cross"))) if pre else []

        def load() -> None:
            try:
                s.load(likely=early)
                if early:  # the likely path, while the coordinator waits for the snapshots
                    s.attach(early, plan=False)
            except BaseException as e:  # noqa: BLE001 - said at `attach`
                self._load_error = e
        self._loader = threading.Thread(target=load, name="podpath-load-probes", daemon=True)
        self._loader.start()
        self.write({"type": "armed", "id": rid, "inject": s.result.inject.to_dict(), "netns": req.inject.netns})

    def _await_probes(self) -> None:
        """Wait for the armed session's probes (they load in the background while the coordinator
        plans); a failed load ends the session."""
        self._loader.join()
        if self._load_error is not None:
            e, self._load_error = self._load_error, None
            self._end_session()
            raise P.AgentError(f"loading the probes failed: {e}")
        self._keep.inodes = self._inodes if self._inodes is not None else node_inodes()

    def on_attach(self, msg, rid) -> None:
        """The plan's devices and netfilter brackets on the armed session (after its probes loaded)."""
        s = self.session
        if s is None or self._worker is not None:
            raise P.ProtocolError("not_armed", "attach needs an armed session not yet sent", rid)
        self._await_probes()
        devices = [tuple(x) for x in msg.get("attach") or []]
        t = time.perf_counter()
        s.req.attach = list(dict.fromkeys(list(s.req.attach) + devices))
        s.attach(s.req.attach)
        if msg.get("nf_plan"):
            s.req.nf_plan = {**s.req.nf_plan, **msg["nf_plan"]}
        s.attach_netfilter(s.req.nf_plan)
        if s.req.nftrace and s.req.watch_only:  # before `attached`: the coordinator sends right after
            s.start_nftrace_watch()
        s.timings["attach_plan_ms"] = (time.perf_counter() - t) * 1000
        self.write({"type": "attached", "id": rid, "attached": [list(a) for a in s.result.attached],
                    "attach_errors": list(s.result.attach_errors), "timings": dict(s.timings)})
        if s.req.watch_only and s._probes is not None:
            self._worker = threading.Thread(target=self._watch, name="podpath-watch", daemon=True)
            self._worker.start()

    def _watch(self) -> None:
        def stream(events) -> None:
            for e in events:
                self.write({"type": "event", "event": self._shifted(e).to_dict()})
        try:
            self._result = self.session.watch(stream)
        except PodpathError as e:
            self.write(P.error("failed", f"watch: {e}"))

    def _shifted(self, e):
        import dataclasses
        return dataclasses.replace(e, ts_ns=e.ts_ns - self._t_arm)

    def on_send(self, msg, rid) -> None:
        s = self.session
        if s is None or s.req.watch_only or self._worker is not None:
            raise P.ProtocolError("not_armed", "send needs a session armed with an inject (the source's) "
                                  "and not yet sent", rid)
        self._await_probes()
        self.state = "sending"

        def run() -> None:
            try:
                res = s.run()
                self._result = res
                self.write({"type": "result", "id": rid, "result": self._relative(res).to_dict()})
            except PodpathError as e:
                self.write(P.error("failed", f"send: {e}", rid))
            finally:
                self._end_session()

        self._worker = threading.Thread(target=run, name="podpath-send", daemon=True)
        self._worker.start()

    def on_watch(self, msg, rid) -> None:
        """Record this node's drops, counters and changes as `podpath watch` does, each tick's rows
        streamed as one `rows` line (the coordinator writes the files) until `stop`."""
        from ..watch.recorder import Recorder
        from ..watch.scope import scope_of

        if self.session is not None or self._recorder is not None:
            raise P.ProtocolError("busy", "a session or a watch is already running on this connection; stop it "
                                  "first", rid)
        samples, interval = int(msg.get("samples", 1000)), float(msg.get("interval", 1.0))
        if samples < 0 or interval <= 0:
            raise ValueError("samples must be >= 0 and interval > 0")
        if self.agent.node_name is None:
            self.agent.snapshot()  # learns the node's name (the API's view, else the hostname)
        node = self.agent.node_name
        try:
            scope = scope_of(None, msg.get("pod"), node_name=node)
        except UsageError as e:  # the pod is another node's: the coordinator leaves this one out
            raise P.ProtocolError("no_pod", str(e), rid) from None
        rec = Recorder(scope, None, samples_per_sec=samples, interval=interval,
                       kube=self.agent.kube if msg.get("endpoints") else None,
                       sink=lambda tables: self.write({"type": "rows", "id": rid, "node": node, "tables": tables}))
        self._recorder, self.state, self._result = rec, "watching", None
        self.write({"type": "watching", "id": rid, "node": node,
                    "pods": sorted({p.pod for p in scope.places.values() if p.pod})})

        def run() -> None:
            try:
                rec.run(None)
            except PodpathError as e:
                self.write(P.error("failed", f"watch: {e}", rid))
            finally:
                rec.close()
        self._worker = threading.Thread(target=run, name="podpath-watch-node", daemon=True)
        self._worker.start()

    def _stop_watch(self, rid) -> None:
        rec, self._recorder = self._recorder, None
        rec.stop()
        self._worker.join()  # its last tick's rows are written before the answer
        self._worker, self.state = None, "idle"
        self.write({"type": "result", "id": rid, "result": {"watch": {"totals": dict(rec.totals),
                                                                      "stats": dict(rec.final_stats)}}})

    def on_stop(self, msg, rid) -> None:
        if self._recorder is not None:
            self._stop_watch(rid)
            return
        s = self.session
        if s is None:
            if self._result is not None:  # the send already ended it: its result again
                self.write({"type": "result", "id": rid, "result": self._relative(self._result).to_dict()})
                return
            raise P.ProtocolError("not_armed", "nothing armed to stop", rid)
        s.stop_requested.set()  # a send's wait or a watch ends now
        self._loader.join()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        if self._result is None:  # armed, never sent nor watched: what the probes hold
            self._result = s.result
        self.write({"type": "result", "id": rid, "result": self._relative(self._result).to_dict()})
        self._end_session()

    def on_counters(self, msg, rid) -> None:
        """A netfilter drop's rule counters read again now, in one namespace of this connection's
        last snapshot (trace/counters.py): the coordinator compares them with the snapshot's."""
        import json

        from ..bundle import Bundle
        from ..trace.counters import reread_rules

        host = self._bundle.host(msg["host"]) if self._bundle is not None else None
        if host is None:
            raise P.ProtocolError("bad_request", f"counters: no host {msg.get('host')!r} in this connection's "
                                  "snapshot (ask for a snapshot first)", rid)
        after = reread_rules(host)
        self.write({"type": "counters", "id": rid, "bundle": json.loads(Bundle(hosts=[after]).to_json(indent=None))})

    def on_chains(self, msg, rid) -> None:
        """Some rules of a big table of the last snapshot (agent/rules.py), read in a worker: the
        whole of a big node's save takes seconds, and the connection goes on meanwhile."""
        from .rules import check_chains_request, serve_chains

        host, backend_name, table, chains = check_chains_request(msg)
        backend = getattr(self, "_live_rules", {}).get((host, backend_name))
        if backend is None:
            raise P.ProtocolError("bad_request", f"chains: host {host!r} has no {backend_name} rules read per "
                                  "chain in this connection's snapshot (ask for one with \"rules\": \"per-chain\")",
                                  rid)

        def run() -> None:
            try:
                text = serve_chains(backend, table, chains)
            except Exception as e:  # noqa: BLE001 - said in one line: the coordinator must not wait it out
                self.write(P.error("failed", f"chains: {e if isinstance(e, PodpathError) else f'{type(e).__name__}: {e}'}",
                                   rid))
                return
            self.write({"type": "chains", "id": rid, "text": text})

        threading.Thread(target=run, name="podpath-chains", daemon=True).start()

    def _relative(self, res):
        from ..trace.join import shift
        return shift(res, -self._t_arm)

    def _end_session(self) -> None:
        s, self.session = self.session, None
        self.state = "idle"
        if s is not None:
            s.close()

    def close(self) -> None:
        self._closed.set()
        rec, self._recorder = self._recorder, None
        if rec is not None:  # the coordinator went away mid-watch: unload, nothing to send it
            rec.stop()
            w = self._worker
            if w is not None and w is not threading.current_thread():
                w.join(timeout=10)
        s, self.session = self.session, None
        if s is not None:
            s.stop_requested.set()
            if self._loader is not None:
                self._loader.join(timeout=10)
            w = self._worker
            if w is not None and w is not threading.current_thread():
                w.join(timeout=5)
            s.close()
        try:
            self.sock.close()
        except OSError:
            pass


class Server:
    """127.0.0.1:port in this namespace (the node's), one thread per connection."""

    def __init__(self, agent: Agent | None, port: int = P.PORT, host: str = "127.0.0.1") -> None:
        self.agent = agent  # may be set after binding (see cli/agent.py), before serve_forever
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            self.sock.close()
            raise P.AgentError(f"cannot listen on {host}:{port}: {e.strerror}; is another agent running? "
                               "stop it or give --port") from None
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections: set[Connection] = set()
        self._lock = threading.Lock()

    def serve_forever(self) -> None:
        try:
            while True:
                conn, addr = self.sock.accept()
                c = Connection(self.agent, conn, f"{addr[0]}:{addr[1]}")
                with self._lock:
                    self.connections.add(c)
                threading.Thread(target=self._one, args=(c,), name="podpath-conn", daemon=True).start()
        except OSError:
            pass  # closed
        finally:
            self.close()

    def _one(self, c: Connection) -> None:
        try:
            c.serve()
        finally:
            with self._lock:
                self.connections.discard(c)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self.connections)
        for c in conns:
            c.close()
