"""`python -m podpath.tracer.lab.apiserver --lab NAME --pid-file PATH`: the lab's API server.

`lab up` starts it inside <lab>-cp. It serves the lab's inventory (faults applied) and re-reads
it whenever the lab's state file changes (inject, clear, up), so watches see the change.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from ..core import Lab
from ..topology import APISERVER_PORT, CONTROL_PLANE_IP
from . import certs
from .labsource import lab_labels, rfc3339
from .objects import AGENT_NAMESPACE, agent_pod_name, objects
from .. import agents


def main() -> None:
    ap = argparse.ArgumentParser(prog="podpath-lab-apiserver")
    ap.add_argument("--lab", required=True)
    ap.add_argument("--pid-file", required=True)
    ap.add_argument("--address", default=CONTROL_PLANE_IP)
    ap.add_argument("--port", type=int, default=APISERVER_PORT)
    args = ap.parse_args()

    from .server import ApiServer, serve
    from .. import state

    lab = Lab(args.lab)
    labels = lab_labels()
    state_file = lab.names.state_file
    where: dict[tuple[str, str], str] = {}  # (namespace, pod) -> its network namespace, for port-forward

    def load() -> list[dict]:
        st = state.read(lab.names)
        created = rfc3339(st.created) if st else rfc3339("")
        inv = lab.inventory()
        objs = objects(inv, lab.name, created, labels, agents=agents.ready(lab.names))
        where.clear()
        where.update({(p.namespace, p.name): p.netns for p in inv.pods if p.netns})
        node_netns = {n.name: n.netns for n in inv.nodes}
        where.update({(AGENT_NAMESPACE, agent_pod_name(lab.name, n)): ns  # hostNetwork: the node's namespace
                      for n, ns in node_netns.items() if ns})
        return objs

    seen = [None]

    def poll() -> bool:
        """The state file changed (up, inject, clear), or an agent started or died (its pod's Ready)."""
        try:
            s = os.stat(state_file)
            mark = (s.st_mtime_ns, s.st_ino, s.st_size, tuple(agents.ready(lab.names).values()))
        except OSError:
            return False
        if mark != seen[0]:
            seen[0] = mark
            return True
        return False

    poll()

    def ready() -> None:
        tmp = args.pid_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, args.pid_file)
        print(f"serving https://{args.address}:{args.port} for lab {lab.name}", file=sys.stderr, flush=True)

    d = lab.names.apiserver_dir
    p = certs.paths(d)
    server = ApiServer(certs.tokens(d), load, args.address, args.port)
    server.netns_of = lambda namespace, name: where.get((namespace, name))
    loop = asyncio.new_event_loop()
    task = loop.create_task(serve(server, str(p["cert"]), str(p["key"]), poll, ready))
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass


if __name__ == "__main__":
    main()
