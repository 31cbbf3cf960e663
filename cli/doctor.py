"""`podpath doctor`: what this node supports for live tracing, and what podpath falls back to."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.markup import escape
from rich.table import Table

from podpath.cli.common import Output, OutputOpt, err, out, print_json
from podpath.tracer.errors import NodeError
from podpath.tracer.probes.doctor import Check, run_checks, tracing_possible


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(output: Output = OutputOpt) -> None:
    """Check what this node supports for live tracing: BTF, tp_btf, tcx, clsact, netfilter links,
    ring buffers, fentry, kprobes, libbpf, capabilities, bpf_stats, and podpath's own BPF objects.

    \b
    Examples:
      podpath doctor
      podpath doctor -o json | jq '.checks[] | select(.status != "ok")'
    """
    checks = run_checks()
    possible = tracing_possible(checks)
    if output == Output.json:
        print_json({"tracing": possible, "checks": [asdict(c) for c in checks]})
    else:
        render(checks, possible)
    if not possible:
        err.print("podpath: live tracing is not possible on this node (see the failed checks above); "
                  "`podpath diagnose SRC DST` still works from snapshots alone")
        raise typer.Exit(NodeError.exit_code)


def render(checks: list[Check], possible: bool) -> None:
    mark = {"ok": "[green]✓[/]", "fail": "[red]✗[/]", "warn": "[yellow]![/]"}
    t = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    t.add_column("")
    t.add_column("check")
    t.add_column("result")
    t.add_column("podpath uses / falls back to", style="dim")
    for c in checks:
        t.add_row(mark[c.status], escape(c.name), escape(c.detail), escape(c.fallback))
    out.print(t)
    out.print("\nlive tracing: " + ("[green]possible[/]" if possible else "[red]not possible[/]"))


# ---- the checks --------------------------------------------------------------------------------

