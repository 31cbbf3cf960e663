"""The lab's podpath agents: one `podpath agent` per lab node, inside that node's namespace.

What the DaemonSet podpath/podpath-agent runs on a cluster (hostNetwork: the node's namespace),
started like the lab's other processes (processes.spawn: pid file once listening, log file, a pid
counts only while alive in that namespace), stopped by `lab down`, reported by drift when dead.
Each runs as the ServiceAccount podpath-agent (the lab's agent kubeconfig); the stand-in API
server lists them as the DaemonSet's pods, Ready while their process runs.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import processes
from .apiserver.objects import AGENT_PORT
from .topology import NODES, Names

if TYPE_CHECKING:  # pragma: no cover
    from .build import BuildCtx

START_TIMEOUT = 30.0  # a real agent imports podpath and loads its BPF objects before it listens


def agent_command() -> list[str] | None:
    """How this podpath runs `podpath agent` (the console script beside this Python, else the CLI's
    entry point); None when this podpath has no agent command."""
    if importlib.util.find_spec("podpath.cli.agent") is None:
        return None
    script = Path(sys.executable).parent / "podpath"
    if script.exists():
        return [str(script)]
    found = shutil.which("podpath")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; sys.argv[0] = 'podpath'; from podpath.cli.main import main; main()"]


def argv(names: Names, node: str) -> list[str] | None:
    """The contract's command line for node's agent (None: no agent command to run)."""
    cmd = agent_command()
    if cmd is None:
        return None
    return [*cmd, "agent", "--port", str(AGENT_PORT), "--node-name", node,
            "--kubeconfig", str(names.kubeconfig_agent), "--pid-file", str(names.agent_pid_file(node))]


def pid(names: Names, node: str) -> int | None:
    """The pid of node's agent if it runs (in that node's namespace), else None."""
    p = processes.read_pid(names.agent_pid_file(node))
    return p if processes.alive_in(p, names.netns(node)) else None


def ready(names: Names) -> dict[str, bool]:
    """node -> its agent runs: what the API server reports as the DaemonSet pods' readiness."""
    return {n.name: pid(names, n.name) is not None for n in NODES}


def start(names: Names, node: str, timeout: float = START_TIMEOUT) -> int:
    args = argv(names, node)
    if args is None:
        raise RuntimeError("this podpath has no `podpath agent` command")
    return processes.spawn(names.netns(node), args, names.agent_pid_file(node), names.agent_log_file(node),
                           f"the podpath agent of {node}", timeout)


def ensure(ctx: "BuildCtx") -> None:
    """Start the agents that do not run (dry: report them), in threads: each takes most of a second
    to import podpath and listen, which overlaps the rest of the build (BuildCtx.join_behind)."""
    if agent_command() is None:
        return
    missing = [n.name for n in NODES if pid(ctx.names, n.name) is None]
    for node in missing:
        ctx.do(f"{ctx.ns(node)}: started the podpath agent (127.0.0.1:{AGENT_PORT})",
               ctx.behind, f"agent-start-{node}", lambda node=node: start(ctx.names, node))


def stop(names: Names) -> list[str]:
    return [f"stopped the podpath agent of {n.name}" for n in NODES if processes.stop_file(names.agent_pid_file(n.name))]
