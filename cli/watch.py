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
    kubeconfig: str = typer.Option(None, "--kubeconfig", help="also record EndpointSlice changes from this cluster's "
                                   "API (watch); with --lab, the lab's API server is asked from its first node",
                                   metavar="FILE"),
    context: str = ContextOpt,
    lab: str = LabOpt,
) -> None:
    """Count every packet the kernel drops (tp_btf/kfree_skb, exact, in a per-CPU map keyed by
    namespace, device, reason, place, protocol and flow), sample full events, and each second read
    softnet, conntrack, neighbour, device and KUBE-*/FLANNEL-* chain counters; route, neighbour,
    FDB, link and rule changes are recorded as they happen, and with --kubeconfig the cluster's
    EndpointSlice changes. Needs root.

    \b
    Examples:
      podpath watch --duration 3600 -o /var/tmp/drops       # on a node
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
