"""`podpath snapshot`: read every kernel table on the path into a bundle, or import pasted output."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from podpath.cli.common import ContextOpt, KubeconfigOpt, LabOpt, err
from podpath.tracer.errors import BundleError, UsageError


def register(app: typer.Typer) -> None:
    snap = typer.Typer(help="Save kernel state as a bundle that `diagnose --bundle` re-analyses offline.",
                       no_args_is_help=False, invoke_without_command=True)

    @snap.callback()
    def take(ctx: typer.Context,
             output: str = typer.Option("-", "--output", "-o", help="bundle file to write ('-' = stdout)",
                                        metavar="FILE"),
             lab: str = LabOpt, kubeconfig: str = KubeconfigOpt, context: str = ContextOpt) -> None:
        """Snapshot this node — its own namespace and every pod namespace attached to it, named or
        not — (or every namespace of the netns lab with --lab): links, addresses, rules, routes,
        neighbours, FDB, sysctls, iptables, nftables, IPVS, conntrack, listeners, with the cluster's
        facts from the API, into one versioned JSON bundle."""
        if ctx.invoked_subcommand:
            return
        from podpath.tracer.snapshot.early import saves_started

        # the slowest reader (iptables-save of a big node) first, while the rest of podpath loads
        with saves_started(_rule_namespaces(lab)):
            from podpath.cli.common import get_source, snapshot
            from podpath.tracer.snapshot.live import read_rules_whole, whole_rules

            with whole_rules():  # a bundle holds every rule, big rulesets included: read them whole at once
                bundle = snapshot(get_source(None, lab, kubeconfig, context))
        read_rules_whole(bundle)  # what a source still left to read per chain
        write(bundle.to_json(), output)
        err.print(f"snapshot of {len(bundle.hosts)} namespaces → {output if output != '-' else 'stdout'}")

    @snap.command("import")
    def import_(files: list[Path] = typer.Argument(..., help="text files with pasted output of ip a, ip r, "
                                                   "ip r get, arp -a, ip neigh, bridge fdb, iptables-save, ipvsadm -Ln",
                                                   metavar="FILE..."),
                name: str = typer.Option(None, "--name", help="host name for the result (default: file stem)"),
                output: str = typer.Option("-", "--output", "-o", help="bundle file to write ('-' = stdout)",
                                           metavar="FILE")) -> None:
        """Build a bundle from pasted command output (tickets, chat; squashed one-line forms too)."""
        from podpath.tracer.snapshot.importers import import_texts

        texts = []
        for f in files:
            if not f.is_file():
                raise UsageError(f"'{f}' is not a file; give the text files holding the pasted output")
            try:
                texts.append((f.name, f.read_text(errors="replace")))
            except OSError as e:
                raise BundleError(f"cannot read '{f}': {e.strerror}") from None
        bundle = import_texts(texts, host_name=name)
        write(bundle.to_json(), output)
        for h in bundle.hosts:
            err.print(f"{h.name}: {', '.join(h.sources) or 'nothing recognised'}"
                      + (f" (not parsed: {h.gaps})" if h.gaps else ""))

    app.add_typer(snap, name="snapshot")


def _rule_namespaces(lab: str | None) -> list[str | None]:
    """Where most of the rules are: the lab's nodes, or this node's own namespace."""
    if lab is None:
        return [None]
    from podpath.tracer.errors import PodpathError
    from podpath.tracer.lab.core import Lab
    from podpath.tracer.lab.topology import NODES

    try:
        names = Lab.load(lab).names
    except PodpathError:
        return []  # no such lab: the snapshot says so
    return [names.netns(n.name) for n in NODES]


def write(text: str, output: str) -> None:
    if output == "-":
        sys.stdout.write(text + "\n")
        return
    try:
        Path(output).write_text(text + "\n")
    except OSError as e:
        raise UsageError(f"cannot write '{output}': {e.strerror}") from None
