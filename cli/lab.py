"""`podpath lab`: build, inspect and break the network-namespace lab (a two-node flannel cluster)."""

from __future__ import annotations

import dataclasses
import time

import typer

from podpath.cli.common import Output, OutputOpt, err, out, print_json

NameOpt = typer.Option("pp", "--lab", "--name", "-n", help="lab name: namespaces are <name>-node-a, <name>-underlay, <name>-cp, ...")


def register(app: typer.Typer) -> None:
    lab_app = typer.Typer(help="A real two-node flannel VXLAN cluster in network namespaces, and faults to break it.",
                          no_args_is_help=True)
    fault_app = typer.Typer(help="The fault catalog: list, inject and clear faults in the lab.", no_args_is_help=True)

    @lab_app.command("up")
    def up(name: str = NameOpt,
           verbose: bool = typer.Option(False, "--verbose", "-v", help="list every change on stderr")) -> None:
        """Build the lab, or repair it to exactly what up builds (a healthy lab is left untouched)."""
        from podpath.tracer.lab import Lab

        lab = Lab(name)
        t0 = time.monotonic()
        changes = lab.up()
        took = time.monotonic() - t0
        if verbose:
            for c in changes:
                err.print(f"  {c}", markup=False, soft_wrap=True)
        if changes:
            out.print(f"lab '{name}' is up ({len(changes)} changes in {took:.2f}s); "
                      f"see `podpath lab status{_n(name)}`", markup=False)
        else:
            out.print(f"lab '{name}' is already up and healthy; nothing changed ({took:.2f}s)", markup=False)

    @lab_app.command("down")
    def down(name: str = NameOpt) -> None:
        """Remove the lab: its namespaces, servers, /etc/netns files and state (fine if already down)."""
        from podpath.tracer.lab import Lab

        done = Lab(name).down()
        for d in done:
            if d.startswith("warning:"):
                err.print(d, markup=False, soft_wrap=True)
        removed = sum(1 for d in done if d.startswith("ip netns del"))
        out.print(f"lab '{name}' is down ({removed} namespaces removed)" if done else
                  f"lab '{name}' was not up; nothing to remove", markup=False)

    @lab_app.command("status")
    def status(name: str = NameOpt, output: Output = OutputOpt) -> None:
        """Nodes, pods, services and injected faults of the lab (json: the documented contract)."""
        import os

        from podpath.tracer.lab import Lab

        lab = Lab.load(name)
        inv = lab.inventory()
        drift = lab.drift() if os.geteuid() == 0 else None
        data = {
            "name": lab.name,
            "cluster_cidr": inv.cluster_cidr,
            "service_cidr": inv.service_cidr,
            "nodes": [dataclasses.asdict(n) for n in inv.nodes],
            "pods": [dataclasses.asdict(p) for p in inv.pods],
            "services": [dataclasses.asdict(s) for s in inv.services],
            "faults": lab.faults(),
            "kubeconfig": str(lab.kubeconfig),
            "kubeconfig_coordinator": str(lab.kubeconfig_coordinator),
            "agents": _agents(lab),
            "drift": drift,
        }
        if output == Output.json:
            print_json(data)
            return
        _status_text(data)

    @fault_app.command("list")
    def fault_list(output: Output = OutputOpt) -> None:
        """Every fault of the catalog: its cause, where a diagnoser should blame it, what it breaks,
        and the labs it runs in (IPVS faults: Vagrant only; `--here`: on a kind or Vagrant node)."""
        from podpath.tracer.lab.faults import catalog

        faults = catalog()
        if output == Output.json:
            print_json([f.to_dict() for f in faults.values()])
            return
        t = _table(None, "name", "cause", "node", "location")
        t.add_column("summary", overflow="fold", min_width=30)
        for f in faults.values():
            labs = "" if f.labs == ("netns", "kind", "vagrant") else f"; labs: {', '.join(f.labs)}"
            t.add_row(f.name, f.cause, f.node, f.location if not f.device else f"{f.location} ({f.device})",
                      f"{f.summary}\n[dim]breaks: {f.flow.text()}{labs}"
                      f"{'' if f.here is None else '; not --here'}[/dim]")
        out.print(t)

    @fault_app.command("inject")
    def fault_inject(fault: str = typer.Argument(..., help="a name from `podpath lab fault list`", metavar="NAME"),
                     name: str = NameOpt,
                     here: bool = typer.Option(False, "--here", help="on this node (a kind or Vagrant lab node) "
                                               "and its pods, not in a netns lab"),
                     param: list[str] = typer.Option([], "--param", help="with --here: ROLE=POD_NAME (a pod of this "
                                                     "node plays ROLE) or ROLE=IP (a pod on another node)"),
                     dry_run: bool = typer.Option(False, "--dry-run", help="with --here: print the commands "
                                                  "(inject, then clear), run nothing")) -> None:
        """Inject one fault into the running lab (or, with --here, into this node)."""
        from podpath.tracer.errors import UsageError
        from podpath.tracer.lab import Lab

        f = _fault(fault)
        if (param or dry_run) and not here:
            raise UsageError("--param and --dry-run go with --here")
        if here:
            _inject_here(f, param, dry_run)
            return
        if "netns" not in f.labs:
            raise UsageError(f"{fault} needs kube-proxy in IPVS mode (labs: {', '.join(f.labs)}); this kernel "
                             "has no ip_vs: inject it with --here on a Vagrant node (KUBE_PROXY_MODE=ipvs)")
        lab = Lab.load(name)
        already = fault in lab.faults()
        changes = lab.inject(fault)
        if already:
            err.print(changes[0], markup=False, soft_wrap=True)
            return
        for c in changes:
            err.print(f"  {c}", markup=False, soft_wrap=True)
        out.print(f"injected {fault} ({f.cause}) into lab '{name}': {f.summary}", markup=False)
        out.print(f"breaks: {f.flow.text()}; undo with `podpath lab fault clear {fault}{_n(name)}`", markup=False)

    @fault_app.command("clear")
    def fault_clear(fault: str = typer.Argument(None, help="the fault to clear", metavar="NAME"),
                    all_: bool = typer.Option(False, "--all", help="clear every injected fault"),
                    name: str = NameOpt,
                    here: bool = typer.Option(False, "--here", help="undo what `inject --here` did on this node")) -> None:
        """Undo an injected fault (or all of them), restoring exactly what `lab up` built."""
        from podpath.tracer.errors import UsageError
        from podpath.tracer.lab import Lab

        if bool(fault) == all_:
            raise UsageError("give one fault NAME or --all (see `podpath lab fault list`)")
        if fault:
            f = _fault(fault)
            if here:
                from podpath.tracer.lab import here as on_node

                if _said(on_node.clear(f)):
                    out.print(f"cleared {fault} on this node", markup=False)
                return
            if "netns" not in f.labs:
                raise UsageError(f"{fault} runs only with --here (labs: {', '.join(f.labs)}): "
                                 f"`podpath lab fault clear {fault} --here` on the node")
        elif here:
            raise UsageError("--here clears one fault at a time: give its NAME")
        lab = Lab.load(name)
        if all_:
            before = lab.faults()
            changes = lab.clear_all()
            for c in changes:
                err.print(f"  {c}", markup=False, soft_wrap=True)
            out.print(f"cleared {', '.join(before)} in lab '{name}'" if before
                      else f"no faults were injected in lab '{name}'", markup=False)
            return
        was = fault in lab.faults()
        changes = lab.clear(fault)
        if was:
            for c in changes:
                err.print(f"  {c}", markup=False, soft_wrap=True)
            out.print(f"cleared {fault} in lab '{name}'", markup=False)
        else:
            err.print(changes[0], markup=False, soft_wrap=True)

    @lab_app.command("traffic")
    def traffic(name: str = NameOpt,
                duration: float = typer.Option(10, "--duration", help="seconds to send"),
                rate: float = typer.Option(100, "--rate", help="packets per second per flow"),
                flow: list[str] = typer.Option(["dns"], "--flow", help="dns, dns-new (a new socket per query), "
                                               "dns-parallel (A + AAAA at once) (pod-a -> kube-dns); pod-udp, "
                                               "pod-udp-large (pod-a2 -> pod-b); repeat for several")) -> None:
        """Steady background flows between lab pods (they never leave the lab)."""
        import time
        from podpath.tracer.errors import UsageError
        from podpath.tracer.lab import Lab
        from podpath.tracer.lab.traffic import FLOWS, Traffic

        bad = [f for f in flow if f not in FLOWS]
        if bad or rate <= 0 or duration <= 0:
            raise UsageError(f"flows are {', '.join(FLOWS)}; --rate and --duration must be positive"
                             + (f" (got {', '.join(bad)})" if bad else ""))
        t = Traffic(Lab.load(name), rate=rate, flows=flow).start()
        try:
            time.sleep(duration)
        finally:
            t.stop()
        out.print(", ".join(f"{k}: {v} sent" for k, v in t.sent.items()))

    lab_app.add_typer(fault_app, name="fault")
    app.add_typer(lab_app, name="lab")


