"""The `podpath` command: wires one file per command into one typer app.

Errors: library code raises podpath.tracer.errors.PodpathError subclasses; `main()` turns them
into one line on stderr and the class's exit code, here and nowhere else.
"""

from __future__ import annotations

import sys

import click
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
    from podpath.cli import diagnose, lab, snapshot

    for module in (lab, snapshot, diagnose):
        module.register(app)


def main() -> None:
    _register()
    try:
        rc = app(standalone_mode=False)
    except click.ClickException as e:  # bad flags or arguments: click's own one-line usage error
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except PodpathError as e:
        print(f"podpath: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("podpath: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)
