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
from .objects import objects


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

    def load() -> list[dict]:
        st = state.read(lab.names)
        created = rfc3339(st.created) if st else rfc3339("")
        return objects(lab.inventory(), lab.name, created, labels)

    seen = [None]

    def poll() -> bool:
        try:
            s = os.stat(state_file)
            mark = (s.st_mtime_ns, s.st_ino, s.st_size)
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