def _fault(name: str):
    from podpath.tracer.errors import UsageError
    from podpath.tracer.lab.faults import catalog

    try:
        return catalog()[name]
    except KeyError:
        raise UsageError(f"unknown fault {name!r}; see `podpath lab fault list`") from None


def _inject_here(f, params: list[str], dry_run: bool) -> None:
    from podpath.tracer.errors import UsageError
    from podpath.tracer.lab import here as on_node

    bad = [p for p in params if "=" not in p]
    if bad:
        raise UsageError(f"--param takes ROLE=POD_NAME or ROLE=IP (got {bad[0]!r})")
    r = on_node.inject(f, dict(p.split("=", 1) for p in params), dry_run=dry_run)
    if dry_run:
        for c in r.done:
            out.print(c, markup=False, soft_wrap=True)
        return
    if not _said(r):
        return
    out.print(f"injected {f.name} ({f.cause}) on this node: {f.summary}", markup=False)
    out.print(f"undo with `podpath lab fault clear {f.name} --here` (the undo is in {r.saved})", markup=False)


def _said(r) -> bool:
    """What a --here inject or clear did, on stderr; False when there was nothing to do."""
    if r.nothing:
        err.print(r.nothing, markup=False, soft_wrap=True)
        return False
    for c in r.done:
        err.print(f"  {c}", markup=False, soft_wrap=True)
    return True


