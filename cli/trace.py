"""`podpath trace SRC DST`: send a test packet, follow it with eBPF, name where and why it died."""

from __future__ import annotations

import contextlib
import sys

import typer
from rich.markup import escape

from podpath.cli.common import ContextOpt, KubeconfigOpt, LabOpt, Output, OutputOpt, err, get_source, out, print_json
from podpath.tracer.model.path import SEGMENTS

EXIT_NOT_DELIVERED = 1

STATUS_STYLE = {"delivered": "green", "dropped": "red", "rejected": "red", "misdelivered": "red",
                "lost": "yellow", "unsent": "red"}


def register(app: typer.Typer) -> None:
    app.command("trace")(trace)


def trace(
    src: str = typer.Argument(..., help="source pod: a pod name (pod-a), a pod IP, or namespace/pod"),
    dst: str = typer.Argument(..., help="destination: a pod, an IP, or svc/<namespace>/<name>[:port]"),
    proto: str = typer.Option(None, "--proto", "-p", help="icmp (default), tcp or udp"),
    port: int = typer.Option(None, "--port", help="destination port for tcp/udp"),
    sport: int = typer.Option(None, "--sport", help="source port for tcp/udp (default: any free one); a "
                              "client that reuses its port meets old conntrack entries"),
    size: int = typer.Option(None, "--size", help="IP packet size in bytes, DF set (default 84, like ping)"),
    count: int = typer.Option(1, "--count", "-c", help="test packets to send (icmp/udp)"),
    timeout: float = typer.Option(1.0, "--timeout", help="seconds to wait for the answer"),
    nftrace: bool = typer.Option(False, "--nftrace", help="also read the kernel's nf_tables trace (adds a "
                                 "temporary podpath_nftrace_* table in each namespace on the path, removed after)"),
    lab: str = LabOpt,
    kubeconfig: str = KubeconfigOpt,
    context: str = ContextOpt,
    no_agents: bool = typer.Option(False, "--no-agents", help="trace this node in process even where podpath "
                                   "agents run (default: through the agents of every node on the path)"),
    output: Output = OutputOpt,
) -> None:
    """Follow a real test packet from SRC to DST with eBPF and explain where and why it dies.

    Sends a marked packet from the source pod (ICMP echo by default), watches it with tc probes on
    every device of the expected path and the kernel's drop tracepoint on both nodes, then joins
    the drop point with the snapshot's routes, neighbours, FDB and rules. Needs root; exit code 0
    only when the packet was delivered (and answered).

    \b
    Examples:
      podpath trace default/pod-a default/pod-b       # on a node: this node's part, traced
      podpath trace pod-a pod-b --lab pp              # podpath's netns lab (both nodes)
      podpath trace pod-a pod-b --proto tcp --port 8080
      podpath trace pod-a pod-b --size 1400 -o json | jq .verdict
      podpath trace pod-a pod-b --nftrace      # the kernel names the rule (nf_tables only)
    """
    from podpath.tracer.trace import require_root, trace as run

    from podpath.cli import validate

    validate.flow(port_=port, sport=sport, size_=size)
    validate.count(count)
    validate.timeout(timeout)
    require_root()
    source = get_source(None, lab, kubeconfig, context)
    if lab is None and not no_agents:
        from podpath.tracer.agent import with_agents
        source = with_agents(source)

    def show(t) -> None:  # called at the verdict, before the probes are closed (~0.3 s)
        stop()
        if output == Output.json:
            print_json(t.to_dict())
        else:
            render(t)
        sys.stdout.flush()

    with _progress() as (say, stop):
        result = run(src, dst, source=source, proto=proto, port=port, size=size, count=count, timeout=timeout,
                     progress=say, on_verdict=show, nftrace=nftrace, sport=sport)
    if not result.delivered:
        raise typer.Exit(EXIT_NOT_DELIVERED)


@contextlib.contextmanager
def _progress():
    """One progress line on stderr: a live status on a terminal, plain lines otherwise."""
    if sys.stderr.isatty():
        with err.status("tracing…") as st:
            yield (lambda msg: st.update(escape(msg))), st.stop
    else:
        yield (lambda msg: err.print(escape(msg))), (lambda: None)


