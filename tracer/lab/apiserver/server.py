"""The stand-in Kubernetes API server (aiohttp, HTTPS, read-only but for port-forward).

Serves `objects.objects(inventory)` the way kube-apiserver does for the calls podpath and kubectl
make: discovery, list/get (namespaced and across namespaces), label and field selectors,
limit/continue, resourceVersion, watch, Table output, and real `Status` errors (401, 403, 404,
405, 400, 410); and pods/{name}/portforward over WebSocket, relayed into the pod's network
namespace as kubelet does (portforward.py), for users RBAC (rbac.py) lets create it. The Store numbers every change of an object with a new resourceVersion and keeps
the event history that watches replay.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import gc
import json
import ssl
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web

from . import certs, portforward, rbac, resources, selectors, spdy, tables
from .objects import KUBE_VERSION
from .resources import Resource

Key = tuple[str, str, str]  # kind, namespace, name


@dataclass
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None = None


MAX_HISTORY = 20000  # events kept for watches; an older resourceVersion gets 410 Expired (like compaction)


@dataclass
class Store:
    """The objects now, by key, and the recent changes (for watches).

    Lists are served from indexes built on first use after a change, as the real server's watch
    cache keeps them: per kind and per (kind, namespace) in key order, and per value of the fields
    (spec.nodeName, status.podIP, metadata.name, ...) and labels (kubernetes.io/service-name, ...)
    asked for by equality. Each index keeps the objects' keys beside them, so a continue token is
    found by bisection and a page costs its own size, not the list's."""

    rv: int = 0
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    history: list[Event] = field(default_factory=list)
    changed: asyncio.Condition | None = None
    _lists: dict[tuple, "Listing"] = field(default_factory=dict, repr=False)
    _indexes: dict[tuple[str, str], dict[str, "Listing"]] = field(default_factory=dict, repr=False)
    _encoded: dict[int, bytes] = field(default_factory=dict, repr=False)

    def replace(self, new_objects: list[dict[str, Any]]) -> int:
        """Swap in a new generation of objects; returns how many changed."""
        new = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in new_objects}
        n = 0
        for key, o in sorted(new.items()):
            old = self.objects.get(key)
            if old is not None and _same(old, o):
                continue
            self.rv += 1
            o["metadata"]["resourceVersion"] = str(self.rv)
            self.history.append(Event(self.rv, "ADDED" if old is None else "MODIFIED", o, old))
            self.objects[key] = o
            n += 1
        for key in sorted(set(self.objects) - set(new)):
            old = self.objects.pop(key)
            self.rv += 1
            gone = json.loads(json.dumps(old))
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self.history.append(Event(self.rv, "DELETED", gone, old))
            n += 1
        if n:
            self._lists, self._indexes, self._encoded = {}, {}, {}
            del self.history[:-MAX_HISTORY]
            _settle()
        return n

    def listing(self, kind: str, namespace: str | None = None) -> "Listing":
        """Objects of a kind (in one namespace, or all) in key order "namespace/name", as etcd lists them."""
        key = ("kind", kind, namespace)
        if key not in self._lists:
            if namespace is None:
                if not any(k[0] == "kind" for k in self._lists):  # every kind at once: one pass over the objects
                    kinds: dict[str, list[dict[str, Any]]] = {}
                    for (k, _, _), o in self.objects.items():
                        kinds.setdefault(k, []).append(o)
                    for k, items in kinds.items():
                        pairs = sorted((_key(o), i) for i, o in enumerate(items))
                        self._lists[("kind", k, None)] = Listing([items[i] for _, i in pairs], [k for k, _ in pairs])
                self._lists.setdefault(key, Listing([], []))
            else:
                for ns, part in _groups(self.listing(kind), lambda o: o["metadata"].get("namespace", "")).items():
                    self._lists[("kind", kind, ns)] = part
                self._lists.setdefault(key, Listing([], []))
            _settle()
        return self._lists[key]

    def indexed(self, kind: str, index: str, get: Callable[[dict], str | None], value: str) -> "Listing":
        """Objects of a kind whose `index` (a field, or a label) equals value; built once per change."""
        key = (kind, index)
        if key not in self._indexes:
            self._indexes[key] = _groups(self.listing(kind), get)
            _settle()
        return self._indexes[key].get(value) or Listing([], [])

    def encoded(self, o: dict[str, Any]) -> bytes:
        """An object as a list item (no kind/apiVersion, as the real server encodes typed lists), encoded
        once per change, as the real watch cache keeps its serializations: a page of 500 Nodes is a join."""
        b = self._encoded.get(id(o))
        if b is None:
            b = self._encoded[id(o)] = json.dumps({k: v for k, v in o.items()
                                                  if k not in ("kind", "apiVersion")}).encode()
        return b

    def of_kind(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        return self.listing(kind, namespace).items

    def by_field(self, kind: str, fieldname: str, get: Callable[[dict], str], value: str) -> list[dict[str, Any]]:
        return self.indexed(kind, "field:" + fieldname, get, value).items


@dataclass
class Listing:
    """Objects in key order, with their keys (for bisection)."""

    items: list[dict[str, Any]]
    keys: list[str]

    def in_namespace(self, namespace: str | None) -> "Listing":
        if namespace is None:
            return self
        pairs = [(o, k) for o, k in zip(self.items, self.keys) if o["metadata"].get("namespace") == namespace]
        return Listing([o for o, _ in pairs], [k for _, k in pairs])


def _settle() -> None:
    """Move what the store holds out of the collector's sight (gc.freeze): it lives until the next
    change, and a full collection walking 175,000 objects' dicts would stall requests for a second."""
    gc.freeze()


def _groups(listing: Listing, get: Callable[[dict], str | None]) -> dict[str, Listing]:
    out: dict[str, Listing] = {}
    # Hundreds of thousands of new lists would set off full collections over every served object
    # (seconds at 150,000 pods); none of them is garbage.
    was = gc.isenabled()
    gc.disable()
    try:
        for o, k in zip(listing.items, listing.keys):
            v = get(o)
            if v is None:
                continue
            part = out.get(v)
            if part is None:
                part = out[v] = Listing([], [])
            part.items.append(o)
            part.keys.append(k)
    finally:
        if was:
            gc.enable()
    return out


def _same(a: dict, b: dict) -> bool:
    strip = lambda o: {**o, "metadata": {k: v for k, v in o["metadata"].items() if k != "resourceVersion"}}  # noqa: E731
    return strip(a) == strip(b)


def status(code: int, reason: str, message: str, details: dict | None = None) -> web.Response:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return web.json_response(body, status=code)


@dataclass
class User:
    name: str
    groups: list[str]
    role: str = ""  # the token's name in certs.USERS: which rbac.RULES bind to this user

    def may(self, verb: str, res: Resource, namespace: str | None = None, subresource: str = "") -> bool:
        return rbac.allowed(self.role, self.groups, verb, res.plural + (f"/{subresource}" if subresource else ""),
                            namespace)


class ApiServer:
    def __init__(self, tokens: dict[str, str], load: Callable[[], list[dict[str, Any]]],
                 address: str, port: int):
        self.users = {tok: User(*certs.USERS[name], role=name) for name, tok in tokens.items() if name in certs.USERS}
        self.load = load
        self.address, self.port = address, port
        self.store = Store()
        self.poll: Callable[[], bool] = lambda: False
        # The network namespace a pod's port-forward enters (kubelet knows its sandbox's); None: none.
        self.netns_of: Callable[[str, str], str | None] = lambda namespace, name: None
        self.middlewares: list = []  # run before authentication (a bench records requests)

    # -------------------------------------------------------------- state

    async def refresh(self) -> None:
        try:
            objs = self.load()
        except Exception as e:  # noqa: BLE001 - a half-written or removed state keeps the last objects
            print(f"apiserver: cannot re-read the lab: {e}", flush=True)
            return
        n = self.store.replace(objs)
        if n and self.store.changed is not None:
            async with self.store.changed:
                self.store.changed.notify_all()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[*self.middlewares, self._auth])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    # -------------------------------------------------------------- auth

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if request.path in ("/readyz", "/livez", "/healthz", "/version"):  # public, as on kubeadm
            return await handler(request)
        h = request.headers.get("Authorization", "")
        user = self.users.get(h[7:].strip()) if h.startswith("Bearer ") else None
        if user is None:
            return status(401, "Unauthorized", "Unauthorized")
        request["user"] = user
        return await handler(request)

    # -------------------------------------------------------------- routing

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if self.poll():  # a request right after `fault inject` sees the fault (a stat per request)
            await self.refresh()
        parts = [p for p in request.path.split("/") if p]
        if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods" \
                and parts[6] == "portforward" and request.method in ("GET", "POST"):
            return await self._portforward(request, parts[3], parts[5])
        if request.method not in ("GET", "HEAD"):
            return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if parts in (["readyz"], ["livez"], ["healthz"]):
            return web.Response(text="ok")
        if parts == ["version"]:
            major, minor = KUBE_VERSION[1:].split(".")[:2]
            return web.json_response({"major": major, "minor": minor, "gitVersion": KUBE_VERSION,
                                      "gitCommit": "podpath-lab", "gitTreeState": "clean",
                                      "buildDate": "2024-09-11T00:00:00Z", "goVersion": "go1.22.6",
                                      "compiler": "gc", "platform": "linux/amd64"})
        if parts in (["api"], ["apis"]) and "as=APIGroupDiscoveryList" in request.headers.get("Accept", ""):
            return web.Response(body=json.dumps(resources.aggregated(parts == ["api"])).encode(),
                                headers={"Content-Type": resources.AGGREGATED})
        if parts == ["api"]:
            return web.json_response(resources.api_versions(self.address, self.port))
        if parts == ["apis"]:
            return web.json_response(resources.api_group_list())
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 2:
            if len(parts) == 2:
                doc = resources.api_group(parts[1])
                return web.json_response(doc) if doc else _not_found_page()
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return _not_found_page()
        if not rest:
            doc = resources.resource_list(group, version)
            return web.json_response(doc) if doc else _not_found_page()
        return await self._resource(request, group, version, rest)

    async def _resource(self, request: web.Request, group: str, version: str, rest: list[str]) -> web.StreamResponse:
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        res = resources.find(group, version, rest[0])
        if res is None or len(rest) > 2 or (namespace is not None and not res.namespaced):
            return _not_found_page()
        name = rest[1] if len(rest) == 2 else None
        if name is not None and namespace is None and res.namespaced:
            return _not_found_page()
        q = request.query
        watch = q.get("watch", "") in ("1", "true")
        verb = "watch" if watch else ("get" if name else "list")
        user: User = request["user"]
        if not user.may(verb, res, namespace):
            return _forbidden(user, verb, res, namespace, name)
        try:
            match_label = selectors.label_matcher(q.get("labelSelector"))
            fsel = q.get("fieldSelector", "")
            if name is not None and watch:
                fsel = ",".join(filter(None, [fsel, f"metadata.name={name}"]))
            match_field = selectors.field_matcher(fsel, res.kind)
        except selectors.SelectorError as e:
            return status(400, "BadRequest", str(e))
        match = lambda o: match_label(o) and match_field(o)  # noqa: E731
        if watch:
            return await self._watch(request, res, namespace, match)
        if name is not None:
            o = self.store.objects.get((res.kind, namespace or "", name))
            if o is None:
                return status(404, "NotFound", f'{res.group_resource} "{name}" not found',
                              {"name": name, "group": res.group, "kind": res.plural})
            return self._respond(request, res, o, single=True)
        # What an index answers (a field or a label by equality), else the kind's list in that namespace
        eq = selectors.single_equality(q.get("fieldSelector"), res.kind)
        leq = selectors.single_label_equality(q.get("labelSelector"))
        if eq:
            fieldname, get, value = eq
            candidates = self.store.indexed(res.kind, "field:" + fieldname, get, value).in_namespace(namespace)
        elif leq:
            label, value = leq
            candidates = self.store.indexed(res.kind, "label:" + label,
                                            lambda o, k=label: selectors.labels_of(o).get(k), value).in_namespace(namespace)
        else:
            candidates = self.store.listing(res.kind, namespace)
        selective = bool(q.get("labelSelector") or q.get("fieldSelector"))
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        try:
            items, meta = _page(candidates, match if selective else None, q.get("limit"), q.get("continue"),
                                meta, self.store.rv)
        except ValueError as e:
            return status(400, "BadRequest", str(e))
        return self._respond(request, res, items, meta=meta)

    async def _portforward(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        """GET (WebSocket upgrade, as the official client and kubectl send it) or POST: RBAC `create`
        on pods/portforward for both, as the real server checks a WebSocket upgrade since
        AuthorizePodWebsocketUpgradeCreatePermission; then the relay into the pod's namespace."""
        user: User = request["user"]
        pods = resources.BY_KIND["Pod"]
        if not user.may("create", pods, namespace, "portforward"):
            return status(403, "Forbidden",
                          f'pods "{name}" is forbidden: User "{user.name}" cannot create resource '
                          f'"pods/portforward" in API group "" in the namespace "{namespace}"',
                          {"name": name, "kind": "pods"})
        o = self.store.objects.get(("Pod", namespace, name))
        if o is None:
            return status(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        netns = self.netns_of(namespace, name)
        if o["status"].get("phase") != "Running" or netns is None:
            return status(400, "BadRequest", f'pod {name} is not running (phase {o["status"].get("phase")}): '
                          "cannot port-forward to it")
        if "upgrade" not in request.headers.get("Connection", "").lower():
            return status(400, "BadRequest", "Upgrade request required")
        upgrade = request.headers.get("Upgrade", "").lower()
        who = f'{namespace}/{name}, uid {o["metadata"]["uid"]}'
        try:
            if upgrade == "websocket":
                return await portforward.relay(request, netns, who)
            if upgrade.startswith("spdy/3.1") and spdy.available():  # kubectl port-forward
                return await portforward.spdy_upgrade(request, netns, who)
        except portforward.Refused as e:
            return status(e.code, e.reason, str(e))
        return status(400, "BadRequest", f"unable to upgrade connection: {request.headers.get('Upgrade')!r} "
                      f"is not supported by the lab's API server; use WebSocket ({portforward.V4})")

    def _respond(self, request: web.Request, res: Resource, body: Any, single: bool = False,
                 meta: dict | None = None) -> web.Response:
        accept = request.headers.get("Accept", "")
        items = [body] if single else body
        if "as=Table" in accept and res.kind in tables.COLUMNS:
            return web.json_response(tables.table(res.kind, items, meta or {"resourceVersion": str(self.store.rv)},
                                                  request.query.get("includeObject", "PartialObjectMetadata")))
        if single:
            return web.json_response(body)
        head = json.dumps({"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": meta})
        body = head[:-1].encode() + b', "items": [' + b", ".join(self.store.encoded(o) for o in items) + b"]}"
        return web.Response(body=body, content_type="application/json")

    async def _watch(self, request: web.Request, res: Resource, namespace: str | None,
                     match: Callable[[dict], bool]) -> web.StreamResponse:
        q = request.query
        try:
            timeout = float(q.get("timeoutSeconds", "1800"))
            since = int(q.get("resourceVersion") or 0)
        except ValueError:
            return status(400, "BadRequest", "timeoutSeconds and resourceVersion must be integers")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)

        def in_scope(o: dict) -> bool:
            return o["kind"] == res.kind and (namespace is None or o["metadata"].get("namespace") == namespace)

        async def send(kind: str, obj: dict) -> None:
            await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        store = self.store
        if since and store.history and since < store.history[0].rv - 1:
            await send("ERROR", {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                 "message": f"too old resource version: {since} ({store.history[0].rv - 1})",
                                 "reason": "Expired", "code": 410})
            return resp
        if not since:
            for o in store.of_kind(res.kind, namespace):
                if match(o):
                    await send("ADDED", o)
            since = store.rv
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                for ev in [e for e in store.history if e.rv > since]:
                    since = ev.rv
                    if not in_scope(ev.obj):
                        continue
                    now_in, was_in = match(ev.obj), ev.old is not None and match(ev.old)
                    if ev.type == "MODIFIED" and now_in != was_in:  # moved in or out of the selection
                        await send("ADDED" if now_in else "DELETED", ev.obj)
                    elif (ev.type == "DELETED" and was_in) or (ev.type != "DELETED" and now_in):
                        await send(ev.type, ev.obj)
                left = deadline - loop.time()
                if left <= 0:
                    break
                async with store.changed:
                    try:
                        await asyncio.wait_for(store.changed.wait(), timeout=min(left, 30))
                    except asyncio.TimeoutError:
                        pass
        except (ConnectionResetError, asyncio.CancelledError):
            return resp
        await resp.write_eof()
        return resp


def _page(listing: "Listing", match: Callable[[dict], bool] | None, limit: str | None, cont: str | None,
          meta: dict, rv: int) -> tuple[list[dict], dict]:
    """One page of a list (limit/continue), its cost the page's, not the list's: the continue token
    names the last key served (base64 JSON, like the real one), found again by bisection.
    remainingItemCount is said only for unfiltered lists, as the real server does."""
    start = 0
    if cont:
        try:
            tok = json.loads(base64.urlsafe_b64decode(cont.encode()))
            start = bisect.bisect_right(listing.keys, tok["start"])
        except (ValueError, KeyError, TypeError):
            raise ValueError("continue key is not valid: invalid continue token") from None
    n = 0
    if limit:
        try:
            n = int(limit)
        except ValueError:
            raise ValueError(f"limit must be an integer, got {limit!r}") from None
    items, keys = listing.items, listing.keys
    if match is None:
        end = len(items) if n <= 0 else min(len(items), start + n)
        page, last, more = items[start:end], end - 1, end < len(items)
        if more:
            meta["remainingItemCount"] = len(items) - end
    else:
        page, last, more, i = [], start - 1, False, start
        for i in range(start, len(items)):
            if match(items[i]):
                if n > 0 and len(page) == n:
                    more = True
                    break
                page.append(items[i])
                last = i
    if more:
        meta["continue"] = base64.urlsafe_b64encode(json.dumps({"v": "meta.k8s.io/v1", "rv": rv,
                                                                "start": keys[last]}).encode()).decode()
    return page, meta


def _key(o: dict) -> str:
    return f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"


def _forbidden(user: User, verb: str, res: Resource, namespace: str | None, name: str | None) -> web.Response:
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    what = f'{res.group_resource} "{name}"' if name else res.group_resource
    return status(403, "Forbidden",
                  f'{what} is forbidden: User "{user.name}" cannot {verb} resource "{res.plural}" '
                  f'in API group "{res.group}" {where}',
                  {"name": name, "group": res.group, "kind": res.plural} if name else {"group": res.group,
                                                                                        "kind": res.plural})


def _not_found_page() -> web.Response:
    return status(404, "NotFound", "the server could not find the requested resource", {})


async def serve(server: ApiServer, cert: str, key: str, poll: Callable[[], bool], on_ready: Callable[[], None],
                interval: float = 0.2) -> None:
    """Serve until cancelled; poll() says whether the source changed (then the objects are re-read)."""
    server.store.changed = asyncio.Condition()
    server.poll = poll
    await server.refresh()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    # Open watches would hold a SIGTERM for the default 60 s: a stopping lab closes them at once.
    runner = web.AppRunner(server.app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, server.address, server.port, ssl_context=ctx, reuse_address=True)
    await site.start()
    on_ready()
    try:
        while True:
            await asyncio.sleep(interval)
            if poll():
                await server.refresh()
    finally:
        await runner.cleanup()
