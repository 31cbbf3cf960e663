"""The `podpath` console script: it registers only the command it runs, leaves without tearing the
interpreter down (cli/main.py run/_leave), and still exits with the command's code and every byte
of its output; the API client's typed models are not imported until something asks for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXE = str(ROOT / ".venv" / "bin" / "podpath")
BUNDLE = ROOT / "tests" / "fixtures" / "bundles" / "lab-healthy.json"


def podpath(*args: str) -> subprocess.CompletedProcess:
    # stdout block-buffered, as on any pipe (PYTHONUNBUFFERED would hide an unflushed exit)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=60, env=env)


def python(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_the_script_exits_with_the_commands_output_and_code():
    """Output smaller and larger than stdout's buffer arrives whole (flushed before os._exit), exit 0."""
    r = podpath("diagnose", "pod-a", "pod-b", "--bundle", str(BUNDLE))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("diagnose pod-a → pod-b") and r.stdout.rstrip().endswith("no problem found")
    r = podpath("diagnose", "pod-a", "pod-b", "--bundle", str(BUNDLE), "-o", "json")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) > 16384
    assert json.loads(r.stdout)["path"]


def test_an_error_is_one_line_and_its_exit_code():
    r = podpath("diagnose", "pod-a", "pod-b", "--bundle", "/nonexistent/bundle.json")
    assert r.returncode == 3
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith("podpath: error: bundle file")
    r = podpath("nosuch")
    assert r.returncode == 2 and r.stderr.strip() == "podpath: error: No such command 'nosuch'; see `podpath --help`"


def test_help_lists_every_command():
    from podpath.cli.main import COMMANDS

    r = podpath("--help")
    assert r.returncode == 0
    for name in COMMANDS:
        assert f" {name} " in r.stdout, name


def test_a_command_imports_no_other_commands_module():
    r = subprocess.run([sys.executable, "-c",
                        "import sys\n"
                        f"sys.argv = ['podpath', 'diagnose', 'pod-a', 'pod-b', '--bundle', {str(BUNDLE)!r}]\n"
                        "from podpath.cli.main import main\n"
                        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
                        "print(' '.join(m for m in sys.modules if m.startswith('podpath.cli.')), file=sys.stderr)\n"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stderr.split())
    assert "podpath.cli.diagnose" in loaded
    assert not loaded & {"podpath.cli.doctor", "podpath.cli.lab", "podpath.cli.watch", "podpath.cli.report",
                         "podpath.cli.agent", "podpath.cli.trace"}, loaded


def test_the_typed_api_is_imported_only_when_asked_for(tmp_path):
    """A kubeconfig's client reads by path: CoreV1Api (a pydantic model per core type, 0.5-0.8 s)
    stays unimported until .core is used."""
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    out = python(
        "import sys\n"
        "from podpath.tracer.kube import connect\n"
        f"kube = connect({str(cfg)!r})\n"
        "m = 'kubernetes.client.api.core_v1_api'\n"
        "print(m in sys.modules, end=' ')\n"
        "kube.core.list_node\n"
        "print(m in sys.modules)\n")
    assert out.split() == ["False", "True"]