def render(t) -> None:
    v = t.verdict
    f = t.flow
    port = f":{f.get('dport')}" if f.get("dport") else ""
    size = f" ({f.get('size')} bytes)" if f.get("proto") != "tcp" else " (SYN)"
    out.print(f"[bold]trace[/] {escape(t.src)} → {escape(t.dst)}: {escape(str(f.get('proto')))} "
              f"{escape(str(f.get('src')))} → {escape(str(f.get('dst')))}{port}{size}")
    for seg in SEGMENTS:
        hops = [h for h in t.hops if h.segment == seg]
        title = "reply (pod B → pod A)" if seg == SEGMENTS[3] else seg
        out.print(f"\n[bold underline]{escape(title)}[/]")
        if not hops:
            out.print("  [dim]no hop seen[/]")
        for h in hops:
            arrow = "←" if h.direction == "reply" else "→"
            mark = "[red]✗[/]" if h.point == "drop" else " "
            where = f"{h.node or '?'}/{h.location}"
            nf = h.probe == "netfilter"
            dev = "netfilter" if nf else (h.device or "-")
            point = h.point.upper() if nf else h.point
            detail = f"  [dim]{escape(h.detail)}[/]" if h.detail else ""
            out.print(f"  {mark} {arrow} {h.time / 1000:9.1f} µs  {escape(where):<16} {escape(dev):<14} "
                      f"{point}{detail}")
    for n in t.not_observed:
        out.print(f"\n[yellow]not observed:[/] {escape(n['node'])} ({escape(n['why'])}): its hops are unknown")
    if t.service:
        render_service(t.service)
    style = STATUS_STYLE.get(v.status, "bold")
    out.print(f"\n[bold]verdict:[/] [{style}]{v.status}[/] {escape(sentence(t))}")
    for e in v.evidence:
        out.print(f"  evidence ({escape(e['kind'])}, {escape(str(e['node']))}/{escape(e['location'])}): "
                  f"{escape(e['object'])}")
    for k in v.kernel:
        out.print(f"  kernel: {escape(k)}")
    if v.counter:
        out.print(f"  counter: {escape(v.counter)}")
    if v.nftrace:
        out.print(f"  nftrace: {escape(v.nftrace)}")
    if v.fix:
        out.print(f"  fix: {escape(v.fix)}")
    if t.lost_events:
        err.print(f"[yellow]warning:[/] {t.lost_events} probe events were lost (ring buffer full)")
    for e in t.attach_errors:
        err.print(f"[yellow]warning:[/] {escape(e)}")
    err.print(f"[dim]verdict in {t.timings.get('verdict_ms', 0):.0f} ms (closing the probes now)[/]")


def render_service(svc: dict) -> None:
    out.print(f"\n[bold underline]service[/] {escape(svc['name'])} {escape(svc['cluster_ip'])}"
              + (f":{svc['port']}" if svc.get("port") else ""))
    if not svc.get("endpoint"):
        out.print("  [dim]no DNAT seen: the packet never reached kube-proxy's rules with its ClusterIP[/]")
        return
    who = f"{svc['endpoint_pod']} ({svc['endpoint']})" if svc.get("endpoint_pod") else \
        f"{svc['endpoint']} [red](no pod has this address)[/]"
    how = " (an existing conntrack entry chose it)" if svc.get("conntrack") else \
        (", chosen by:" if svc.get("chain") else "")
    out.print(f"  DNAT to {who} at {escape(str(svc['node']))} {escape(str(svc['hook'])).upper()}{how}")
    for rule in svc.get("chain") or []:
        out.print(f"    {escape(rule)}")
    if svc.get("reverse_nat"):
        out.print(f"  reply translated back: {escape(svc['reverse_nat'])}")


def sentence(t) -> str:
    v = t.verdict
    where = f"{v.node or '?'}/{v.location or '?'}" + (f" {v.device}" if v.device else "")
    if v.status == "delivered":
        if v.no_answer_expected:
            return f"the datagram reached {t.dst} (udp: no answer is required; {len(t.hops)} hops)."
        return f"the packet reached {t.dst} and the answer came back ({len(t.hops)} hops)."
    if v.status == "unsent":
        s = f"the source could not send it ({v.errno})"
    elif v.status == "lost":
        s = ("the reply was " if v.direction == "reply" else "") + f"no drop event; last seen at {where}"
    else:
        s = ("the reply, " if v.direction == "reply" else "") + f"at {where}" + (f", {v.hook} hook" if v.hook else "") + (f" ({v.table})" if v.table else "") + \
            (f", kernel reason {v.drop_reason}" if v.drop_reason else "")
    return s + f": cause {v.cause}" + (f" — {v.message.split('; ', 1)[-1]}" if "; " in v.message else ".")
