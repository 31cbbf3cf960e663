"""The pure parts of the port-forward transport (no root, no lab): kubelet's port and subprotocol
rules, the stand-in's RBAC, the DaemonSet's objects, and how the client's refusals become one line.
The real WebSocket relay is tests/lab/test_apiserver_portforward.py's."""

from __future__ import annotations

import kubernetes_validate
import pytest

from podpath.tracer.agent.transport import _ready, _refusal, _status_message
from podpath.tracer.errors import ApiError
from podpath.tracer.lab.apiserver import rbac
from podpath.tracer.lab.apiserver.objects import agent_objects, agent_pod_name
from podpath.tracer.lab.apiserver.portforward import V4, V5, Refused, choose_protocol, parse_ports
from podpath.tracer.lab.topology import base_inventory


def test_ports_are_parsed_as_kubelet_checks_them():
    assert parse_ports(["4244"]) == [4244]
    assert parse_ports(["4244,8080", "53"]) == [4244, 8080, 53]
    for bad, says in ((["x"], "unable to parse 'x'"), (["0"], "must be > 0"), (["70000"], "< 65536"),
                      (["80,80"], "given twice"), ([], '"ports" is required')):
        with pytest.raises(Refused, match=says) as e:
            parse_ports(bad)
        assert e.value.code == 400


@pytest.mark.parametrize("offered, chosen", [
    ("v5.channel.k8s.io,v4.channel.k8s.io", V4),  # the official client offers both: kubelet picks v4
    ("v4.channel.k8s.io", V4),
    ("v5.channel.k8s.io", V5),
    ("", ""),  # no subprotocol: the unnamed channel protocol, same framing
    ("SPDY/3.1+portforward.k8s.io", None),  # kubectl's SPDY tunnel: no channel protocol (spdy.py serves it)
])
def test_subprotocol_choice(offered, chosen):
    assert choose_protocol(offered) == chosen


def test_rbac_coordinator_may_port_forward_only_to_the_agents_namespace():
    sa = ["system:serviceaccounts", "system:authenticated"]
    assert rbac.allowed("coordinator", sa, "create", "pods/portforward", "podpath")
    assert not rbac.allowed("coordinator", sa, "create", "pods/portforward", "default")
    assert not rbac.allowed("coordinator", sa, "watch", "pods", None)
    assert rbac.allowed("coordinator", sa, "list", "endpointslices", None)
    assert not rbac.allowed("agent", sa, "create", "pods/portforward", "podpath")
    assert rbac.allowed("agent", sa, "watch", "configmaps", "kube-system")
    assert not rbac.allowed("limited", sa, "create", "pods/portforward", "podpath")
    assert rbac.allowed("anyone", ["system:masters"], "create", "pods/portforward", "x")


def test_the_daemonset_and_its_pods_validate_and_say_which_agent_runs():
    objs = agent_objects("pp", base_inventory("pp"), {"node-a": True, "node-b": False}, "2026-01-01T00:00:00Z")
    for o in objs:
        kubernetes_validate.validate(o, "1.30.0", strict=True)
    pods = {o["spec"]["nodeName"]: o for o in objs if o["kind"] == "Pod"}
    assert pods["node-a"]["metadata"]["name"] == agent_pod_name("pp", "node-a")
    assert pods["node-a"]["status"]["podIP"] == "192.168.56.11" and pods["node-a"]["spec"]["hostNetwork"]
    assert (_ready(pods["node-a"]), _ready(pods["node-b"])) == (True, False)
    ds = next(o for o in objs if o["kind"] == "DaemonSet")
    assert (ds["status"]["desiredNumberScheduled"], ds["status"]["numberReady"]) == (2, 1)


class _Kube:
    url = "https://192.168.56.10:6443"

    def refusal(self, status, verb, resource, group, namespace, reason):
        from podpath.tracer.kube.client import Kube

        return Kube.refusal(self, status, verb, resource, group, namespace, reason)  # type: ignore[arg-type]

    where = "kubeconfig k"


class _ApiException(Exception):
    def __init__(self, reason):
        self.reason = reason


def test_a_refused_handshake_is_one_line_with_the_servers_message():
    body = (b'{"kind":"Status","message":"pods \\"p\\" is forbidden: User \\"u\\" cannot create resource '
            b'\\"pods/portforward\\"","code":403}')
    text = f"Handshake status 403 Forbidden -+-+- {{'content-type': 'application/json'}} -+-+- {body!r}"
    assert _status_message(text).startswith('pods "p" is forbidden')
    e = _refusal(_Kube(), _ApiException(text), "p", "podpath")
    assert isinstance(e, ApiError) and "\n" not in str(e)
    assert "create on pods/portforward in namespace podpath (403 Forbidden)" in str(e)
    e = _refusal(_Kube(), _ApiException("Handshake status 404 Not Found -+-+- {} -+-+- b''"), "p", "podpath")
    assert "pod podpath/p not found" in str(e)
    e = _refusal(_Kube(), _ApiException("[Errno 111] Connection refused"), "p", "podpath")
    assert str(e).startswith("cannot port-forward to pod podpath/p through the API server")


def test_spdy_session_replies_to_each_stream_and_tells_a_refused_connection_on_the_error_stream():
    """kubectl's two SYN_STREAMs for one connection (error, then data), compressed as spdystream
    does; the session answers both, connects once, and puts kubelet's message on the error stream."""
    import asyncio
    import struct
    import zlib

    from spdy.dictionary import zdict

    from podpath.tracer.lab.apiserver import spdy

    client_deflate, client_inflate = zlib.compressobj(zdict=zdict), zlib.decompressobj(zdict=zdict)

    def syn(stream: int, kind: str) -> bytes:
        block = client_deflate.compress(spdy.header_block({"streamtype": kind, "port": "4244", "requestid": "0"}))
        block += client_deflate.flush(zlib.Z_SYNC_FLUSH)
        return spdy.control(spdy.SYN_STREAM, 0, struct.pack(">IIH", stream, 0, 0) + block)

    sent: list[bytes] = []
    asked: list[int] = []

    async def send(b: bytes) -> None:
        sent.append(b)

    async def refuse(port: int):
        asked.append(port)
        raise ConnectionRefusedError(111, "Connection refused")

    async def run() -> None:
        s = spdy.Session(send, refuse, "podpath/p, uid u", "lab-node-b")
        wire = syn(1, "error") + syn(3, "data") + spdy.control(spdy.PING, 0, struct.pack(">I", 7))
        await s.feed(wire[:5])  # frames cut anywhere are put together again
        await s.feed(wire[5:])
        await asyncio.gather(*[p.task for p in s.pairs.values() if p.task])
    asyncio.run(run())
    assert asked == [4244]
    frames = [(struct.unpack(">I", f[:4])[0], f) for f in sent]
    replies = [f for w, f in frames if w >> 16 == 0x8003 and w & 0xFFFF == spdy.SYN_REPLY]
    assert [struct.unpack(">I", f[8:12])[0] for f in replies] == [1, 3]
    assert spdy.parse_header_block(client_inflate.decompress(replies[0][12:])) == {}
    assert any(w >> 16 == 0x8003 and w & 0xFFFF == spdy.PING for w, _ in frames)
    error = next(f for w, f in frames if w == 1)  # a DATA frame on stream 1, FIN set
    assert error[4] == spdy.FIN and error[8:].decode() == (
        "error forwarding port 4244 to pod podpath/p, uid u: failed to connect to localhost:4244 inside "
        "namespace 'lab-node-b': connection refused")
