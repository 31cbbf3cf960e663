"""`kubectl podpath`: the real kubectl finds the `kubectl-podpath` console script on PATH and runs it
with the arguments after the plugin name; and `kubectl apply --dry-run=client -f deploy/` maps
every manifest through the lab's stand-in API server's discovery.

The dry run uses `--validate=false`: with validation on, kubectl downloads the server's OpenAPI
document, which the stand-in does not serve (it would be a copy of Kubernetes' whole schema); the
same schemas check every manifest strictly in tests/unit/test_deploy.py (kubernetes-validate).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fresh_lab

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent  # where pip put podpath and kubectl-podpath
BUNDLE = ROOT / "tests" / "fixtures" / "bundles" / "lab-healthy.json"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces and loads BPF programs")


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory):
    """kubectl ARGS, with this venv's bin first on PATH, a private HOME (no ~/.kube/config) and cache."""
    exe = shutil.which("kubectl")
    if exe is None:
        pytest.fail("kubectl is not installed: run scripts/setup.sh (Debian package kubernetes-client)")
    home = tmp_path_factory.mktemp("kubectl-home")
    env = {"PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}", "HOME": str(home),
           "LANG": "C.UTF-8"}

    def run(*args: str, netns: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        argv = [exe, *args]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=home, timeout=timeout)

    return run


def test_kubectl_lists_the_plugin(kubectl):
    p = kubectl("plugin", "list")
    assert p.returncode == 0, p.stderr
    assert str(VENV_BIN / "kubectl-podpath") in p.stdout.split()
    assert "warning" not in p.stderr.lower()  # e.g. "is not executable", "overshadows an existing command"


def test_kubectl_podpath_help_names_itself_as_a_kubectl_plugin(kubectl):
    p = kubectl("podpath", "--help")
    assert p.returncode == 0, p.stderr
    assert "Usage: kubectl podpath" in p.stdout and "trace" in p.stdout and "diagnose" in p.stdout


def test_kubectl_passes_arguments_through_and_the_exit_code_back(kubectl):
    via_kubectl = kubectl("podpath", "diagnose", "pod-a", "pod-b", "--bundle", str(BUNDLE), "-o", "json")
    direct = subprocess.run([str(VENV_BIN / "podpath"), "diagnose", "pod-a", "pod-b", "--bundle", str(BUNDLE),
                             "-o", "json"], capture_output=True, text=True)
    assert via_kubectl.returncode == direct.returncode == 0, via_kubectl.stderr
    got = json.loads(via_kubectl.stdout)
    assert got == json.loads(direct.stdout)
    assert (got["flow"]["src_name"], got["flow"]["dst_name"]) == ("pod-a", "pod-b") and got["path"]

    missing = kubectl("podpath", "diagnose", "pod-a", "pod-b", "--bundle", "/nonexistent/bundle.json")
    assert missing.returncode == 3 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr
    usage = kubectl("podpath", "trace")
    assert usage.returncode == 2
    assert usage.stderr.strip() == "podpath: error: Missing argument 'src'; see `kubectl podpath trace --help`"


def test_kubectl_global_flags_go_after_the_plugin_name(kubectl):
    """kubectl refuses its own flags before a plugin's name (it never passes them on): users write
    `kubectl podpath trace ... --context X`, as README's Deploy section says."""
    p = kubectl("--context", "prod", "podpath", "--help")
    assert p.returncode != 0 and "flags cannot be placed before plugin name: --context" in p.stderr
    after = kubectl("podpath", "diagnose", "pod-a", "pod-b", "--kubeconfig", "/nonexistent/kubeconfig")
    assert after.returncode == 2  # podpath itself read the flag, and named the file
    assert after.stderr.strip() == ("podpath: error: kubeconfig '/nonexistent/kubeconfig' does not exist; "
                                    "give the file kubectl uses (--kubeconfig FILE)")


# --------------------------------------------------------------------------- against the lab


@pytest.fixture(scope="module")
def lab(request):
    return fresh_lab(request, "ppk")


