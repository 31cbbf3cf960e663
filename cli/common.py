"""Options and helpers every command shares: output format, where the view comes from, consoles."""

from __future__ import annotations

import json
import sys
from enum import Enum

import typer
from rich.console import Console
from rich.markup import escape

out = Console(highlight=False, soft_wrap=True)  # data: stdout
err = Console(stderr=True, highlight=False)  # progress and diagnostics: stderr


class Output(str, Enum):
    text = "text"
    json = "json"


OutputOpt = typer.Option(Output.text, "--output", "-o", help="text for people, json for scripts (| jq)")
BundleOpt = typer.Option(None, "--bundle", "-b", help="analyse a saved bundle (podpath snapshot -o FILE) "
                         "instead of taking a live snapshot", metavar="FILE")
LabOpt = typer.Option(None, "--lab", help="read podpath's netns lab NAME (podpath lab up) instead of this node",
                      metavar="NAME")
KubeconfigOpt = typer.Option(None, "--kubeconfig", help="kubeconfig for the cluster's names and facts (default: "
                             "$KUBECONFIG, ~/.kube/config, or the in-cluster service account)", metavar="FILE")
ContextOpt = typer.Option(None, "--context", help="kubeconfig context to use", metavar="NAME")


def warn(message: str) -> None:
    err.print(f"[yellow]podpath: warning:[/] {escape(message)}", soft_wrap=True)  # one line each, for grep


def get_source(bundle: str | None = None, lab: str | None = None, kubeconfig: str | None = None,
               context: str | None = None):
    """Where a command's view comes from: a saved bundle, the netns lab, or this node (default)."""
    from podpath.tracer.errors import UsageError
    from podpath.tracer.sources import BundleSource

    if sum(x is not None for x in (bundle, lab)) > 1:
        raise UsageError("give one of --bundle FILE or --lab NAME (neither: this node)")
    if bundle:
        return BundleSource(bundle)
    if lab:
        from podpath.tracer.lab.source import LabSource
        return LabSource(lab)
    from podpath.tracer.sources.node import connect_source
    return connect_source(kubeconfig, context, warn)


def snapshot(source, targets: tuple[str, ...] = ()):
    """The source's snapshot, with a live status line on a terminal."""
    if sys.stderr.isatty() and source.live:
        with err.status(f"snapshotting {source.label}…"):
            return source.snapshot(targets)
    return source.snapshot(targets)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
