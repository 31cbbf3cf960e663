"""pods/portforward through the lab's stand-in API server, over real WebSocket, and the lab's agents
as DaemonSet pods (issue 10, item 3) (root only).

The official client's `kubernetes.stream.portforward` (through tracer/agent/transport.py) and
kubectl run inside lab node-a's namespace, as a coordinator on a node would; the stand-in relays
into real lab namespaces. The lab's agents here are tests/lab/standin_agent.py (it says its node's
name, then echoes) started with the contract's command line in place of `podpath agent`: these
tests hold the transport, not the agent's protocol. One lab for the module.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from podpath.tracer.lab.topology import NODES

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces and runs the lab's API server"),
]
POD_PORT = 4399  # a port the tests' own listeners use inside lab namespaces


@pytest.fixture(scope="module")
def lab(request):
    from conftest import fresh_lab, standin_agents

    standin_agents(request)
    return fresh_lab(request, "tpf")


def kube_in(lab, kubeconfig=None):
    from podpath.tracer.kube.client import connect

    return connect(str(kubeconfig or lab.kubeconfig_coordinator))


def on_node_a(lab, fn):
    from podpath.tracer.netns import run_in

    return run_in(lab.netns("node-a"), fn)


def recv_exactly(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def recv_line(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
    return buf


class Listener:
    """A TCP listener on 127.0.0.1:port inside a lab namespace (made by a thread that entered it),
    counting connections accepted and ended; it echoes."""

    def __init__(self, netns: str, port: int = POD_PORT, say_and_close: bytes | None = None):
        from podpath.tracer.netns import run_in

        self.say_and_close = say_and_close  # instead of echoing: send this, then close
        self.srv = run_in(netns, lambda: socket.create_server(("127.0.0.1", port)))
        self.accepted = 0
        self.ended = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            try:
                if self.say_and_close is not None:
                    conn.sendall(self.say_and_close)
                    return
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass
        with self._lock:
            self.ended += 1

    def close(self) -> None:
        try:  # wakes the accept() blocked in our thread: a close alone would leave it listening
            self.srv.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.srv.close()


@pytest.fixture
def listener(lab, request):
    made: list[Listener] = []

    def make(short: str, port: int = POD_PORT, say_and_close: bytes | None = None) -> Listener:
        li = Listener(lab.netns(short), port, say_and_close)
        made.append(li)
        return li
    yield make
    for li in made:
        li.close()


# --------------------------------------------------------------------------- the agents as pods


def test_kubectl_lists_the_agent_pods_of_the_daemonset(lab):
    exe = shutil.which("kubectl")
    assert exe, "kubectl is not installed: run scripts/setup.sh"

    def kubectl(*args):
        p = subprocess.run(["ip", "netns", "exec", lab.netns("node-a"), exe, "--kubeconfig",
                            str(lab.kubeconfig_coordinator), *args], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        return [ln.split() for ln in p.stdout.splitlines()[1:] if ln.strip()]

    rows = kubectl("get", "pods", "-n", "podpath", "-l", "app.kubernetes.io/name=podpath-agent", "-o", "wide")
    # NAME READY STATUS RESTARTS AGE IP NODE NOMINATED-NODE READINESS-GATES
    seen = sorted((r[6], r[5], r[1], r[2]) for r in rows)
    assert seen == sorted((n.name, n.underlay_ip, "1/1", "Running") for n in NODES), rows
    assert all(r[0].startswith("podpath-agent-") for r in rows)


def test_the_daemonset_counts_its_ready_pods(lab):
    from kubernetes import client

    kube = kube_in(lab, lab.kubeconfig)
    ds = on_node_a(lab, lambda: client.AppsV1Api(kube.api_client).read_namespaced_daemon_set("podpath-agent",
                                                                                            "podpath"))
    assert ds.spec.selector.match_labels == {"app.kubernetes.io/name": "podpath-agent"}
    tmpl = ds.spec.template.spec
    assert tmpl.host_network is True
    assert [(p.name, p.container_port) for p in tmpl.containers[0].ports] == [("agent", 4244)]
    assert (ds.status.desired_number_scheduled, ds.status.number_ready) == (len(NODES), len(NODES))


def test_the_lab_runs_each_agent_in_its_node_namespace_with_the_contract_command_line(lab):
    from podpath.tracer.lab import agents, processes

    for n in NODES:
        pid = agents.pid(lab.names, n.name)
        assert pid and processes.alive_in(pid, lab.netns(n.name))
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        i = argv.index(b"agent")
        assert [a.decode() for a in argv[i:] if a] == [
            "agent", "--port", "4244", "--node-name", n.name, "--kubeconfig", str(lab.kubeconfig_agent),
            "--pid-file", str(lab.names.agent_pid_file(n.name))]


def test_lab_status_names_each_agent_its_pod_and_pid(lab):
    import json

    import typer
    from typer.testing import CliRunner

    from podpath.cli import lab as lab_cli
    from podpath.tracer.lab import agents
    from podpath.tracer.lab.apiserver.objects import agent_pod_name

    app = typer.Typer()
    lab_cli.register(app)
    res = CliRunner().invoke(app, ["lab", "status", "--name", lab.name, "-o", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["agents"] == [{"node": n.name, "namespace": "podpath", "pod": agent_pod_name(lab.name, n.name),
                               "pid": agents.pid(lab.names, n.name)} for n in NODES]
    assert all(a["pid"] for a in data["agents"])
    assert data["kubeconfig_coordinator"] == str(lab.kubeconfig_coordinator)


def test_find_agents_names_one_ready_pod_per_node(lab):
    from podpath.tracer.agent.transport import find_agents

    kube = kube_in(lab)
    found = on_node_a(lab, lambda: find_agents(kube, {"node-a", "node-b"}))
    assert sorted(found) == ["node-a", "node-b"] and len(set(found.values())) == 2
    pods = on_node_a(lab, lambda: kube.paged_json("list", "pods", kube.core.list_namespaced_pod, "podpath"))
    assert {p["spec"]["nodeName"]: p["metadata"]["name"] for p in pods} == found


# --------------------------------------------------------------------------- bytes through the relay


def test_bytes_both_ways_reach_each_nodes_agent_through_the_api_server(lab):
    from podpath.tracer.agent.transport import find_agents, open_agent

    kube = kube_in(lab)

    def talk():
        out = {}
        for n, pod in find_agents(kube, {"node-a", "node-b"}).items():
            with open_agent(kube, pod) as s:
                assert isinstance(s, socket.socket)
                hello = recv_line(s)
                payload = os.urandom(1 << 20)  # frames of every size, both ways
                threading.Thread(target=s.sendall, args=(payload,), daemon=True).start()
                out[n] = (hello, recv_exactly(s, len(payload)) == payload)
        return out
    assert on_node_a(lab, talk) == {"node-a": (b"node-a\n", True), "node-b": (b"node-b\n", True)}


def test_two_parallel_streams_stay_apart(lab):
    from podpath.tracer.agent.transport import find_agents, open_agent

    kube = kube_in(lab)

    def talk():
        pods = find_agents(kube, {"node-a", "node-b"})
        a, b = open_agent(kube, pods["node-a"]), open_agent(kube, pods["node-b"])
        try:
            got = [recv_line(a), recv_line(b)]
            for i in range(50):
                a.sendall(b"a%03d" % i)
                b.sendall(b"b%03d" % i)
            got += [recv_exactly(a, 200), recv_exactly(b, 200)]
            return got
        finally:
            a.close()
            b.close()
    got = on_node_a(lab, talk)
    assert got == [b"node-a\n", b"node-b\n", b"".join(b"a%03d" % i for i in range(50)),
                   b"".join(b"b%03d" % i for i in range(50))]


def test_a_plain_pod_port_is_forwarded_into_the_pods_namespace(lab, listener):
    from podpath.tracer.agent.transport import open_agent

    li = listener("pod-b")
    kube = kube_in(lab, lab.kubeconfig)

    def talk():
        with open_agent(kube, "pod-b", namespace="default", port=POD_PORT) as s:
            s.sendall(b"ping through pod-b")
            return recv_exactly(s, 18)
    assert on_node_a(lab, talk) == b"ping through pod-b"
    assert li.accepted == 1


def test_when_the_pod_side_closes_the_client_reads_the_rest_then_the_end(lab, listener):
    from podpath.tracer.agent.transport import open_agent

    listener("pod-a2", say_and_close=b"bye")
    kube = kube_in(lab, lab.kubeconfig)

    def talk():
        with open_agent(kube, "pod-a2", namespace="default", port=POD_PORT) as s:
            return recv_exactly(s, 3), s.recv(1), s.forward_error()
    assert on_node_a(lab, talk) == (b"bye", b"", None)


def test_a_refused_port_is_told_on_the_error_channel(lab):
    from podpath.tracer.agent.transport import find_agents, open_agent

    kube = kube_in(lab)

    def talk():
        pod = find_agents(kube, {"node-b"})["node-b"]
        with open_agent(kube, pod, port=4245) as s:
            end = s.recv(1)  # the stream ends: nothing listens on 4245
            deadline = time.monotonic() + 5
            while s.forward_error() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            return pod, end, s.forward_error()
    pod, end, error = on_node_a(lab, talk)
    assert end == b""
    assert error.startswith(f"error forwarding port 4245 to pod podpath/{pod}, uid ")
    assert f"inside namespace '{lab.netns('node-b')}'" in error and "connection refused" in error


# --------------------------------------------------------------------------- RBAC


def test_port_forward_needs_create_on_pods_portforward(lab):
    from podpath.tracer.agent.transport import find_agents, open_agent
    from podpath.tracer.errors import ApiError

    pod = on_node_a(lab, lambda: find_agents(kube_in(lab), {"node-a"}))["node-a"]
    limited = kube_in(lab, lab.kubeconfig_limited)
    with pytest.raises(ApiError) as e:
        on_node_a(lab, lambda: open_agent(limited, pod))
    msg = str(e.value)
    assert "403" in msg and "create on pods/portforward in namespace podpath" in msg and "\n" not in msg
    assert "verbs: [create]" in msg
    # The coordinator's Role holds in namespace podpath only: not to an application pod.
    with pytest.raises(ApiError, match="403"):
        on_node_a(lab, lambda: open_agent(kube_in(lab), "pod-b", namespace="default", port=POD_PORT))


def test_a_missing_pod_and_a_missing_agent_are_one_line_each(lab):
    from podpath.tracer.agent.transport import NoAgent, find_agents, open_agent
    from podpath.tracer.errors import ApiError

    kube = kube_in(lab)
    with pytest.raises(ApiError) as e:
        on_node_a(lab, lambda: open_agent(kube, "podpath-agent-nope"))
    assert "pod podpath/podpath-agent-nope not found" in str(e.value)
    with pytest.raises(NoAgent) as e:
        on_node_a(lab, lambda: find_agents(kube, {"node-a", "node-z"}))
    assert e.value.missing == ["node-z"] and list(e.value.found) == ["node-a"]
    assert str(e.value).startswith("no ready podpath agent on node node-z: no pod labelled")


# --------------------------------------------------------------------------- the relay's own sockets


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_the_relay_closes_its_pod_socket_when_the_client_goes_away_and_leaks_no_fd(lab, listener):
    from podpath.tracer.agent.transport import open_agent
    from podpath.tracer.lab.apiserver import control

    li = listener("pod-a")
    kube = kube_in(lab, lab.kubeconfig)
    server = control.server_pid(lab.names)

    def once() -> bytes:
        s = open_agent(kube, "pod-a", namespace="default", port=POD_PORT)
        s.sendall(b"x")
        got = recv_exactly(s, 1)
        s.close()
        return got

    def settle(want_ended: int) -> None:
        deadline = time.monotonic() + 10
        while li.ended < want_ended and time.monotonic() < deadline:
            time.sleep(0.02)

    assert on_node_a(lab, once) == b"x"
    settle(1)
    assert li.ended == 1, "the relay kept its socket in pod-a open after the client closed"
    before = _fds(server)
    for _ in range(200):
        assert on_node_a(lab, once) == b"x"
    settle(201)
    time.sleep(0.5)  # the last WebSocket's close reaches the server
    assert (li.accepted, li.ended) == (201, 201)
    assert _fds(server) <= before + 3, f"the API server holds {_fds(server) - before} more fds after 200 streams"


def test_the_relay_never_connects_outside_the_pods_namespace(lab, listener):
    """Listeners on the same port in the API server's own namespace and in the pod's node: a
    port-forward to pod-a, where nothing listens, is refused, and neither hears a thing."""
    from podpath.tracer.agent.transport import open_agent

    traps = [listener("cp"), listener("node-a")]
    kube = kube_in(lab, lab.kubeconfig)

    def talk():
        with open_agent(kube, "pod-a", namespace="default", port=POD_PORT) as s:
            try:
                s.sendall(b"anyone?")
                data = s.recv(16)
            except OSError:  # the relay may have ended the stream already
                data = b""
            deadline = time.monotonic() + 5
            while s.forward_error() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            return data, s.forward_error()
    data, error = on_node_a(lab, talk)
    assert data == b"" and "connection refused" in error and lab.netns("pod-a") in error
    time.sleep(0.2)
    assert [t.accepted for t in traps] == [0, 0]


# --------------------------------------------------------------------------- the wire itself


def _raw_ws(lab, protocols: list[str], path: str):
    """A bare websocket-client connection (no kubernetes client), as admin, from node-a."""
    import base64
    import ssl

    import websocket
    import yaml

    from podpath.tracer.lab.topology import APISERVER_URL

    cfg = yaml.safe_load(lab.kubeconfig.read_text())
    ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    token = cfg["users"][0]["user"]["token"]
    ctx = ssl.create_default_context(cadata=ca)

    def connect():
        ws = websocket.WebSocket(sslopt={"context": ctx})
        ws.connect(APISERVER_URL.replace("https", "wss") + path, subprotocols=protocols,
                   header=[f"Authorization: Bearer {token}"])
        return ws
    return on_node_a(lab, connect)


def test_v5_is_spoken_when_asked_for_alone_with_kubelets_framing(lab):
    from podpath.tracer.agent.transport import find_agents

    pod = on_node_a(lab, lambda: find_agents(kube_in(lab), {"node-a"}))["node-a"]
    ws = _raw_ws(lab, ["v5.channel.k8s.io"], f"/api/v1/namespaces/podpath/pods/{pod}/portforward?ports=4244")
    try:
        assert ws.subprotocol == "v5.channel.k8s.io"
        # the first frame of each channel: the port, 2 bytes little-endian
        assert [ws.recv(), ws.recv()] == [b"\x00\x94\x10", b"\x01\x94\x10"]
        assert ws.recv() == b"\x00node-a\n"
        ws.send_binary(b"\x00echo")
        assert ws.recv() == b"\x00echo"
    finally:
        ws.close()


def test_v4_is_preferred_and_a_plain_get_is_told_to_upgrade(lab):
    from podpath.tracer.agent.transport import find_agents

    pod = on_node_a(lab, lambda: find_agents(kube_in(lab), {"node-a"}))["node-a"]
    ws = _raw_ws(lab, ["v5.channel.k8s.io", "v4.channel.k8s.io"],
                 f"/api/v1/namespaces/podpath/pods/{pod}/portforward?ports=4244")
    assert ws.subprotocol == "v4.channel.k8s.io"
    ws.close()
    from test_apiserver import http

    code, body = http(lab, f"/api/v1/namespaces/podpath/pods/{pod}/portforward?ports=4244")
    assert (code, body["message"]) == (400, "Upgrade request required")


# --------------------------------------------------------------------------- a dead agent


def test_a_dead_agent_is_not_ready_in_the_api_reported_by_drift_and_restarted_by_up(lab):
    from podpath.tracer.agent.transport import NoAgent, find_agents
    from podpath.tracer.lab import agents

    pid = agents.pid(lab.names, "node-b")
    os.kill(pid, 9)
    deadline = time.monotonic() + 5
    while agents.pid(lab.names, "node-b") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("podpath agent" in d and lab.netns("node-b") in d for d in lab.drift())
    with pytest.raises(NoAgent) as e:
        on_node_a(lab, lambda: find_agents(kube_in(lab), {"node-a", "node-b"}))
    assert e.value.missing == ["node-b"] and list(e.value.found) == ["node-a"]
    assert "is Running, not Ready (CrashLoopBackOff)" in str(e.value)
    assert any("podpath agent" in c for c in lab.up())
    found = on_node_a(lab, lambda: find_agents(kube_in(lab), {"node-a", "node-b"}))
    assert sorted(found) == ["node-a", "node-b"]


# --------------------------------------------------------------------------- kubectl port-forward (SPDY/3.1)


class KubectlPortForward:
    """`kubectl port-forward` run inside node-a, listening on node-a's 127.0.0.1; stopped on exit."""

    def __init__(self, lab, kubeconfig, target: str, *mappings: str, websockets: bool):
        exe = shutil.which("kubectl")
        assert exe, "kubectl is not installed: run scripts/setup.sh"
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.netns("node-a"), exe, "--kubeconfig", str(kubeconfig), "-n", "podpath",
             "port-forward", target, *mappings, "-v=6"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "KUBECTL_PORT_FORWARD_WEBSOCKETS": "true" if websockets else "false"})
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, text: str, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in ln for ln in self.lines):
                return True
            if self.proc.poll() is not None:
                time.sleep(0.1)  # the last lines
                return any(text in ln for ln in self.lines)
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.mark.parametrize("websockets", [False, True], ids=["spdy-upgrade", "spdy-in-websocket"])
def test_kubectl_port_forward_reaches_the_agent(lab, websockets):
    """kubectl's own port-forward: SPDY/3.1 after a POST upgrade, or tunnelled in a WebSocket
    (KUBECTL_PORT_FORWARD_WEBSOCKETS=true); 4 MiB echoed through it, a refused port told as kubelet
    tells it."""
    from podpath.tracer.agent.transport import find_agents

    pod = on_node_a(lab, lambda: find_agents(kube_in(lab), {"node-b"}))["node-b"]
    kpf = KubectlPortForward(lab, lab.kubeconfig_coordinator, f"pod/{pod}", "5555:4244", "5556:4245",
                             websockets=websockets)
    try:
        assert kpf.wait_for("Forwarding from 127.0.0.1:5556"), kpf.lines
        method = "GET" if websockets else "POST"
        assert any(f"{method} https://" in ln and "/portforward 101" in ln for ln in kpf.lines), kpf.lines

        def talk():
            with socket.create_connection(("127.0.0.1", 5555), timeout=10) as s:
                hello = recv_line(s)
                payload = os.urandom(4 << 20)
                threading.Thread(target=s.sendall, args=(payload,), daemon=True).start()
                same = recv_exactly(s, len(payload), timeout=30) == payload
            with socket.create_connection(("127.0.0.1", 5556), timeout=10) as s:
                s.settimeout(10)
                end = s.recv(1)
            return hello, same, end
        assert on_node_a(lab, talk) == (b"node-b\n", True, b"")
        assert kpf.wait_for("connection refused")
        line = next(ln for ln in kpf.lines if "connection refused" in ln)
        assert f"error forwarding port 4245 to pod podpath/{pod}" in line
    finally:
        kpf.stop()


def test_kubectl_port_forward_without_the_rbac_rule_is_forbidden(lab):
    from podpath.tracer.agent.transport import find_agents

    pod = on_node_a(lab, lambda: find_agents(kube_in(lab), {"node-a"}))["node-a"]
    kpf = KubectlPortForward(lab, lab.kubeconfig_limited, f"pod/{pod}", "5557:4244", websockets=False)
    try:
        assert kpf.wait_for('cannot create resource "pods/portforward"'), kpf.lines
    finally:
        kpf.stop()