@pytest.mark.lab
@needs_root
def test_kubectl_dry_run_applies_every_deploy_manifest_against_the_stand_in(kubectl, lab):
    p = kubectl("--kubeconfig", str(lab.kubeconfig), "apply", "--dry-run=client", "--validate=false",
                "-f", str(ROOT / "deploy"), netns=lab.netns("node-a"))
    assert p.returncode == 0, p.stderr
    # "created", or "configured" for what the lab serves already (namespace podpath, once the lab
    # registers its agents as the DaemonSet's pods)
    applied = sorted(line.split()[0] for line in p.stdout.splitlines()
                     if line.endswith(("created (dry run)", "configured (dry run)", "unchanged (dry run)")))
    assert applied == sorted([
        "namespace/podpath", "serviceaccount/podpath-agent", "serviceaccount/podpath-coordinator",
        "clusterrole.rbac.authorization.k8s.io/podpath-agent", "clusterrole.rbac.authorization.k8s.io/podpath-coordinator",
        "clusterrolebinding.rbac.authorization.k8s.io/podpath-agent",
        "clusterrolebinding.rbac.authorization.k8s.io/podpath-coordinator",
        "role.rbac.authorization.k8s.io/podpath-coordinator", "rolebinding.rbac.authorization.k8s.io/podpath-coordinator",
        "daemonset.apps/podpath-agent"])


@pytest.mark.lab
@needs_root
def test_the_dry_run_refuses_an_api_version_the_server_does_not_serve(kubectl, lab, tmp_path):
    old = tmp_path / "old.yaml"  # rbac v1beta1 was removed in Kubernetes 1.22
    old.write_text("apiVersion: rbac.authorization.k8s.io/v1beta1\nkind: ClusterRole\nmetadata:\n  name: x\nrules: []\n")
    p = kubectl("--kubeconfig", str(lab.kubeconfig), "apply", "--dry-run=client", "--validate=false",
                "-f", str(old), netns=lab.netns("node-a"))
    assert p.returncode != 0 and 'no matches for kind "ClusterRole" in version "rbac.authorization.k8s.io/v1beta1"' in p.stderr


@pytest.mark.lab
@needs_root
def test_kubectl_podpath_trace_on_a_node_gives_podpath_traces_verdict(kubectl, lab):
    """Run on node-a as an operator would (`kubectl podpath trace ... --kubeconfig K`), healthy then with
    node-b's FORWARD drop: kubectl hands back podpath's own verdict and exit code (the same as
    `podpath trace` run there directly) — through the lab's agents when it runs them (the stand-in's
    pods/portforward), else node-a's part alone."""
    args = ("trace", "default/pod-a", "default/pod-b", "--kubeconfig", str(lab.kubeconfig), "-o", "json")
    ok = kubectl("podpath", *args, netns=lab.netns("node-a"))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["verdict"]["status"] == "delivered"
    lab.inject("forward-drop")
    try:
        via_kubectl = kubectl("podpath", *args, netns=lab.netns("node-a"))
        direct = subprocess.run(["ip", "netns", "exec", lab.netns("node-a"), str(VENV_BIN / "podpath"), *args],
                                capture_output=True, text=True, timeout=60)
    finally:
        lab.clear("forward-drop")
    keys = ("status", "cause", "node", "location", "device")
    got, want = (json.loads(p.stdout)["verdict"] for p in (via_kubectl, direct))
    assert {k: got[k] for k in keys} == {k: want[k] for k in keys}
    assert via_kubectl.returncode == direct.returncode != 0
    agents = kubectl("--kubeconfig", str(lab.kubeconfig), "get", "pods", "-n", "podpath", "-o", "name",
                     "-l", "app.kubernetes.io/name=podpath-agent", netns=lab.netns("node-a"))
    if agents.returncode == 0 and agents.stdout.strip():
        # the lab runs an agent per node (issue 10): the coordinator sees node-b's kernel drop it
        assert (got["status"], got["cause"], got["node"]) == ("dropped", "iptables", "node-b")
    else:  # podpath on node-a alone: the packet left node-a, and node-b is named, not guessed
        assert (got["status"], got["node"], got["location"]) == ("lost", "node-a", "left node-a")
        assert "node-b: not observed" in [e["object"] for e in got["evidence"]]
