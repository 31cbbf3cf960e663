"""The lab's stand-in Kubernetes API server, against real clients (root only).

No kube-apiserver can run on this machine, so the lab serves one (tracer/lab/apiserver): these
tests hold it to what real clients need. kubectl runs inside a lab node namespace
(`ip netns exec <lab>-node-a kubectl --kubeconfig K ...`); every served object is checked
against the published schemas (kubernetes-validate, 1.30); the official `kubernetes` client
deserializes each list into its typed model. 192.168.56.10 is reachable only from lab namespaces,
so Python clients run in a thread inside node-a (tracer/netns.run_in). One lab for the module.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
import yaml

from podpath.tracer.lab.topology import APISERVER_URL, NODES, PODS, node, pod
from podpath.tracer.netns import run_in

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces and runs the lab's API server"),
]
SCHEMA_VERSION = "1.30.0"


@pytest.fixture(scope="module")
def lab(request):
    from conftest import fresh_lab, standin_agents

    standin_agents(request)  # the DaemonSet's pods are Ready: their (stand-in) agents run
    return fresh_lab(request, "ta")


def agent_pods(lab) -> dict[str, str]:
    """node -> the name of its podpath agent pod (namespace podpath; hostNetwork: the node's IP)."""
    from podpath.tracer.lab.apiserver.objects import agent_pod_name

    return {n.name: agent_pod_name(lab.name, n.name) for n in NODES}


@pytest.fixture(scope="module")
def kubectl(lab, tmp_path_factory):
    exe = shutil.which("kubectl")
    if exe is None:
        pytest.fail("kubectl is not installed: run scripts/setup.sh (Debian package kubernetes-client)")
    cache = tmp_path_factory.mktemp("kubectl-cache")

    def run(*args: str, kubeconfig=None, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(["ip", "netns", "exec", lab.netns("node-a"), exe, "--kubeconfig",
                            str(kubeconfig or lab.kubeconfig), "--cache-dir", str(cache), *args],
                           capture_output=True, text=True, timeout=30)
        if check:
            assert p.returncode == 0, p.stderr
        return p
    return run


def _kubeconfig(path) -> tuple[ssl.SSLContext, str]:
    cfg = yaml.safe_load(path.read_text())
    ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    return ssl.create_default_context(cadata=ca), cfg["users"][0]["user"]["token"]


def http(lab, path: str, token: str | None = "admin", method: str = "GET",
         accept: str = "application/json") -> tuple[int, dict]:
    """One HTTPS request from inside node-a; returns (status, JSON body)."""
    ctx, admin_token = _kubeconfig(lab.kubeconfig)
    if token == "admin":
        token = admin_token
    elif token == "limited":
        token = _kubeconfig(lab.kubeconfig_limited)[1]
    headers = {"Accept": accept}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(APISERVER_URL + path, headers=headers, method=method)

    def ask():
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
    return run_in(lab.netns("node-a"), ask)


def columns(text: str) -> list[dict[str, str]]:
    """kubectl's table output as rows of {HEADER: cell} (cells hold no spaces here)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    head = lines[0].split()
    # "NOMINATED NODE" and "READINESS GATES" are two-word headers: join them first.
    joined = " ".join(head).replace("NOMINATED NODE", "NOMINATED_NODE").replace("READINESS GATES", "READINESS_GATES")
    head = joined.split()
    return [dict(zip(head, ln.split())) for ln in lines[1:]]


# --------------------------------------------------------------------------- kubectl


def test_kubectl_get_pods_wide_shows_names_ips_and_nodes(lab, kubectl):
    rows = columns(kubectl("get", "pods", "-A", "-o", "wide").stdout)
    seen = {(r["NAMESPACE"], r["NAME"]): (r["IP"], r["NODE"], r["STATUS"], r["READY"]) for r in rows}
    assert seen == {(p.namespace, p.name): (p.ip, p.node, "Running", "1/1") for p in PODS} | {
        ("podpath", pod_name): (node(n).underlay_ip, n, "Running", "1/1") for n, pod_name in agent_pods(lab).items()}


def test_kubectl_get_nodes_yaml_carries_flannel_annotations(kubectl):
    doc = yaml.safe_load(kubectl("get", "nodes", "-o", "yaml").stdout)
    by_name = {n["metadata"]["name"]: n for n in doc["items"]}
    assert sorted(by_name) == [n.name for n in NODES]
    for spec in NODES:
        n = by_name[spec.name]
        ann = n["metadata"]["annotations"]
        assert json.loads(ann["flannel.alpha.coreos.com/backend-data"]) == {"VNI": 1, "VtepMAC": spec.vtep_mac}
        assert ann["flannel.alpha.coreos.com/public-ip"] == spec.underlay_ip
        assert ann["flannel.alpha.coreos.com/backend-type"] == "vxlan"
        assert n["spec"]["podCIDR"] == spec.pod_cidr and n["spec"]["podCIDRs"] == [spec.pod_cidr]
        assert {"type": "InternalIP", "address": spec.underlay_ip} in n["status"]["addresses"]
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])


def test_kubectl_get_services_and_endpointslices(kubectl):
    out = kubectl("get", "svc,endpointslices", "-A").stdout
    svc_text, slice_text = out.split("\n\n", 1)
    svcs = {(r["NAMESPACE"], r["NAME"]): r for r in columns(svc_text)}
    assert svcs[("default", "service/web")]["CLUSTER-IP"] == "10.96.0.100"
    assert svcs[("default", "service/web")]["PORT(S)"] == "80/TCP"
    assert svcs[("kube-system", "service/kube-dns")]["CLUSTER-IP"] == "10.96.0.10"
    assert svcs[("kube-system", "service/kube-dns")]["PORT(S)"] == "53/UDP,53/TCP"
    slices = {r["NAMESPACE"]: r for r in columns(slice_text)}
    assert slices["default"]["NAME"].startswith("endpointslice.discovery.k8s.io/web-")
    assert sorted(slices["default"]["ENDPOINTS"].split(",")) == [pod("pod-a2").ip, pod("pod-b").ip]
    assert slices["default"]["PORTS"] == "8080"
    assert slices["kube-system"]["ENDPOINTS"] == pod("coredns").ip


def test_kubectl_limited_user_is_forbidden_endpointslices_like_the_real_server(lab, kubectl):
    p = kubectl("get", "endpointslices", "-n", "default", kubeconfig=lab.kubeconfig_limited, check=False)
    assert p.returncode != 0
    assert ('endpointslices.discovery.k8s.io is forbidden: User "podpath-limited" cannot list resource '
            '"endpointslices" in API group "discovery.k8s.io" in the namespace "default"') in p.stderr
    rows = columns(kubectl("get", "pods", "-n", "default", kubeconfig=lab.kubeconfig_limited).stdout)
    assert sorted(r["NAME"] for r in rows) == ["pod-a", "pod-a2", "pod-b"]


# --------------------------------------------------------------------------- schemas and typed clients

LISTS = ["/api/v1/namespaces", "/api/v1/nodes", "/api/v1/pods", "/api/v1/services", "/api/v1/configmaps",
         "/apis/discovery.k8s.io/v1/endpointslices", "/apis/apps/v1/daemonsets"]


def test_every_served_object_validates_against_the_published_schemas(lab):
    import kubernetes_validate

    count = 0
    for path in LISTS:
        code, lst = http(lab, path)
        assert code == 200, lst
        kubernetes_validate.validate(lst, SCHEMA_VERSION, strict=True)
        for item in lst["items"]:
            m = item["metadata"]
            ns = f"/namespaces/{m['namespace']}" if "namespace" in m else ""
            base, plural = path.rsplit("/", 1)
            code, obj = http(lab, f"{base}{ns}/{plural}/{m['name']}")
            assert code == 200, obj
            kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
            count += 1
    assert count >= 6 + 2 + 4 + 2 + 2 + 2 + 2 + 1


def test_the_official_client_reads_every_list_into_its_typed_model(lab):
    from kubernetes import client, config

    def read():
        api = config.new_client_from_config(str(lab.kubeconfig))
        core, disc = client.CoreV1Api(api), client.DiscoveryV1Api(api)
        try:
            return (core.list_node(), core.list_pod_for_all_namespaces(), core.list_service_for_all_namespaces(),
                    core.list_namespace(), core.list_config_map_for_all_namespaces(),
                    disc.list_endpoint_slice_for_all_namespaces(),
                    core.read_namespaced_config_map("kube-proxy", "kube-system"))
        finally:
            api.close()

    nodes, pods, svcs, nss, cms, slices, kp = run_in(lab.netns("node-a"), read)
    assert isinstance(nodes, __import__("kubernetes").client.V1NodeList)
    assert {n.metadata.name: n.spec.pod_cidr for n in nodes.items} == {n.name: n.pod_cidr for n in NODES}
    assert {(p.metadata.namespace, p.metadata.name): (p.status.pod_ip, p.status.host_ip, p.spec.node_name)
            for p in pods.items} == {(p.namespace, p.name): (p.ip, node(p.node).underlay_ip, p.node) for p in PODS} | {
        ("podpath", name): (node(n).underlay_ip, node(n).underlay_ip, n) for n, name in agent_pods(lab).items()}
    assert all(p.status.phase == "Running" for p in pods.items)
    dns = next(s for s in svcs.items if s.metadata.name == "kube-dns")
    assert (dns.spec.cluster_ip, dns.spec.selector) == ("10.96.0.10", {"k8s-app": "kube-dns"})
    assert sorted((p.name, p.protocol, p.target_port) for p in dns.spec.ports) == [("dns", "UDP", 53),
                                                                                    ("dns-tcp", "TCP", 53)]
    assert {"default", "kube-system", "kube-flannel"} <= {n.metadata.name for n in nss.items}
    cfg = next(c for c in cms.items if c.metadata.name == "kube-flannel-cfg")
    assert json.loads(cfg.data["net-conf.json"]) == {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}
    assert "mode: iptables" in kp.data["config.conf"] and "clusterCIDR: 10.244.0.0/16" in kp.data["config.conf"]
    web = next(s for s in slices.items if s.metadata.labels["kubernetes.io/service-name"] == "web")
    assert sorted((e.addresses[0], e.node_name, e.target_ref.name, e.conditions.ready) for e in web.endpoints) == [
        ("10.244.0.3", "node-a", "pod-a2", True), ("10.244.1.2", "node-b", "pod-b", True)]
    assert [(p.name, p.port, p.protocol) for p in web.ports] == [("http", 8080, "TCP")]


# --------------------------------------------------------------------------- errors


def test_status_errors_401_403_404_405(lab):
    code, body = http(lab, "/api/v1/pods", token=None)
    assert (code, body["kind"], body["reason"]) == (401, "Status", "Unauthorized")
    assert http(lab, "/api/v1/pods", token="not-a-token")[0] == 401
    code, body = http(lab, "/api/v1/namespaces/kube-system/configmaps/kube-proxy", token="limited")
    assert (code, body["reason"]) == (403, "Forbidden")
    assert body["message"] == ('configmaps "kube-proxy" is forbidden: User "podpath-limited" cannot get resource '
                               '"configmaps" in API group "" in the namespace "kube-system"')
    code, body = http(lab, "/api/v1/namespaces/default/pods", token="limited")
    assert code == 200 and len(body["items"]) == 3
    code, body = http(lab, "/api/v1/namespaces/default/pods/x")
    assert (code, body["reason"], body["message"]) == (404, "NotFound", 'pods "x" not found')
    code, body = http(lab, "/api/v1/namespaces/default/pods/pod-a", method="DELETE")
    assert (code, body["reason"]) == (405, "MethodNotAllowed")


def test_discovery_legacy_and_aggregated(lab, kubectl):
    code, body = http(lab, "/apis/discovery.k8s.io/v1")
    assert code == 200 and {r["name"] for r in body["resources"]} == {"endpointslices"}
    code, body = http(lab, "/apis/apps/v1")
    assert code == 200 and {r["name"] for r in body["resources"]} == {"daemonsets"}
    code, body = http(lab, "/apis", accept="application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                                            "application/json")
    assert code == 200 and body["kind"] == "APIGroupDiscoveryList"
    # and the kinds of podpath's deploy/ manifests, known by name only (apiserver/deployable.py)
    rbac = "rbac.authorization.k8s.io"
    assert sorted((g["metadata"]["name"], r["resource"]) for g in body["items"] for v in g["versions"]
                  for r in v["resources"]) == sorted([
        ("discovery.k8s.io", "endpointslices"), ("apps", "daemonsets"), (rbac, "clusterroles"),
        (rbac, "clusterrolebindings"), (rbac, "roles"), (rbac, "rolebindings")])
    rows = columns(kubectl("api-resources", "--no-headers=false").stdout)
    assert {r["NAME"] for r in rows} == {"namespaces", "nodes", "pods", "services", "configmaps", "endpointslices",
                                         "serviceaccounts", "daemonsets", "clusterroles", "clusterrolebindings",
                                         "roles", "rolebindings"}


# --------------------------------------------------------------------------- selectors, pages, watch


def names(body: dict) -> list[str]:
    return sorted(i["metadata"]["name"] for i in body["items"])


# "agent:NODE" stands for the podpath agent pod on NODE (its name depends on the lab's).
@pytest.mark.parametrize("query, expected", [
    ("labelSelector=k8s-app%3Dkube-dns", ["coredns"]),
    ("labelSelector=app%3D%3Dweb", ["pod-a2", "pod-b"]),
    ("labelSelector=app!%3Dweb", ["coredns", "pod-a", "agent:node-a", "agent:node-b"]),
    ("labelSelector=app+in+(web,pod-a)", ["pod-a", "pod-a2", "pod-b"]),
    ("labelSelector=app+notin+(web)", ["coredns", "pod-a", "agent:node-a", "agent:node-b"]),
    ("labelSelector=k8s-app", ["coredns"]),
    ("labelSelector=!k8s-app", ["pod-a", "pod-a2", "pod-b", "agent:node-a", "agent:node-b"]),
    ("labelSelector=app.kubernetes.io/name%3Dpodpath-agent", ["agent:node-a", "agent:node-b"]),
    ("fieldSelector=spec.nodeName%3Dnode-b", ["coredns", "pod-b", "agent:node-b"]),
    ("fieldSelector=status.podIP%3D10.244.0.3", ["pod-a2"]),
    ("fieldSelector=status.podIP%3D192.168.56.11", ["agent:node-a"]),
    ("fieldSelector=metadata.namespace!%3Ddefault,status.phase%3DRunning", ["coredns", "agent:node-a", "agent:node-b"]),
    ("fieldSelector=metadata.name%3Dpod-a", ["pod-a"]),
])
def test_selectors(lab, query, expected):
    code, body = http(lab, f"/api/v1/pods?{query}")
    assert code == 200, body
    agents = agent_pods(lab)
    assert names(body) == sorted(agents[e[6:]] if e.startswith("agent:") else e for e in expected)


def test_an_unsupported_field_selector_is_a_400_like_the_real_one(lab):
    code, body = http(lab, "/api/v1/pods?fieldSelector=spec.hostname%3Dx")
    assert (code, body["reason"], body["message"]) == (400, "BadRequest", "field label not supported: spec.hostname")


def test_limit_and_continue_page_through_every_pod_once(lab):
    seen, token, pages = [], None, 0
    while True:
        code, body = http(lab, "/api/v1/pods?limit=3" + (f"&continue={token}" if token else ""))
        assert code == 200, body
        pages += 1
        seen += [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in body["items"]]
        token = body["metadata"].get("continue")
        if not token:
            break
        assert body["metadata"]["remainingItemCount"] == len(PODS) + len(NODES) - len(seen)
    every = [(p.namespace, p.name) for p in PODS] + [("podpath", name) for name in agent_pods(lab).values()]
    assert pages == 2 and sorted(seen) == sorted(every) and len(seen) == len(every)


def test_table_for_kubectl_columns(lab):
    code, body = http(lab, "/api/v1/nodes", accept="application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    assert code == 200 and body["kind"] == "Table"
    cols = [c["name"] for c in body["columnDefinitions"]]
    rows = {r["cells"][0]: dict(zip(cols, r["cells"])) for r in body["rows"]}
    assert rows["node-b"]["Internal-IP"] == node("node-b").underlay_ip and rows["node-b"]["Status"] == "Ready"


def test_a_watch_sees_a_fault_change_a_node_annotation(lab):
    """The official client's Watch on nodes, live while `vtep-mac-stale` is injected: node-b comes
    back MODIFIED with the new VtepMAC in flannel's backend-data annotation."""
    from kubernetes import client, config, watch

    from podpath.tracer.lab.faults import REBOOTED_VTEP_MAC

    box: dict = {}
    started = threading.Event()

    def follow():
        api = config.new_client_from_config(str(lab.kubeconfig))
        core = client.CoreV1Api(api)
        try:
            rv = core.list_node().metadata.resource_version
            started.set()
            for ev in watch.Watch().stream(core.list_node, resource_version=rv, timeout_seconds=10):
                n = ev["object"]
                if ev["type"] == "MODIFIED" and n.metadata.name == "node-b":
                    box["mac"] = json.loads(n.metadata.annotations["flannel.alpha.coreos.com/backend-data"])["VtepMAC"]
                    return
        finally:
            api.close()

    t = threading.Thread(target=lambda: run_in(lab.netns("node-a"), follow), daemon=True)
    t.start()
    assert started.wait(10)
    time.sleep(0.3)  # the watch request is in flight; events after rv are replayed anyway
    lab.inject("vtep-mac-stale")
    try:
        t.join(15)
        assert box.get("mac") == REBOOTED_VTEP_MAC, box
    finally:
        lab.clear("vtep-mac-stale")


def test_the_server_is_stopped_by_down_and_restarted_by_up(lab):
    from podpath.tracer.lab.apiserver import control

    pid = control.server_pid(lab.names)
    assert pid
    os.kill(pid, 15)
    deadline = time.monotonic() + 5
    while control.server_pid(lab.names) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("API server" in d for d in lab.drift())
    assert any("API server" in c for c in lab.up())
    assert http(lab, "/api/v1/nodes")[0] == 200
