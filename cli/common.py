"""Options and helpers every command shares: output format, bundle source, consoles."""

from __future__ import annotations

import json
import sys
from enum import Enum

import typer
from rich.console import Console

from podpath.tracer.bundle import Bundle
from podpath.tracer.sources import lab_snapshot, load_bundle

out = Console(highlight=False, soft_wrap=True)  # data: stdout
err = Console(stderr=True, highlight=False)  # progress and diagnostics: stderr


class Output(str, Enum):
    text = "text"
    json = "json"


OutputOpt = typer.Option(Output.text, "--output", "-o", help="text for people, json for scripts (| jq)")
BundleOpt = typer.Option(None, "--bundle", "-b", help="analyse a saved bundle (podpath snapshot -o FILE) "
                         "instead of taking a live snapshot", metavar="FILE")
LabOpt = typer.Option("pp", "--lab", help="netns lab to snapshot when no --bundle is given")


def get_bundle(bundle: str | None, lab: str) -> Bundle:
    if bundle:
        return load_bundle(bundle)
    if sys.stderr.isatty():
        with err.status(f"snapshotting lab '{lab}'…"):
            return lab_snapshot(lab)
    return lab_snapshot(lab)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
