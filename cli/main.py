"""The `podpath` command: wires one file per command into one typer app.

Errors: library code raises podpath.tracer.errors.PodpathError subclasses; `main()` turns them
into one line on stderr and the class's exit code, here and nowhere else.
"""

from __future__ import annotations

import sys

import typer

from podpath.tracer.errors import PodpathError

app = typer.Typer(
    name="podpath",
    help="Where and why does a packet die between two pods? Snapshots, a path model, and eBPF.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Each command lives in its own module and exposes `register(app)`.
    from podpath.cli import cleanup, diagnose, dns, doctor, lab, snapshot, trace

    for module in (lab, snapshot, diagnose, trace, dns, doctor, cleanup):
        module.register(app)


def main() -> None:
    _register()
    try:
        app()  # standalone: typer prints usage errors itself and exits 2
    except PodpathError as e:
        print(f"podpath: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("podpath: interrupted", file=sys.stderr)
        sys.exit(130)
