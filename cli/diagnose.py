"""`podpath diagnose SRC DST`: every problem on the expected path, from snapshots alone (no eBPF)."""

from __future__ import annotations

import typer
from rich.markup import escape

from podpath.cli.common import (BundleOpt, ContextOpt, KubeconfigOpt, LabOpt, Output, OutputOpt, err, get_source, out,
                                print_json, snapshot)
from podpath.tracer.model.path import SEGMENTS

EXIT_FINDINGS = 1  # errors found: like a linter, so scripts can gate on it

MARK = {"error": "[bold red]✗[/]", "warning": "[yellow]![/]", "info": "[dim]i[/]"}


def register(app: typer.Typer) -> None:
    app.command("diagnose")(diagnose)


def diagnose(
    src: str = typer.Argument(None, help="source: a pod name (pod-a), a pod IP, or namespace/pod"),
    dst: str = typer.Argument(None, help="destination: a pod, an IP, or svc/<namespace>/<name>[:port]"),
    proto: str = typer.Option(None, "--proto", "-p", help="icmp (default), tcp or udp; a Service's own by default"),
    port: int = typer.Option(None, "--port", help="destination port for tcp/udp"),
    sport: int = typer.Option(None, "--sport", help="source port for tcp/udp (matches conntrack entries of a "
                              "client that reuses its port)"),
    size: int = typer.Option(None, "--size", help="IP packet size in bytes, DF set (default 84, like ping)"),
    bundle: str = BundleOpt,
    lab: str = LabOpt,
    kubeconfig: str = KubeconfigOpt,
    context: str = ContextOpt,
    show_path: bool = typer.Option(False, "--path", help="also print the expected path hop by hop"),
    output: Output = OutputOpt,
) -> None:
    """Find where and why SRC cannot reach DST by reading every kernel table on the path.

    Simulates the kernel hop by hop (policy routing, neighbours, bridge/VXLAN FDB, veth peers,
    netfilter with kube-proxy's DNAT, forwarding, rp_filter, MTU, local sockets) and runs one check
    per failure class. Without SRC and DST, runs the node-wide checks only.

    \b
    Examples:
      podpath diagnose default/pod-a default/pod-b          # on a node, names from the API
      podpath diagnose pod-a svc/default/web:80 --lab pp     # in podpath's netns lab
      podpath diagnose pod-a svc/kube-system/kube-dns:53 --proto udp
      podpath diagnose pod-a pod-b --size 1400 --bundle ticket.json -o json | jq .findings
    """
    from podpath.cli import validate
    from podpath.tracer.diagnose import diagnose as run

    validate.flow(port_=port, sport=sport, size_=size)
    source = get_source(bundle, lab, kubeconfig, context)
    data = snapshot(source, tuple(t for t in (src, dst) if t))
    result = run(data, src, dst, proto=proto, port=port, size=size, sport=sport, hint=source.not_found_hint())
    if output == Output.json:
        print_json(result.to_dict())
    else:
        render(result, show_path)
    if result.errors:
        raise typer.Exit(EXIT_FINDINGS)


def render(result, show_path: bool) -> None:
    flow = result.flow
    if flow:
        out.print(f"[bold]diagnose[/] {escape(result.src)} → {escape(result.dst)}: {escape(flow.describe())}")
        main = result.paths[0]
        last = next((h for h in main.hops if h.status == "fail"), None)
        verdict = f"[green]{main.outcome}[/]" if main.outcome == "delivered" else f"[red]{main.outcome}[/]"
        where = f" at {last.host} {last.device or ''} ({last.point})" if last else ""
        out.print(f"expected path: {verdict}{escape(where)}"
                  + (f"  [dim](+{len(result.paths) - 1} alternative paths)[/]" if len(result.paths) > 1 else "")
                  + ("  [yellow](partial: from pasted data with tables missing)[/]" if result.partial else ""))
        if show_path:
            render_path(result.paths)
        groups = [(s, [f for f in result.findings if f.segment == s]) for s in SEGMENTS]
    else:
        out.print("[bold]diagnose[/]: node-wide checks")
        groups = [("node-wide", result.findings)]
    for name, findings in groups:
        out.print(f"\n[bold underline]{escape(name)}[/]")
        if not findings:
            out.print("  [green]✓[/] no problem found")
        for f in findings:
            where = f"{f.node or '?'}/{f.location}" + (f" {f.device}" if f.device else "")
            out.print(f"  {MARK[f.severity]} [bold]{f.cause}[/] [cyan]{escape(where)}[/]: {escape(f.message)}")
            out.print(f"      object: {escape(f.object)}")
            out.print(f"      fix:    {escape(f.fix)}")
    render_import_gaps(result)
    n_err = len(result.errors)
    summary = "[green]no errors[/]" if n_err == 0 else f"[red]{n_err} error{'s' * (n_err != 1)}[/]"
    err.print(f"\n{summary}, {len(result.findings) - n_err} other findings"
              + (" [yellow](partial data: the tables listed as not pasted were not checked)[/]"
                 if result.partial else ""))


def render_import_gaps(result) -> None:
    """A pasted bundle: the tables not pasted (not checked) and the lines the import could not use."""
    if not (result.not_pasted or result.not_parsed):
        return
    out.print("\n[bold underline]what the paste did not give[/]")
    for host, tables in result.not_pasted.items():
        out.print(f"  [yellow]-[/] {escape(host)}: not pasted, so not checked: {escape(', '.join(tables))}")
    for host, gaps in result.not_parsed.items():
        for kind, text in gaps.items():
            out.print(f"  [yellow]-[/] {escape(host)}: {escape(kind)}: {escape(text)}")


def render_path(paths) -> None:
    for p in paths:
        title = f"path ({p.alternative})" if p.alternative else "path"
        out.print(f"\n[bold]{escape(title)}[/]: {p.outcome}")
        for h in p.hops:
            mark = {"ok": " ", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}[h.status]
            arrow = "←" if h.direction == "reply" else "→"
            out.print(f"  {mark} {arrow} {escape(h.host):<10} {escape(h.device or '-'):<12} {h.point:<10} "
                      f"{escape(h.detail)}")
