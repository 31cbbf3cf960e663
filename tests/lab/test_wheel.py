"""The wheel a node installs: built with `python -m build`, installed into its own virtualenv outside
the checkout (what `pipx install` does), run with no clang, llvm, make or bpftool on PATH and the
current directory outside the repo.

Build and install are offline and cheap: `--no-isolation` builds with the test venv's setuptools,
and the wheel goes in with `pip install --no-deps --no-index`; the third-party dependencies
(pyroute2, typer, kubernetes, pandas...) are the test venv's own, reached through a .pth file in the
new venv's site-packages, so nothing is downloaded again. podpath itself, its console scripts and
its BPF objects all come from the wheel (asserted below), never from this checkout.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What a node without a BPF toolchain lacks; podpath must not need any of it at run time.
TOOLCHAIN = ("clang", "llc", "llvm", "bpftool", "make", "gcc", "cc", "ld")


def _is_toolchain(name: str) -> bool:
    return any(name == t or name.startswith(t + "-") for t in TOOLCHAIN)


def _path_without_toolchain(root: Path) -> str:
    """A PATH directory holding links to every system command except the BPF/C toolchain."""
    tools = root / "bin-no-clang"
    tools.mkdir()
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            link = tools / name
            if _is_toolchain(name) or link.exists() or link.is_symlink():
                continue
            link.symlink_to(os.path.join(d, name))
    return str(tools)


def _checkout_copy(root: Path, *leave_out: str) -> Path:
    """This checkout's files (mtimes kept, so make sees built objects as up to date), without venv or git."""
    import shutil

    src = root / "podpath"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", *leave_out))
    return src


class Installed:
    def __init__(self, root: Path, wheel: Path):
        self.root, self.wheel = root, wheel
        self.venv = root / "venv"
        self.path = f"{self.venv / 'bin'}:{_path_without_toolchain(root)}"

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """argv run as a user's shell would, with only the new venv and system commands on PATH."""
        env = {"PATH": self.path, "HOME": str(self.root), "LANG": "C.UTF-8"}
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env, cwd=self.root)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    assert not str(root).startswith(str(REPO))
    dist = root / "dist"
    src = _checkout_copy(root, "*.whl")  # built objects included: the build leaves this checkout alone
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(src)],
                           capture_output=True, text=True, cwd=root, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel, = dist.glob("podpath-*.whl")
    inst = Installed(root, wheel)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(inst.venv)], check=True)
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", str(inst.venv / "bin" / "python"), "install", "-q",
                          "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    site = inst.venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    # after the new venv's own site-packages on sys.path, so podpath resolves to the wheel's copy
    deps = [p for p in sys.path if p.endswith("-packages")] or [sysconfig.get_paths()["purelib"]]
    (site / "zz_test_venv_dependencies.pth").write_text("\n".join(deps) + "\n")
    return inst


