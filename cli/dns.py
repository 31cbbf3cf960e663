"""`podpath dns POD NAME`: a real lookup from the pod, with its resolver's search list, traced."""

from __future__ import annotations

import typer
from rich.markup import escape

from podpath.cli.common import ContextOpt, KubeconfigOpt, LabOpt, Output, OutputOpt, err, get_source, out, print_json

EXIT_NOT_ANSWERED = 1


def register(app: typer.Typer) -> None:
    app.command("dns")(dns)


def dns(
    pod: str = typer.Argument(..., help="the pod that looks the name up (pod-a)"),
    name: str = typer.Argument(..., help="the name, as the application asks: web, web.default, example.com"),
    rdtype: str = typer.Option("A", "--type", "-t", help="record type: A, AAAA, SRV, CNAME, TXT, PTR, MX, NS"),
    server: str = typer.Option(None, "--server", help="DNS server IP (default: the pod's resolv.conf nameserver)"),
    timeout: float = typer.Option(1.0, "--timeout", help="seconds to wait for each answer"),
    nftrace: bool = typer.Option(False, "--nftrace", help="also read the kernel's nf_tables trace of the query"),
    sport: int = typer.Option(None, "--sport", help="query from this source port (a client that reuses its port "
                              "meets stale conntrack entries)"),
    lab: str = LabOpt,
    kubeconfig: str = KubeconfigOpt,
    context: str = ContextOpt,
    no_agents: bool = typer.Option(False, "--no-agents", help="trace this node in process even where podpath "
                                   "agents run (default: through the agents of every node on the path)"),
    output: Output = OutputOpt,
) -> None:
    """Look a name up from a pod, as its resolver does, and trace the query to the DNS pod and back.

    Reads the pod's resolv.conf (nameserver, search list, ndots) and tries the names its resolver
    would try, in order (with ndots:5, `example.com` is tried with every search suffix first).
    The first query is followed with eBPF: the DNAT to a CoreDNS pod, the answer's way back, and,
    when the lookup fails, where the query or the answer was lost and why. Conntrack's
    insert_failed counters on the nodes are compared before and after. Needs root; exit 0 only
    when the name resolved.

    \b
    Examples:
      podpath dns pod-a web
      podpath dns pod-a kube-dns.kube-system --type A -o json | jq .answer
      podpath dns pod-a example.com            # shows the search-list expansion ndots:5 causes
    """
    from podpath.cli.trace import _progress, render as render_trace
    from podpath.tracer.dns import lookup
    from podpath.tracer.trace import require_root

    from podpath.cli import validate

    from podpath.tracer.dns.lookup import check_name

    validate.port(sport, "--sport")
    validate.timeout(timeout)
    check_name(name)
    require_root()
    source = get_source(None, lab, kubeconfig, context)
    if lab is None and not no_agents:
        from podpath.tracer.agent import with_agents
        source = with_agents(source)
    with _progress() as (say, stop):
        res = lookup(pod, name, source=source, rdtype=rdtype, server=server, timeout=timeout, progress=say,
                     nftrace=nftrace, sport=sport)
        stop()
    if output == Output.json:
        print_json(res.to_dict())
    else:
        render(res, render_trace)
    if not res.ok:
        raise typer.Exit(EXIT_NOT_ANSWERED)


def render(res, render_trace) -> None:
    rc = res.resolv
    via = f"{res.server}" + (f" ({res.server_name})" if res.server_name else "")
    out.print(f"[bold]dns[/] {escape(res.pod)}: {escape(res.query)} {res.rdtype} via {escape(via)}")
    out.print(f"  resolv.conf: search {escape(' '.join(rc['search']) or '-')}; ndots:{rc['ndots']}"
              f"  ({len(res.attempts)} of {'the' if res.attempts else ''} names tried)")
    for i, a in enumerate(res.attempts, 1):
        what = a.rcode or a.error or "?"
        ms = f"{a.ms:.1f} ms" if a.ms is not None else ""
        ans = "; ".join(a.answers)
        mark = "  [dim](traced)[/]" if a.traced else ""
        style = "green" if a.rcode == "NOERROR" and a.answers else ("yellow" if a.rcode == "NXDOMAIN" else "red")
        out.print(f"  {i}. {escape(a.name):<48} [{style}]{escape(what):<9}[/] {escape(ans)} {ms}{mark}")
    if res.ok:
        out.print(f"\n[bold]answer:[/] [green]{escape('; '.join(res.answer))}[/]")
    else:
        out.print(f"\n[bold]lookup failed:[/] [red]{res.status}[/]")
    for node, deltas in res.conntrack.items():
        rising = {k: v for k, v in deltas.items() if v}
        if rising:
            out.print(f"  [yellow]conntrack on {escape(node)}:[/] " + ", ".join(f"{k} +{v}" for k, v in rising.items())
                      + " during the lookup (insert_failed: two packets of one UDP socket raced for one "
                      "conntrack entry, the classic 5 s DNS delay)")
    network_failure = res.status in ("timeout", "unreachable")  # not an answer (NXDOMAIN, REFUSED) from the server
    if res.trace and (network_failure or res.ok):
        from podpath.tracer.trace.correlate import trace_from_dict
        t = trace_from_dict(res.trace)
        if res.ok:  # the path only, briefly
            svc = t.service or {}
            if svc.get("endpoint"):
                out.print(f"  path: {escape(res.pod)} → DNAT at {escape(str(svc['node']))} to "
                          f"{escape(str(svc.get('endpoint_pod') or svc['endpoint']))} ({escape(svc['endpoint'])})"
                          + (f"; back through {escape(svc['reverse_nat'])}" if svc.get("reverse_nat") else ""))
        else:
            out.print("\n[bold]where the lookup died[/] (the traced query):")
            render_trace(t)
    err.print(f"[dim]{res.timings.get('total_ms', 0):.0f} ms[/]")
