"""`podpath report DIR...`: bursts of drops and their likely causes, from `podpath watch` files."""

from __future__ import annotations

import typer

from podpath.cli.common import Output, OutputOpt, out, print_json


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    dirs: list[str] = typer.Argument(..., help="directories `podpath watch -o` wrote (any number of nodes)"),
    html: str = typer.Option(None, "--html", help="also write a self-contained HTML page with plots", metavar="FILE"),
    output: Output = OutputOpt,
) -> None:
    """Drops over time by reason, node and device; top flows; bursts over a rolling baseline, each
    lined up with the configuration changes and counter jumps in its window and given a likely cause."""
    from podpath.tracer.report import analyse, render_html, render_text

    rep = analyse(dirs)
    if html:
        render_html(rep, html)
    if output == Output.json:
        print_json(rep.to_json())
    else:
        out.print(render_text(rep), markup=False)