def test_the_wheel_carries_the_co_re_objects_but_not_the_test_only_one(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for obj in ("tc", "trace", "tc.agent", "trace.agent", "watch"):  # *.agent: podpath agent's build
        assert f"podpath/bpf/{obj}.bpf.o" in names
    assert "podpath/bpf/filter_check.bpf.o" not in names  # tests/lab/test_filter_superset.py's probe only
    assert "podpath/bpf/vmlinux.h" not in names  # the build machine's kernel types, never needed on a node
    assert "podpath/cli/main.py" in names and "podpath/tracer/lab/apiserver/server.py" in names


def test_podpath_and_its_objects_come_from_the_wheel_with_no_toolchain_on_path(installed):
    p = installed.run("python", "-c", "import shutil, podpath; from podpath.tracer.probes import object_path\n"
                      "print(podpath.__file__); print(object_path('trace')); print(shutil.which('clang'))")
    assert p.returncode == 0, p.stderr
    module, obj, clang = p.stdout.split()
    assert module.startswith(str(installed.venv)) and obj.startswith(str(installed.venv))
    assert clang == "None"
    for script in ("podpath", "kubectl-podpath"):
        assert (installed.venv / "bin" / script).read_text().startswith(f"#!{installed.venv}/bin/python")


def test_the_installed_commands_answer_help(installed):
    p = installed.run("podpath", "--help")
    assert p.returncode == 0 and "trace" in p.stdout and "doctor" in p.stdout
    p = installed.run("kubectl-podpath", "--help")
    assert p.returncode == 0 and "kubectl podpath" in p.stdout


@pytest.mark.lab
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: podpath doctor loads and attaches BPF programs")
def test_doctor_from_the_wheel_finds_live_tracing_possible(installed):
    p = installed.run("podpath", "doctor", "-o", "json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["tracing"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["kernel BTF"]["status"] == "ok"
    assert checks["BPF objects"]["status"] == "ok"
    site = f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert checks["BPF objects"]["detail"] == f"tc, trace, tc.agent, trace.agent, watch in {installed.venv}/lib/{site}/site-packages/podpath/bpf"


def test_doctor_names_missing_objects_and_what_to_install(installed, tmp_path):
    """A podpath whose objects are not where it looks ($PODPATH_BPF_DIR here): doctor says so, tracing
    is impossible (exit 5), whatever else the kernel allows."""
    (tmp_path / "tc.bpf.o").write_bytes(b"not an ELF file")
    env_dir = f"PODPATH_BPF_DIR={tmp_path}"
    p = installed.run("env", env_dir, "podpath", "doctor", "-o", "json")
    assert p.returncode == 5
    report = json.loads(p.stdout)
    objects = {c["name"]: c for c in report["checks"]}["BPF objects"]
    assert report["tracing"] is False and objects["status"] == "fail"
    assert objects["detail"] == (f"trace.bpf.o, tc.agent.bpf.o, trace.agent.bpf.o, watch.bpf.o missing in {tmp_path}: "
                                 "install podpath from its wheel (it carries them), or run `make -C bpf` in a checkout")


@pytest.fixture(scope="module")
def wheel_lab(installed, request):
    """A lab built by the installed podpath (its API server runs on the new venv's python)."""
    from podpath.tracer.lab import Lab

    name = "ppw" + secrets.token_hex(2)
    request.addfinalizer(lambda: Lab(name).down())  # even if the installed `lab down` never ran
    up = installed.run("podpath", "lab", "up", "--name", name)
    assert up.returncode == 0, up.stderr
    yield name
    down = installed.run("podpath", "lab", "down", "--name", name)
    assert down.returncode == 0, down.stderr


@pytest.mark.lab
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces and loads BPF programs")
def test_a_lab_trace_runs_from_the_wheel_and_names_the_fault(installed, wheel_lab):
    ok = installed.run("podpath", "trace", "pod-a", "pod-b", "--lab", wheel_lab, "-o", "json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["verdict"]["status"] == "delivered"
    fault = installed.run("podpath", "lab", "fault", "inject", "forward-drop", "--lab", wheel_lab)
    assert fault.returncode == 0, fault.stderr
    dropped = installed.run("podpath", "trace", "pod-a", "pod-b", "--lab", wheel_lab, "-o", "json")
    verdict = json.loads(dropped.stdout)["verdict"]
    assert dropped.returncode != 0
    assert (verdict["status"], verdict["cause"], verdict["node"]) == ("dropped", "iptables", "node-b")
    status = installed.run("podpath", "lab", "status", "--lab", wheel_lab, "-o", "json")
    assert status.returncode == 0, status.stderr

    # as an operator on node-a, through kubectl: with the lab's agents (started from this wheel too),
    # node-b's drop; without them, node-a's part, node-b not observed
    kubeconfig = json.loads(status.stdout)["kubeconfig"]
    on_node = ("ip", "netns", "exec", f"{wheel_lab}-node-a", "kubectl")
    p = installed.run(*on_node, "podpath", "trace", "default/pod-a", "default/pod-b", "--kubeconfig", kubeconfig,
                      "-o", "json")
    verdict = json.loads(p.stdout)["verdict"]
    assert p.returncode != 0, p.stderr
    agents = installed.run(*on_node, "--kubeconfig", kubeconfig, "get", "pods", "-n", "podpath", "-o", "name")
    if agents.returncode == 0 and agents.stdout.strip():
        assert (verdict["status"], verdict["cause"], verdict["node"]) == ("dropped", "iptables", "node-b")
    else:
        assert (verdict["status"], verdict["node"], verdict["location"]) == ("lost", "node-a", "left node-a")


def test_a_build_without_the_objects_and_without_clang_fails_in_one_line(tmp_path):
    """A checkout whose bpf/ was never built, on a machine with make but no clang: no wheel without
    its objects, and one line saying what to install."""
    import shutil

    src = _checkout_copy(tmp_path, "*.o", "vmlinux.h")
    path = _path_without_toolchain(tmp_path)
    os.symlink(shutil.which("make"), Path(path) / "make")
    p = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"),
                        str(src)], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                       env={"PATH": path, "HOME": str(tmp_path), "LANG": "C.UTF-8"})
    assert p.returncode != 0
    assert not list((tmp_path / "dist").glob("*.whl"))
    line, = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.startswith("podpath build:")]
    assert "`make -C bpf` failed" in line and "install clang, llvm, bpftool and libbpf-dev" in line
