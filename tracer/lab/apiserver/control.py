"""Start, check and stop the lab's API server; write its kubeconfigs (called by the lab's reconcile)."""

from __future__ import annotations

import base64
import ssl
import sys
import time
import urllib.request
from typing import TYPE_CHECKING

import yaml

from ...errors import LabError
from .. import processes
from ..topology import APISERVER_URL, CONTROL_PLANE, Names
from . import certs

if TYPE_CHECKING:  # pragma: no cover
    from ..build import BuildCtx


def pid_file(names: Names):
    return names.run_dir / "apiserver.pid"


def log_file(names: Names):
    return names.run_dir / "apiserver.log"


def server_pid(names: Names) -> int | None:
    pid = processes.read_pid(pid_file(names))
    return pid if processes.alive_in(pid, names.netns(CONTROL_PLANE)) else None


def kubeconfig_text(names: Names, token_name: str) -> str:
    """A kubeconfig for one user of this lab: server 192.168.56.10:6443, the CA embedded."""
    d = names.apiserver_dir
    ca = base64.b64encode(certs.paths(d)["ca"].read_bytes()).decode()
    user = certs.USERS[token_name][0]
    cfg = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": names.lab, "cluster": {"server": APISERVER_URL, "certificate-authority-data": ca}}],
        "users": [{"name": user, "user": {"token": certs.tokens(d)[token_name]}}],
        "contexts": [{"name": names.lab, "context": {"cluster": names.lab, "user": user, "namespace": "default"}}],
        "current-context": names.lab,
    }
    return yaml.safe_dump(cfg, sort_keys=False)


def _write_kubeconfig(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def ensure(ctx: "BuildCtx") -> None:
    """Credentials, both kubeconfigs and a running, answering server (dry: report what is missing)."""
    names = ctx.names
    d = names.apiserver_dir
    if not certs.present(d):
        ctx.do(f"made the API server's CA, certificate and tokens in {d}", certs.make, d, names.lab)
        if ctx.dry:
            return
    missing = certs.missing_tokens(d)
    if missing:  # a lab made before these users existed; the server re-reads tokens when restarted
        ctx.do(f"added tokens for {', '.join(missing)} to {d}", certs.add_tokens, d)
        if ctx.dry:
            return
        ctx.do("restarted the API server (new tokens)", stop, names)
    for path, who in ((names.kubeconfig, "admin"), (names.kubeconfig_limited, "limited"),
                      (names.kubeconfig_agent, "agent"), (names.kubeconfig_coordinator, "coordinator")):
        want = kubeconfig_text(names, who)
        try:
            if path.read_text() == want:
                continue
        except OSError:
            pass
        ctx.do(f"wrote {path}", _write_kubeconfig, path, want)
    if server_pid(names) is None:
        ctx.do(f"{names.netns(CONTROL_PLANE)}: started the API server on {APISERVER_URL}",
               ctx.behind, "apiserver-start", lambda: start(names))  # its start-up overlaps the build


def start(names: Names, timeout: float = 15.0) -> int:
    argv = [sys.executable, "-m", "podpath.tracer.lab.apiserver", "--lab", names.lab,
            "--pid-file", str(pid_file(names))]
    pid = processes.spawn(names.netns(CONTROL_PLANE), argv, pid_file(names), log_file(names),
                          "the lab's API server", timeout)
    wait_ready(names, timeout)
    return pid


def wait_ready(names: Names, timeout: float = 10.0) -> None:
    """GET /readyz over TLS from inside the control-plane namespace until it answers 200."""
    from ...netns import run_in

    ctxt = ssl.create_default_context(cafile=str(certs.paths(names.apiserver_dir)["ca"]))

    def ask() -> int:
        with urllib.request.urlopen(APISERVER_URL + "/readyz", context=ctxt, timeout=1) as r:
            return r.status

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if run_in(names.netns(CONTROL_PLANE), ask) == 200:
                return
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise LabError(f"the lab's API server does not answer on {APISERVER_URL}: {last} (log: {log_file(names)})")


def stop(names: Names) -> bool:
    return processes.stop_file(pid_file(names))