def _n(name: str) -> str:
    return "" if name == "pp" else f" --name {name}"


def _table(title: str | None, *cols: str, wrap: tuple[str, ...] = ()):
    from rich import box
    from rich.table import Table

    t = Table(title=title, title_justify="left", title_style="bold", header_style="bold", box=box.SIMPLE_HEAD,
              pad_edge=False)
    for col in cols:
        t.add_column(col, no_wrap=col not in wrap)
    return t


def _agents(lab) -> list[dict]:
    """The lab's `podpath agent`s: the DaemonSet pod the API lists for each node, and its process."""
    from podpath.tracer.lab import agents
    from podpath.tracer.lab.apiserver.objects import AGENT_NAMESPACE, agent_pod_name
    from podpath.tracer.lab.topology import NODES

    return [{"node": n.name, "namespace": AGENT_NAMESPACE, "pod": agent_pod_name(lab.name, n.name),
             "pid": agents.pid(lab.names, n.name)} for n in NODES]


def _status_text(data: dict) -> None:
    out.print(f"[bold]lab {data['name']}[/bold]  cluster {data['cluster_cidr']}  services {data['service_cidr']}")
    t = _table("nodes", "name", "netns", "underlay", "vtep mac", "pod cidr")
    for n in data["nodes"]:
        t.add_row(n["name"], n["netns"], f"{n['underlay_dev']} {n['underlay_ip']}", n["vtep_mac"], n["pod_cidr"])
    out.print(t)
    t = _table("pods", "name", "namespace", "node", "ip", "mac", "host veth")
    for p in data["pods"]:
        t.add_row(p["name"], p["namespace"], p["node"], p["ip"], p["mac"], p["host_veth"])
    out.print(t)
    t = _table("services", "name", "cluster ip", "ports", "endpoints", wrap=("ports", "endpoints"))
    for s in data["services"]:
        ports = "\n".join(f"{p['name']} {p['port']}/{p['protocol'].lower()}→{p['target_port']}" for p in s["ports"])
        t.add_row(f"{s['namespace']}/{s['name']}", s["cluster_ip"], ports, "\n".join(s["endpoints"]) or "[red]none[/red]")
    out.print(t)
    out.print(f"kubeconfig: {data['kubeconfig']} (from lab namespaces: ip netns exec "
              f"{data['nodes'][0]['netns'] if data['nodes'] else '<node>'} kubectl --kubeconfig ...)", markup=False)
    out.print("agents: " + (", ".join(f"{a['node']} {a['namespace']}/{a['pod']} "
                                      + (f"pid {a['pid']}" if a["pid"] else "not running") for a in data["agents"])
                            or "none"), markup=False)
    out.print("faults: " + (", ".join(data["faults"]) if data["faults"] else "none"), markup=False)
    drift = data.get("drift")
    if drift is None:
        out.print("[dim]drift: not checked (needs root)[/dim]")
    elif drift:
        out.print(f"drift from what `lab up` builds ({len(drift)}; `podpath lab up{_n(data['name'])}` repairs it):",
                  markup=False)
        for d in drift:
            out.print(f"  {d}", markup=False)
    else:
        out.print("drift: none (the lab is exactly what `lab up` builds)", markup=False)
