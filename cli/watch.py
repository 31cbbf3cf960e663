"""`podpath watch`: record every packet drop on this node (or in the lab) with its context, to Parquet."""

from __future__ import annotations

import typer

from podpath.cli.common import ContextOpt, LabOpt, err


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)


def watch(
    duration: float = typer.Option(None, "--duration", help="seconds to record (default: until ^C or SIGTERM)"),
    pod: str = typer.Option(None, "--pod", help="only drops in this pod's namespace (and the node's own)"),
    out_dir: str = typer.Option("podpath-watch", "--output-dir", "-o", help="directory; one subdirectory per node"),
    samples: int = typer.Option(1000, "--samples", help="full drop events sampled per CPU per second (counts are "
                                "always exact)"),
    rotate_mb: float = typer.Option(64, "--rotate-mb", help="start a new file past this many MB"),
    rotate_s: float = typer.Option(600, "--rotate-seconds", help="start a new file after this many seconds"),
    prometheus: str = typer.Option(None, "--prometheus", help="serve podpath_drops_total at HOST:PORT", metavar="ADDR"),
    kubeconfig: str = typer.Option(None, "--kubeconfig", help="the cluster's API: its podpath agents watch their nodes "
                                   "(else KUBECONFIG, ~/.kube/config, in-cluster), and EndpointSlice changes are "
                                   "recorded; with --lab, the lab's API server is asked from its first node",
                                   metavar="FILE"),
    context: str = ContextOpt,
    lab: str = LabOpt,
    nodes: list[str] = typer.Option(None, "--node", help="through the agents: watch this node (repeatable; default: "
                                    "every node of the cluster)", metavar="NAME"),
    no_agents: bool = typer.Option(False, "--no-agents", help="record this node in process even where podpath "
                                   "agents run (default: through the agent of every node)"),
) -> None:
    """Count every packet the kernel drops (tp_btf/kfree_skb, exact, in a per-CPU map keyed by
    namespace, device, reason, place, protocol and flow), sample full events, and each second read
    softnet, conntrack, neighbour, device and KUBE-*/FLANNEL-* chain counters; route, neighbour,
    FDB, link and rule changes are recorded as they happen, and with --kubeconfig the cluster's
    EndpointSlice changes. Needs root.

    \b
    With the cluster's API configured and podpath agents running, each node's agent records and
    this command writes every node's files (one directory per node).

    \b
    Examples:
      podpath watch --duration 3600 -o /var/tmp/drops       # every node with an agent, else this one
      podpath watch --node node-b --duration 600 -o out     # node-b, through its agent
      podpath watch --lab pp --duration 60 -o out           # every node of the netns lab
      podpath report out/ --html report.html
    """
    from podpath.tracer.sources import require_root
    from podpath.tracer.errors import UsageError
    from podpath.tracer.watch.recorder import Recorder
    from podpath.tracer.watch.scope import scope_of

    if duration is not None and duration <= 0:
        raise UsageError(f"--duration {duration} must be positive seconds")
    if samples < 0 or rotate_mb <= 0 or rotate_s <= 0:
        raise UsageError("--samples must be >= 0, --rotate-mb and --rotate-seconds > 0")
    if not lab and not no_agents:
        from podpath.tracer.agent.watch import agents_to_watch
        from podpath.tracer.kube.client import connect

        plan = agents_to_watch(connect(kubeconfig, context), nodes)
        if plan is not None:
            _through_agents(*plan, out_dir=out_dir, duration=duration, pod=pod, samples=samples,
                            rotate_mb=rotate_mb, rotate_s=rotate_s, endpoints=bool(kubeconfig), prometheus=prometheus)
            return
    if nodes:
        raise UsageError("--node needs podpath agents (the cluster's API configured, the DaemonSet running); "
                         "without them watch records this node: leave --node out")
    require_root("podpath watch")
    if lab:
        from podpath.tracer.lab.source import LabSource
        source = LabSource(lab)
    else:
        source = None
    scope = scope_of(source, pod)
    prom = None
    if prometheus:
        from podpath.tracer.watch.metrics import Prometheus
        prom = Prometheus(prometheus)
    kube = None
    if kubeconfig:
        from podpath.tracer.kube.client import connect
        kube = connect(kubeconfig, context)
    rec = Recorder(scope, out_dir, samples_per_sec=samples, max_bytes=int(rotate_mb * (1 << 20)),
                   max_seconds=rotate_s, prometheus=prom, kube=kube)
    err.print(f"podpath watch: recording drops on {', '.join(scope.nodes)} to {out_dir}/"
              + (f" for {duration:g} s" if duration else " until ^C"))
    try:
        rec.run(duration)
    finally:
        rec.close()
        if prom is not None:
            prom.close()
        st = rec.final_stats
        err.print(f"podpath watch: {rec.totals['packets']} drops counted, {rec.totals['samples']} sampled "
                  f"({st.get('ringbuf_lost', 0)} samples lost, {st.get('flow_folded', 0)} flows folded); "
                  f"written to {out_dir}/")


def _through_agents(openers, missing, *, out_dir, duration, pod, samples, rotate_mb, rotate_s, endpoints,
                    prometheus) -> None:
    """Each node's agent records; its rows are written here, one directory per node."""
    from podpath.tracer.agent.protocol import AgentError
    from podpath.tracer.agent.watch import AgentWatch, watch_nodes

    def started(nodes: list[str]) -> None:
        err.print(f"podpath watch: recording drops on {', '.join(nodes)} through their agents to {out_dir}/"
                  + (f" for {duration:g} s" if duration else " until ^C"))

    res = AgentWatch(not_observed=dict(missing))
    prom = None
    try:
        if prometheus:
            from podpath.tracer.watch.metrics import Prometheus
            prom = Prometheus(prometheus)
        watch_nodes(openers, out_dir, duration=duration, pod=pod, samples=samples, max_bytes=int(rotate_mb * (1 << 20)),
                    max_seconds=rotate_s, endpoints=endpoints, on_started=started, res=res, prometheus=prom)
    finally:
        if prom is not None:
            prom.close()
        for node, why in sorted(res.not_observed.items()):
            err.print(f"podpath watch: {node} not observed: {why}")
        if res.nodes:
            st = res.stats
            err.print(f"podpath watch: {res.totals['packets']} drops counted, {res.totals['samples']} sampled "
                      f"({st.get('ringbuf_lost', 0)} samples lost, {st.get('flow_folded', 0)} flows folded) on "
                      f"{', '.join(sorted(res.nodes))}; written to {out_dir}/")
    if pod and not res.nodes and res.without_pod:
        from podpath.tracer.errors import UsageError
        raise UsageError(f"no pod {pod!r} on {', '.join(res.without_pod)}; give a pod name `kubectl get pods -o wide` "
                         "lists")
    if not res.nodes and not res.not_observed:
        raise AgentError("no node to watch: give --node NAME")
    if not res.nodes:
        first = sorted(res.not_observed.items())[0]
        raise AgentError(f"no node could be watched: {first[0]}: {first[1]}")
