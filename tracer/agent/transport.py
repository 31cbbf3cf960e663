"""How a coordinator reaches an agent: a connected byte stream to 127.0.0.1:4244 in the agent's
node namespace, never an agent port on the network.

- Through the API server (`find_agents`, `open_agent`): the agent pods are found by label on their
  nodes, and reached with the official client's `kubernetes.stream.portforward` (pods/portforward
  over WebSocket; kubelet connects to the pod's loopback: for the hostNetwork DaemonSet, the
  node's). RBAC: get/list pods, create pods/portforward in namespace podpath.
- Directly, on the node itself (`direct`): a socket made from inside the node's namespace.

Both hand the protocol layer a plain socket.socket.
"""

from __future__ import annotations

import ast
import json
import re
import socket
from typing import Any
from urllib.parse import quote

from ..errors import ApiError, PodpathError
from .protocol import PORT, AgentError

NAMESPACE = "podpath"
DAEMONSET = "podpath-agent"
LABEL = "app.kubernetes.io/name=podpath-agent"


class NoAgent(AgentError):
    """Some nodes have no Running and Ready agent pod. .found holds the nodes that do (a coordinator
    may go on and call the others `not observed`), .missing the others."""

    def __init__(self, missing: list[str], found: dict[str, str], detail: dict[str, str]):
        self.missing, self.found = missing, found
        first = missing[0]
        why = detail.get(first, "no pod")
        more = f" (and on {', '.join(missing[1:])})" if len(missing) > 1 else ""
        super().__init__(f"no ready podpath agent on node {first}{more}: {why}; check the DaemonSet with "
                         f"`kubectl -n {NAMESPACE} get pods -l {LABEL} -o wide`")


class AgentSocket(socket.socket):
    """A socket.socket to an agent through port-forward, that can tell what the API server's error
    channel said (a refused connection arrives there, then the stream simply ends)."""

    forward = None  # the client's PortForward, kept while the socket lives
    port = PORT

    def forward_error(self) -> str | None:
        return self.forward.error(self.port) if self.forward is not None else None


def find_agents(kube: Any, nodes: set[str]) -> dict[str, str]:
    """node -> the name of its Running and Ready agent pod, for each of nodes; NoAgent when one has
    none (one line naming it; .found keeps the others)."""
    from concurrent.futures import ThreadPoolExecutor

    found: dict[str, str] = {}
    detail: dict[str, str] = {}

    def on(node: str) -> list[dict]:  # one list per node (fieldSelector): bounded by the trace, not the cluster
        return kube.paged_json("list", "pods", f"/api/v1/namespaces/{NAMESPACE}/pods", namespace=NAMESPACE,
                               label_selector=LABEL, field_selector=f"spec.nodeName={node}")

    order = sorted(nodes)
    with ThreadPoolExecutor(max(1, min(4, len(order))), thread_name_prefix="podpath-api") as ex:
        lists = list(ex.map(on, order))  # at once: a trace waits for every node's
    for node, pods in zip(order, lists):
        ready = sorted(p["metadata"]["name"] for p in pods if _ready(p))
        if ready:
            found[node] = ready[0]
        else:
            detail[node] = (f"pod {pods[0]['metadata']['name']} is {_why_not(pods[0])}" if pods
                            else f"no pod labelled {LABEL} in namespace {NAMESPACE}")
    missing = sorted(set(nodes) - set(found))
    if missing:
        raise NoAgent(missing, found, detail)
    return found


def _ready(p: dict) -> bool:
    st = p.get("status") or {}
    return st.get("phase") == "Running" and any(c.get("type") == "Ready" and c.get("status") == "True"
                                                for c in st.get("conditions") or [])


def _why_not(p: dict) -> str:
    st = p.get("status") or {}
    for c in st.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting")
        if waiting:
            return f"{st.get('phase')}, not Ready ({waiting.get('reason')})"
    return f"{st.get('phase')}, not Ready"


def open_agent(kube: Any, pod: str, namespace: str = NAMESPACE, port: int = PORT) -> socket.socket:
    """A socket to 127.0.0.1:port in pod's network namespace, through the API server's
    pods/portforward (the official client's WebSocket port-forward). Errors are one line each."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.stream.ws_client import portforward_call

    try:
        # What stream.portforward(core.connect_get_namespaced_pod_portforward, ...) sends, without the
        # typed CoreV1Api (most of a second to import) and without its swap of the shared
        # ApiClient's call_api (two agents are opened at once, in two threads)
        method, url, headers, _body, _post = kube.api_client.param_serialize(
            method="GET", resource_path=f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}"
            "/portforward", query_params=[("ports", str(port))], header_params={"Accept": "*/*"},
            auth_settings=["BearerToken"])
        pf = portforward_call(kube.api_client.configuration, method, url, headers=headers)
    except ApiException as e:
        raise _refusal(kube, e, pod, namespace) from None
    except OSError as e:
        raise ApiError(f"cannot reach the API server at {kube.url} to port-forward to pod {namespace}/{pod}: "
                       f"{e.strerror or e}") from None
    # The client's end of its socket pair, as a real socket.socket that owns the fd: the client's
    # proxy thread keeps the other end, and closes the WebSocket once this one is closed.
    sock = AgentSocket(fileno=pf.socket(port).detach())
    sock.forward, sock.port = pf, port
    return sock


_HANDSHAKE = re.compile(r"Handshake status (\d+)")


def _refusal(kube: Any, e: Any, pod: str, namespace: str) -> PodpathError:
    """The client raises ApiException(status=0, reason="Handshake status 403 Forbidden ... b'<Status>'"):
    the HTTP status and the server's message are in that text."""
    text = str(e.reason or e)
    m = _HANDSHAKE.search(text)
    code = int(m.group(1)) if m else None
    message = _status_message(text)
    if code in (401, 403):
        return ApiError(kube.refusal(code, "create", "pods/portforward", "", namespace, message))
    if code == 404:
        return ApiError(f"pod {namespace}/{pod} not found on the API server at {kube.url}: is the DaemonSet "
                        f"{DAEMONSET} deployed? (`kubectl -n {namespace} get pods -l {LABEL}`)")
    if code is not None:
        return ApiError(f"the API server at {kube.url} refused port-forward to pod {namespace}/{pod} ({code}"
                        f"{': ' + message if message else ''})")
    return ApiError(f"cannot port-forward to pod {namespace}/{pod} through the API server at {kube.url}: "
                    f"{' '.join(text.split())[:200]}")


def _status_message(text: str) -> str:
    """The Status body's message, from the tail websocket-client appends: "... -+-+- b'{...}'"."""
    tail = text.rsplit("-+-+-", 1)[-1].strip() if "-+-+-" in text else ""
    try:
        raw = ast.literal_eval(tail)
        body = json.loads(raw)
    except (ValueError, SyntaxError, TypeError):
        return ""
    return str(body.get("message", "")) if isinstance(body, dict) else ""


def direct(netns: str | None, port: int = PORT, timeout: float = 2.0) -> socket.socket:
    """A socket to the agent of the node whose namespace is netns (None: this one), opened from
    inside that namespace: the agent listens on its loopback only."""
    from ..netns import run_in

    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)

    try:
        sock = run_in(netns, connect)
    except OSError as e:
        where = f"network namespace {netns}" if netns else "this node"
        raise AgentError(f"no podpath agent on 127.0.0.1:{port} in {where} ({e.strerror or e}); "
                         "start one with `podpath agent`") from None
    sock.settimeout(None)
    return sock
