"""The kind and Vagrant labs' files, checked where they cannot boot.

This machine has no VM images, no container engine and no kubeadm packages, so neither lab is
brought up here. What can be checked is: `vagrant validate` on the Vagrantfile (Debian's vagrant,
scripts/setup.sh installs it; `--ignore-provider` because no provider is installed), `bash -n`
and shellcheck on every provisioning script, the kind config as kind-up.sh renders it, the lab's
workloads against the published Kubernetes schemas (kubernetes-validate, strict), and that all of
it names the netns lab's nodes, addresses, pods and Service, so the one fault catalog means the
same things in the three labs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from podpath.tracer.lab.faults import WEB_VIP
from podpath.tracer.lab.topology import NODES, PODS, SERVICES

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "labs" / "vagrant").glob("*.sh")) + sorted((ROOT / "scripts").glob("kind-*.sh"))
SCHEMA_VERSION = "1.30.0"  # the stand-in API server's, as tests/unit/test_deploy.py uses


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} is not installed: run scripts/setup.sh (it installs Debian's {name})")
    return exe


def _vagrant_validate(tmp_path: Path, vagrantfile: str | None = None, env: dict | None = None):
    """`vagrant validate` on a copy of what the Vagrantfile reads, so nothing lands in the checkout."""
    for name in ("pyproject.toml", "labs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "Vagrantfile").write_text(vagrantfile or (ROOT / "Vagrantfile").read_text())
    import os

    return subprocess.run([_tool("vagrant"), "validate", "--ignore-provider"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "VAGRANT_HOME": str(tmp_path / ".vagrant.d"),
                                                       **(env or {})})


def test_vagrantfile_validates(tmp_path):
    r = _vagrant_validate(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "validated successfully" in r.stdout
    assert "node-a" in r.stdout and "node-b" in r.stdout


def test_vagrant_validate_catches_a_missing_provisioning_script(tmp_path):
    broken = (ROOT / "Vagrantfile").read_text().replace("labs/vagrant/join.sh", "labs/vagrant/jion.sh")
    r = _vagrant_validate(tmp_path, broken)
    assert r.returncode != 0 and "jion.sh" in r.stdout + r.stderr


def test_vagrantfile_refuses_an_unknown_kube_proxy_mode(tmp_path):
    r = _vagrant_validate(tmp_path, env={"KUBE_PROXY_MODE": "nftables"})
    assert r.returncode != 0
    assert "KUBE_PROXY_MODE must be iptables or ipvs" in r.stdout + r.stderr


def test_vagrant_nodes_are_the_netns_labs():
    text = (ROOT / "Vagrantfile").read_text()
    nodes = dict(re.findall(r'"(node-[ab])" => "([\d.]+)"', text))
    assert nodes == {n.name: n.underlay_ip for n in NODES}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_provisioning_scripts_parse_and_pass_shellcheck(script):
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([_tool("shellcheck"), "-x", str(script)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout


def test_shellcheck_finds_a_real_mistake(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nfor f in $(ls *.sh); do echo $f; done\n")
    assert subprocess.run([_tool("shellcheck"), str(bad)], capture_output=True).returncode != 0


def _render_kind(mode: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(["bash", str(ROOT / "scripts" / "kind-up.sh"), "--render-config"], capture_output=True,
                          text=True, env={**os.environ, "KUBE_PROXY_MODE": mode, "CNI_BIN": "/tmp/cni-bin"})


@pytest.mark.parametrize("mode", ["iptables", "ipvs", "nftables"])
def test_kind_config_renders_for_each_kube_proxy_mode(mode):
    r = _render_kind(mode)
    assert r.returncode == 0, r.stderr
    assert "@" not in "".join(l for l in r.stdout.splitlines() if not l.startswith("#"))
    cfg = yaml.safe_load(r.stdout)
    assert (cfg["apiVersion"], cfg["kind"]) == ("kind.x-k8s.io/v1alpha4", "Cluster")
    net = cfg["networking"]
    assert net == {"disableDefaultCNI": True, "podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12",
                   "kubeProxyMode": mode}
    assert [n["role"] for n in cfg["nodes"]] == ["control-plane", "worker"]
    assert [n["labels"]["podpath.io/lab-node"] for n in cfg["nodes"]] == [n.name for n in NODES]
    # flannel's e2e way: the CNI plugins the node image lacks, mounted at /opt/cni/bin on every node
    assert all(n["extraMounts"] == [{"hostPath": "/tmp/cni-bin", "containerPath": "/opt/cni/bin"}]
               for n in cfg["nodes"])


def test_kind_up_refuses_an_unknown_kube_proxy_mode_in_one_line():
    r = _render_kind("userspace")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "KUBE_PROXY_MODE must be iptables, ipvs or nftables" in r.stderr


def _workloads() -> list[dict]:
    return [d for d in yaml.safe_load_all((ROOT / "labs" / "workloads.yaml").read_text()) if d]


@pytest.mark.parametrize("doc", _workloads(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_workloads_validate_against_the_published_schemas(doc):
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"labs/workloads.yaml: {doc['kind']} {doc['metadata']['name']}: {e.message} at {list(e.path)}")


def test_workloads_are_the_netns_labs_pods_and_service():
    """Same pod names on the same nodes, the web Service on the same ClusterIP with the same
    endpoints: the catalog's roles and addresses mean the same things on kind and Vagrant."""
    pods = {d["metadata"]["name"]: d for d in _workloads() if d["kind"] == "Pod"}
    lab = {p.name: p for p in PODS if p.name != "coredns"}  # CoreDNS is the cluster's own there
    assert set(pods) == set(lab)
    for name, d in pods.items():
        assert d["spec"]["nodeSelector"] == {"podpath.io/lab-node": lab[name].node}
        serves = any(c.get("ports") for c in d["spec"]["containers"])
        assert serves == (lab[name].server == "web"), name
    (svc,) = [d for d in _workloads() if d["kind"] == "Service"]
    web = next(s for s in SERVICES if s.name == "web")
    assert svc["spec"]["clusterIP"] == web.cluster_ip == WEB_VIP
    (port,) = svc["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (web.ports[0].port, web.ports[0].target_port)
    selected = {n for n, d in pods.items() if d["metadata"]["labels"].get("app") == svc["spec"]["selector"]["app"]}
    assert selected == set(web.endpoints)


def test_the_agent_daemonset_is_referenced_by_path_not_copied():
    """Both labs apply deploy/ (issue 10's manifests) as they are; no second copy lives here."""
    assert "kubectl apply -f /vagrant/deploy/" in (ROOT / "labs" / "vagrant" / "control-plane.sh").read_text()
    assert 'k apply -f deploy/' in (ROOT / "scripts" / "kind-up.sh").read_text()
    for d in ("labs", "kind"):
        for f in (ROOT / d).rglob("*.y*ml"):
            assert "podpath-agent" not in f.read_text(), f"{f} copies the agent DaemonSet: use deploy/"


def test_flannel_is_bound_to_the_private_network_in_vagrant():
    text = (ROOT / "labs" / "vagrant" / "control-plane.sh").read_text()
    assert "- --iface=$iface" in text and "--kube-subnet-mgr" in text
    rendered = subprocess.run(
        ["sed", "-E", r"s|^( *)- --kube-subnet-mgr$|&\n\1- --iface=eth1|"],
        input="        args:\n        - --ip-masq\n        - --kube-subnet-mgr\n", capture_output=True, text=True).stdout
    assert rendered.splitlines()[-1] == "        - --iface=eth1"  # the same indentation: still YAML args
    assert "sed -E \"s|^( *)- --kube-subnet-mgr$|&\\n\\1- --iface=$iface|\"" in text
