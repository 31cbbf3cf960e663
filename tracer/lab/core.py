"""The `Lab` object: up/down, inventory, hosts to snapshot, faults, probes of one netns lab."""

from __future__ import annotations

import copy
from pathlib import Path

from ..bundle import Inventory
from .. import errors
from ..errors import LabError, PermissionNeeded, UsageError
from ..targets import HostRef
from . import state
from .faults import FAULTS, FaultFlow
from .topology import DEFAULT_LAB, NODES, PODS, UNDERLAY, Names, base_inventory, check_lab_name




def require_root(what: str) -> None:
    errors.require_root(f"`podpath lab {what}`")


def _up_hint(name: str) -> str:
    return "podpath lab up" + ("" if name == DEFAULT_LAB else f" --name {name}")


class Lab:
    """One lab. `Lab(name)` for up; `Lab.load(name)` for a lab that must already be up."""

    def __init__(self, name: str = DEFAULT_LAB):
        self.name = check_lab_name(name)
        self.names = Names(self.name)

    def __repr__(self) -> str:
        return f"Lab({self.name!r})"

    @classmethod
    def load(cls, name: str = DEFAULT_LAB) -> "Lab":
        lab = cls(name)
        st = state.read(lab.names)
        if st is None:
            raise LabError(f"lab '{name}' is not up; run `{_up_hint(name)}`")
        from . import nsutil

        missing = [ns for ns in lab.names.all_netns if not nsutil.exists(ns)]
        if missing:
            raise LabError(f"lab '{name}' is not up (namespace {missing[0]} is missing); run `{_up_hint(name)}`")
        return lab

    # ------------------------------------------------------------------ lifecycle

    def up(self) -> list[str]:
        """Build the lab, or repair it to exactly what up builds; a healthy lab is left untouched.

        Faults still injected are undone (the repair restores everything) and dropped from the state.
        Returns the changes made (empty when the lab was already up and healthy).
        """
        require_root("up")
        from . import build

        with state.locked(self.names):
            st = state.read(self.names)
            if st is None:  # written first: the API server that reconcile starts serves what it holds
                st = state.LabState(lab=self.name, inventory=base_inventory(self.name), created=state.now())
                state.write(self.names, st)
                fresh = True
            else:
                fresh = False
            try:
                changes = build.reconcile(self.names)
            except (LabError, PermissionNeeded, UsageError):
                raise
            except Exception as e:  # noqa: BLE001 - netlink/OS errors become one line
                raise LabError(f"lab '{self.name}' could not be built: {e}; `podpath lab down"
                               f"{'' if self.name == DEFAULT_LAB else ' --name ' + self.name}` and retry") from None
            if st is not None and st.faults:
                changes.append(f"faults undone by the repair: {', '.join(st.faults)}")
            if fresh or st.faults or changes or st.inventory != base_inventory(self.name):
                state.write(self.names, state.LabState(lab=self.name, inventory=base_inventory(self.name),
                                                       created=st.created))
            return changes

    def down(self) -> list[str]:
        """Remove every namespace, /etc/netns dir, server and state file of the lab (fine if already down)."""
        require_root("down")
        from . import build

        with state.locked(self.names):
            done = build.teardown(self.names)
            if self.names.state_file.exists():
                done.append(f"removed {self.names.state_file}")
            state.remove(self.names)
        state.remove_lock(self.names)
        return done

    def drift(self) -> list[str]:
        """What differs from what `up` builds (injected faults show up here), without changing anything."""
        from . import build

        return build.reconcile(self.names, dry=True) + self.leftovers()

    def leftovers(self) -> list[str]:
        """What the lab did not build but holds: a killed podpath's --nftrace tables, and network
        namespaces attached to a lab node that are not the lab's (a hand-made break, a leftover)."""
        import os

        from ..netns import inode
        from ..sources.discovery import discover
        from ..probes.nftables import owner_pid, podpath_tables
        from .topology import NODES

        out = []
        for ns in self.names.all_netns:
            try:
                tables = podpath_tables(ns)
            except Exception:  # noqa: BLE001 - a namespace that is gone is reported by the reconcile
                continue
            for _family, table in tables:
                pid = owner_pid(table)
                owner = f"owner pid {pid} is dead" if pid and not os.path.exists(f"/proc/{pid}") else \
                    f"owner pid {pid} runs" if pid else "no owner recorded"
                out.append(f"{ns}: --nftrace table {table} ({owner}); `podpath cleanup` removes a dead one")
        ours = {inode(ns) for ns in self.names.all_netns} - {None}
        for n in NODES:
            try:
                found = discover(self.netns(n.name))
            except Exception:  # noqa: BLE001
                continue
            for ns in found:
                if ns.inode not in ours:
                    what = ns.name or f"inode {ns.inode}" + (f", pid {ns.pids[0]}" if ns.pids else "")
                    out.append(f"{self.netns(n.name)}: a namespace the lab did not build is attached "
                               f"({what}, host veth {ns.host_veth})")
        return out

    # ------------------------------------------------------------------ what it holds

    def _state(self) -> state.LabState:
        st = state.read(self.names)
        if st is None:
            raise LabError(f"lab '{self.name}' is not up; run `{_up_hint(self.name)}`")
        return st

    def inventory(self) -> Inventory:
        """Nodes, pods and services as the cluster would report them (faults like no-endpoints applied)."""
        st = self._state()
        inv = copy.deepcopy(st.inventory)
        for f in st.faults:
            fault = FAULTS.get(f)
            if fault is not None and fault.patch_inventory is not None:
                fault.patch_inventory(inv)
        return inv

    def hosts(self) -> list[HostRef]:
        out = [HostRef(n.name, "node", n.name, self.netns(n.name)) for n in NODES]
        out += [HostRef(p.name, "pod", p.node, self.netns(p.name), p.namespace) for p in PODS]
        out.append(HostRef(UNDERLAY, "network", None, self.netns(UNDERLAY)))
        return out

    def path_devices(self, pods: list[str]) -> list[tuple[str, str]]:
        """The (netns, device) pairs flannel's data path crosses between these lab pods: each pod's
        eth0, its host veth and cni0, and across nodes flannel.1, the underlay NIC and the switch
        port. What a trace can attach to before the snapshot has said where packets really go."""
        specs = {p.name: p for p in PODS}
        chosen = [specs[p] for p in pods if p in specs]
        nodes = {n.name: n for n in NODES}
        used = list(dict.fromkeys(p.node for p in chosen))
        out: list[tuple[str, str]] = []
        for p in chosen:
            out += [(self.netns(p.name), "eth0"), (self.netns(p.node), p.host_veth), (self.netns(p.node), "cni0")]
        if len(used) > 1:
            for n in used:
                out += [(self.netns(n), "flannel.1"), (self.netns(n), "eth0"),
                        (self.netns(UNDERLAY), nodes[n].underlay_port)]
        return list(dict.fromkeys(out))

    def path_nexthops(self, pods: list[str]) -> list[str]:
        """The addresses the flannel path between these pods resolves by ARP or neighbour entry:
        the pods themselves, their cni0 gateways, and across nodes the VTEPs and node IPs."""
        specs = {p.name: p for p in PODS}
        nodes = {n.name: n for n in NODES}
        chosen = [specs[p] for p in pods if p in specs]
        used = list(dict.fromkeys(p.node for p in chosen))
        out = [p.ip for p in chosen] + [nodes[n].gateway for n in used]
        if len(used) > 1:
            out += [nodes[n].subnet_base for n in used] + [nodes[n].underlay_ip for n in used]
        return list(dict.fromkeys(out))

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig of the lab's API server (https://192.168.56.10:6443, lab namespaces only)."""
        return self.names.kubeconfig

    @property
    def kubeconfig_limited(self) -> Path:
        """A kubeconfig whose user may get/list/watch nodes, pods, services and namespaces, nothing else."""
        return self.names.kubeconfig_limited

    @property
    def kubeconfig_agent(self) -> Path:
        """The kubeconfig of ServiceAccount podpath-agent (read-only cluster facts): the lab's agents'."""
        return self.names.kubeconfig_agent

    @property
    def kubeconfig_coordinator(self) -> Path:
        """The kubeconfig of ServiceAccount podpath-coordinator: get/list cluster facts, and create
        pods/portforward in namespace podpath only (what `podpath trace` through agents needs)."""
        return self.names.kubeconfig_coordinator

    def netns(self, short_name: str) -> str:
        if short_name not in self.names.all_short:
            raise UsageError(f"{short_name!r} is not a lab host; hosts: {', '.join(self.names.all_short)}")
        return self.names.netns(short_name)

    def faults(self) -> list[str]:
        st = state.read(self.names)
        return list(st.faults) if st else []

    # ------------------------------------------------------------------ faults

    @staticmethod
    def fault(name: str):
        try:
            return FAULTS[name]
        except KeyError:
            raise UsageError(f"unknown fault {name!r}; see `podpath lab fault list`") from None

    def inject(self, name: str) -> list[str]:
        """Inject one fault; returns what changed (a message only if it is already injected)."""
        require_root("fault inject")
        fault = self.fault(name)
        from . import build

        with state.locked(self.names):
            st = self._state()
            if name in st.faults:
                return [f"fault {name} is already injected in lab '{self.name}'; nothing changed"]
            saved: dict = {}
            with build.BuildCtx(self.names) as ctx:
                try:
                    fault.apply(ctx, saved)
                except LabError:
                    raise
                except Exception as e:  # noqa: BLE001 - netlink/OS errors become one line
                    raise LabError(f"injecting {name} failed: {e}; `{_up_hint(self.name)}` repairs the lab") from None
            st.faults.append(name)
            st.saved[name] = saved
            state.write(self.names, st)
            return ctx.changes

    def clear(self, name: str) -> list[str]:
        """Undo one injected fault exactly; a fault that is not injected is a no-op with a message."""
        require_root("fault clear")
        fault = self.fault(name)
        from . import build

        with state.locked(self.names):
            st = self._state()
            if name not in st.faults:
                return [f"fault {name} is not injected in lab '{self.name}'; nothing to clear"]
            with build.BuildCtx(self.names) as ctx:
                try:
                    fault.revert(ctx, st.saved.get(name) or {})
                except LabError:
                    raise
                except Exception as e:  # noqa: BLE001
                    raise LabError(f"clearing {name} failed: {e}; `{_up_hint(self.name)}` repairs the lab") from None
            st.faults.remove(name)
            st.saved.pop(name, None)
            state.write(self.names, st)
            return ctx.changes

    def clear_all(self) -> list[str]:
        out: list[str] = []
        for name in reversed(self.faults()):
            out += self.clear(name)
        return out or [f"no faults are injected in lab '{self.name}'"]

    # ------------------------------------------------------------------ traffic

    def probe(self, flow: FaultFlow, timeout: float = 1.0):
        """Send the flow's real test traffic inside the lab; returns probe.Result (ok, detail, answered_by)."""
        require_root("probe")
        from . import probe

        t = probe.resolve(self.names, flow.src, flow.dst, flow.proto, flow.port, flow.size, flow.sport)
        return probe.run(t, timeout)
