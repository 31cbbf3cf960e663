"""`podpath agent`: the per-node agent a coordinator (`podpath trace` elsewhere) drives."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from podpath.cli.common import ContextOpt, KubeconfigOpt, err


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)


def agent(
    port: int = typer.Option(4244, "--port", help="TCP port on 127.0.0.1 (loopback only: coordinators come "
                             "through the API server's port-forward)"),
    node_name: str = typer.Option(None, "--node-name", help="this node's name (default: $NODE_NAME, else the "
                                  "API's view, else the hostname)", metavar="NAME"),
    kubeconfig: str = KubeconfigOpt,
    context: str = ContextOpt,
    pid_file: Path = typer.Option(None, "--pid-file", help="write the pid here once listening (readiness)",
                                  metavar="FILE"),
) -> None:
    """Serve coordinators on this node until SIGTERM or ^C: snapshots, probes armed per trace, test
    packets sent from a local pod, events streamed (docs/agent-protocol.md). Needs root.

    \b
    Examples:
      podpath agent                                  # in the DaemonSet (in-cluster API)
      ip netns exec lab-node-a podpath agent --kubeconfig lab.kubeconfig --pid-file a.pid
    """
    from podpath.cli import validate
    from podpath.tracer import errors
    from podpath.tracer.agent.server import Agent, Server
    from podpath.tracer.kube import connect

    validate.port(port, "--port")
    errors.require_root("`podpath agent` (it loads eBPF programs and enters pod namespaces)",
                        "run it as root (the DaemonSet does)")
    logging.basicConfig(level=logging.INFO, format="podpath agent: %(message)s")
    log = logging.getLogger("podpath.agent")
    # Listen first, then warm up: readiness (the pid file) comes before the imports and the API
    # client, and a coordinator that connects meanwhile waits in the accept backlog, not refused.
    server = Server(None, port)
    if pid_file is not None:
        pid_file.write_text(f"{os.getpid()}\n")
    kube = connect(kubeconfig, context)
    a = server.agent = Agent(kube, node_name or os.environ.get("NODE_NAME") or None, warn=log.warning)
    err.print(f"podpath agent: listening on 127.0.0.1:{server.port}" + (f" (node {a.node_name})" if a.node_name else ""))
    try:
        server.serve_forever()
    finally:
        server.close()
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
