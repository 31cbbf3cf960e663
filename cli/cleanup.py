"""`podpath cleanup`: remove what podpath may have left on this node (legacy clsact filters)."""

from __future__ import annotations

import os

import typer
from rich.markup import escape

from podpath.cli.common import Output, OutputOpt, err, out, print_json
from podpath.tracer.errors import PermissionNeeded


def register(app: typer.Typer) -> None:
    app.command("cleanup")(cleanup)


def cleanup(output: Output = OutputOpt) -> None:
    """Remove podpath's leftover tc filters and list podpath programs still loaded.

    Every tcx, tracepoint and netfilter attachment is owned by a file descriptor, so the kernel
    removes it when podpath exits, even after kill -9. Only the clsact fallback (kernels without
    tcx) leaves a filter behind; this sweeps podpath's filters from every device of every named
    network namespace and of this one. Programs still loaded belong to a running podpath: the
    report names the processes holding them.

    \b
    Examples:
      podpath cleanup
      podpath cleanup -o json | jq .programs_loaded
    """
    from podpath.tracer.probes.cleanup import sweep_node

    if os.geteuid() != 0:
        raise PermissionNeeded("`podpath cleanup` needs root (it reads and changes tc filters in every namespace)")
    report = sweep_node()
    if output == Output.json:
        print_json(report.to_dict())
        return
    if report.filters_removed:
        out.print(f"removed podpath clsact filters from {len(report.filters_removed)} device(s): "
                  + ", ".join(escape(x) for x in report.filters_removed))
    else:
        out.print("no podpath tc filters left on any device")
    if report.tables_removed:
        out.print("removed --nftrace tables: " + ", ".join(escape(x) for x in report.tables_removed))
    # one line per holder: an idle agent keeps 20-40 programs loaded (unattached)
    by_holder: dict[tuple, list[dict]] = {}
    for p in report.programs_loaded:
        by_holder.setdefault(tuple(p["pids"]), []).append(p)
    for pids, progs in by_holder.items():
        who = ", ".join(f"pid {x}{_comm(x)}" for x in pids) or "no process (held by an attachment)"
        names = sorted({p["name"] for p in progs})
        out.print(f"{len(progs)} podpath program(s) still loaded by {who}: " + escape(", ".join(names)))
    if not report.programs_loaded:
        out.print("no podpath BPF program loaded")
    for e in report.errors:
        err.print(f"[yellow]warning:[/] {escape(e)}")


def _comm(pid: int) -> str:
    """ (its command name), when it still runs."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f" ({f.read().strip()})"
    except OSError:
        return ""
