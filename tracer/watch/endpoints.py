"""EndpointSlice changes from the Kubernetes API, as change events: a Service losing or gaining an
endpoint is the moment stale UDP conntrack entries and DNS timeouts start.

A list, then a watch from its resourceVersion (only what changes after the start is an event),
re-listed when the server says the version is too old (410). Every change is stamped when it
arrives and recorded in every watched node's `changes` table (kind `endpoints`): a Service is
the whole cluster's. The thread runs inside `netns` (the lab's API server is reachable from its
nodes only), so the client's connections are opened there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..netns import run_in

_ACTIONS = {"ADDED": "add", "MODIFIED": "modify", "DELETED": "del"}
WATCH_SECONDS = 2  # each watch request's server-side timeout: how long stop() can take


def describe(s) -> tuple[str, str]:
    """(`namespace/service slice`, `10.244.1.3:53/UDP ready, ...`) of a V1EndpointSlice."""
    meta = s.metadata
    svc = (meta.labels or {}).get("kubernetes.io/service-name", "?")
    ports = ",".join(f"{p.port}/{p.protocol}" for p in (s.ports or []) if p.port) or "-"
    eps = []
    for e in s.endpoints or []:
        ready = e.conditions.ready if e.conditions is not None else None
        state = "ready" if ready in (True, None) else "not-ready"
        eps += [f"{a} {state}" for a in e.addresses or []]
    return f"{meta.namespace}/{svc} {meta.name}", f"ports {ports}; endpoints: {', '.join(eps) or 'none'}"


class EndpointSliceWatcher:
    def __init__(self, kube, nodes: list[str], emit: Callable[[dict], None], netns: str | None = None) -> None:
        self.kube, self.nodes, self.emit, self.netns = kube, nodes, emit, netns
        self._stop = threading.Event()
        self.ready = threading.Event()  # listed: every later change is an event
        self.error: str | None = None
        self._thread = threading.Thread(target=lambda: run_in(netns, self._loop), daemon=True, name="pw-endpoints")
        self._thread.start()

    def _put(self, action: str, obj: str, detail: str) -> None:
        now = time.time_ns()
        for n in self.nodes:
            self.emit({"time_ns": now, "node_name": n, "kind": "endpoints", "action": action, "object": obj,
                       "detail": detail})

    def _list(self) -> tuple[str, dict[str, str]]:
        lst = self.kube.call("list", "endpointslices", self.kube.discovery.list_endpoint_slice_for_all_namespaces,
                             group="discovery.k8s.io")
        return lst.metadata.resource_version, {describe(s)[0]: describe(s)[1] for s in lst.items or []}

    def _loop(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        from ..errors import ApiError
        try:
            rv, known = self._list()
        except ApiError as e:
            self.error = str(e)
            self._put("error", "", str(e))
            self.ready.set()
            return
        self.ready.set()
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(self.kube.discovery.list_endpoint_slice_for_all_namespaces, resource_version=rv,
                                   timeout_seconds=WATCH_SECONDS, _request_timeout=(2, WATCH_SECONDS + 5)):
                    s = ev["object"]
                    rv = s.metadata.resource_version or rv
                    obj, detail = describe(s)
                    before = known.pop(obj, None) if ev["type"] == "DELETED" else known.get(obj)
                    if ev["type"] != "DELETED":
                        known[obj] = detail
                    if ev["type"] == "DELETED":
                        detail = f"deleted (had {detail})"
                    elif before is not None and before != detail:
                        detail += f" (was: {before.split('endpoints: ', 1)[-1]})"
                    self._put(_ACTIONS.get(ev["type"], "other"), obj, detail)
                    if self._stop.is_set():
                        break
            except ApiException as e:
                if e.status == 410:  # compacted: list again (what changed meanwhile is not replayed)
                    try:
                        rv, known = self._list()
                        continue
                    except ApiError as e2:
                        self._put("error", "", str(e2))
                self._put("error", "", f"watch endpointslices: {e.status} {e.reason}")
                self._stop.wait(2)
            except Exception as e:  # noqa: BLE001 - the API going away must not end the recording
                self._put("error", "", f"watch endpointslices: {' '.join(str(e).split())[:200]}")
                self._stop.wait(2)
            finally:
                w.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WATCH_SECONDS + 6)
