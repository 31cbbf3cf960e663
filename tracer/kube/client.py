"""Connecting to the API server and turning its refusals into one line each."""

from __future__ import annotations

import gc
import json as _json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import ApiError, UsageError

# An incident tool must not hang on a dead API server: fail over to node-only discovery quickly.
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 10.0
IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


class ApiUnreachable(ApiError):
    """The API server could not be reached (DNS, refused, timeout, TLS)."""


# The query parameters a list or get takes, as the generated methods name them (snake_case)
QUERY = {"field_selector": "fieldSelector", "label_selector": "labelSelector", "_continue": "continue",
         "limit": "limit", "resource_version": "resourceVersion"}


class Kube:
    """An ApiClient with the typed APIs podpath reads, and error mapping around every call.

    The typed APIs (`core`, `discovery`) are made on first use: importing the generated CoreV1Api
    builds a pydantic model for every core type, 0.5-0.8 s of a command's start-up. What a trace
    reads goes by path instead (`fn` a string: `json("get", "pods", "/api/v1/namespaces/default/pods/a")`),
    through the same ApiClient: its kubeconfig auth, TLS, headers and errors."""

    def __init__(self, api_client: Any, where: str):
        self.api_client = api_client
        self.url = api_client.configuration.host
        self.where = where  # "kubeconfig /path (context x)", "in-cluster service account"
        self._core = self._discovery = None

    @property
    def core(self) -> Any:
        if self._core is None:
            from kubernetes import client
            self._core = client.CoreV1Api(self.api_client)
        return self._core

    @property
    def discovery(self) -> Any:
        if self._discovery is None:
            from kubernetes import client
            self._discovery = client.DiscoveryV1Api(self.api_client)
        return self._discovery

    def get_path(self, path: str, *, _request_timeout: Any = None, _preload_content: bool = False,
                 **query: Any) -> Any:
        """GET path (query in the generated methods' snake_case names) as the generated methods
        send it with _preload_content=False: the raw urllib3 response, ApiException for non-2xx."""
        from kubernetes.client.exceptions import ApiException

        params = [(QUERY[k], v) for k, v in query.items() if v is not None]
        method, url, headers, body, post = self.api_client.param_serialize(
            method="GET", resource_path=path, query_params=params, header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"])
        r = self.api_client.call_api(method, url, headers, body, post, _request_timeout=_request_timeout)
        if not 200 <= r.status <= 299:
            r.read()
            raise ApiException.from_response(http_resp=r, body=None, data=None)
        return r.response

    def call(self, verb: str, resource: str, fn: Callable[..., Any] | str, *args: Any, group: str = "",
             namespace: str | None = None, **kwargs: Any) -> Any:
        """fn(*args, **kwargs) with timeouts (fn a path: get_path(fn, **kwargs)); ApiError/ApiUnreachable
        on failure (None for a 404)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        kwargs.setdefault("_request_timeout", (CONNECT_TIMEOUT, READ_TIMEOUT))
        try:
            if isinstance(fn, str):
                assert not args, "a path call takes its query as keywords"
                return self.get_path(fn, **kwargs)
            return fn(*args, **kwargs)
        except ApiException as e:
            if e.status == 404:
                return None
            raise ApiError(self.refusal(e.status, verb, resource, group, namespace, e.reason)) from None
        except (HTTPError, OSError) as e:
            raise ApiUnreachable(f"cannot reach the API server at {self.url} ({self.where}): "
                                 f"{_reason(e)}") from None

    def refusal(self, status: int | None, verb: str, resource: str, group: str, namespace: str | None,
                reason: str | None) -> str:
        scope = f" in namespace {namespace}" if namespace else ""
        if status == 401:
            return (f"the API server at {self.url} rejected our credentials (401 Unauthorized) while trying to "
                    f"{verb} {resource}{scope}; check --kubeconfig/--context ({self.where}) or renew the token")
        if status == 403:
            g = group or '""'
            return (f"the API server forbids {verb} on {resource}{scope} (403 Forbidden) for {self.where}; add the "
                    f"RBAC rule {{apiGroups: [{g}], resources: [{resource}], verbs: [{verb}]}} to the user's "
                    "(Cluster)Role")
        return f"the API server at {self.url} answered {status} {reason or ''} to {verb} {resource}{scope}".rstrip()

    def paged(self, verb: str, resource: str, fn: Callable[..., Any], *, group: str = "", limit: int = 500,
              **kwargs: Any) -> list:
        """Every item of a list call, page by page (limit/continue): never one huge response."""
        items: list = []
        token = None
        while True:
            page = self.call(verb, resource, fn, group=group, limit=limit, _continue=token, **kwargs)
            if page is None:
                return items
            items += page.items or []
            token = page.metadata._continue if page.metadata else None
            if not token:
                return items

    def json(self, verb: str, resource: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict | None:
        """One call's body as the server sent it (a dict; None for a 404), with the client's config,
        auth, TLS and errors but without its typed models: deserializing those costs about a
        millisecond an object, which 5,000 Nodes turn into seconds (bench/bench_api_scale.py)."""
        r = self.call(verb, resource, fn, *args, _preload_content=False, **kwargs)
        if r is None:
            return None
        data = r.data
        # Decoding makes tens of thousands of containers and no cycles: without the collector's
        # passes over everything the client holds (its models are many) a page of Nodes decodes 2x faster.
        was = gc.isenabled()
        gc.disable()
        try:
            return _json.loads(data)
        except ValueError as e:
            raise ApiError(f"the API server at {self.url} answered {verb} {resource} with no JSON: {e}") from None
        finally:
            if was:
                gc.enable()

    def paged_json(self, verb: str, resource: str, fn: Callable[..., Any], *args: Any, group: str = "",
                   limit: int = 500, **kwargs: Any) -> list[dict]:
        """Every item of a list call as dicts, page by page (limit/continue)."""
        return [item for page in self.pages_json(verb, resource, fn, *args, group=group, limit=limit, **kwargs)
                for item in page]

    def pages_json(self, verb: str, resource: str, fn: Callable[..., Any], *args: Any, group: str = "",
                   limit: int = 500, **kwargs: Any) -> Iterator[list[dict]]:
        """The items of a list call, a page at a time: a caller that keeps only what it needs of each
        page keeps the collector from walking every decoded object (5,000 Nodes: 2x faster)."""
        token = None
        while True:
            page = self.json(verb, resource, fn, *args, group=group, limit=limit, _continue=token, **kwargs)
            if page is None:
                return
            yield page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return


def _reason(e: BaseException) -> str:
    text = str(getattr(e, "reason", None) or e)
    # urllib3 nests the cause: keep the last, most specific clause on one line
    text = " ".join(text.split())
    for marker in ("Failed to establish a new connection: ", "Caused by "):
        if marker in text:
            text = text.split(marker)[-1]
    return text.strip("()'\" ")[:200]


def connect(kubeconfig: str | None = None, context: str | None = None) -> Kube | None:
    """A client as kubectl would find its config; None when there is none (no cluster here)."""
    from kubernetes import client, config

    path = kubeconfig or _first_existing(os.environ.get("KUBECONFIG", "")) or _default_kubeconfig()
    if kubeconfig and not Path(kubeconfig).is_file():
        raise UsageError(f"kubeconfig '{kubeconfig}' does not exist; give the file kubectl uses (--kubeconfig FILE)")
    cfg = client.Configuration()
    if path:
        try:
            config.load_kube_config(config_file=path, context=context, client_configuration=cfg,
                                    persist_config=False)
        except config.ConfigException as e:
            raise UsageError(f"cannot use kubeconfig '{path}': {' '.join(str(e).split())}") from None
        where = f"kubeconfig {path}" + (f" (context {context})" if context else "")
    elif os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(IN_CLUSTER_TOKEN):
        if context:
            raise UsageError("--context needs a kubeconfig; in a pod the service account is used")
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException as e:
            raise UsageError(f"cannot use the in-cluster service account: {e}") from None
        where = "the in-cluster service account"
    else:
        if context:
            raise UsageError(f"--context {context} needs a kubeconfig: give --kubeconfig FILE or set KUBECONFIG")
        return None
    cfg.retries = 0  # after loading, which may set its own: fail over fast, the caller decides
    return Kube(client.ApiClient(cfg), where)


def _first_existing(paths: str) -> str | None:
    return next((p for p in paths.split(os.pathsep) if p and Path(p).is_file()), None)


def _default_kubeconfig() -> str | None:
    p = Path(os.path.expanduser("~/.kube/config"))
    return str(p) if p.is_file() else None
