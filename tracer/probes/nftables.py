"""podpath's temporary nf_tables tables (`trace --nftrace`), as leftovers: named with their owner's
pid, listed over netlink, and swept when the owner is dead (a trace passing through, `podpath
cleanup`, `lab status`'s drift). Here, below trace/, so cleanup and the lab can use it.
"""

from __future__ import annotations

import os
import re
import subprocess

from ..netns import netns_path

TABLE_PREFIX = "podpath_nftrace_"


def nft_cmd(netns: str, script: str | None = None, *args: str) -> subprocess.CompletedProcess:
    cmd = ["nsenter", f"--net={netns_path(netns)}", "nft", *args] + (["-f", "-"] if script is not None else [])
    return subprocess.run(cmd, input=script, capture_output=True, text=True, timeout=10)


def owner_pid(table: str) -> int | None:
    """The pid in a table's name (podpath_nftrace_<pid>_<hex>); None for an older name without one."""
    m = re.fullmatch(re.escape(TABLE_PREFIX) + r"(\d+)_[0-9a-f]+", table)
    return int(m.group(1)) if m else None


def owner_alive(table: str) -> bool | None:
    pid = owner_pid(table)
    return None if pid is None else os.path.exists(f"/proc/{pid}")


def podpath_tables(netns: str) -> list[tuple[str, str]]:
    """(family, name) of podpath's nftrace tables in a namespace, listed over netlink (~1 ms, no
    child process), so a trace can look for a killed run's tables in every namespace it uses."""
    from ..netfilter.netlink import list_tables
    from ..netns import run_in

    return [(f, n) for f, n, _ in run_in(netns, list_tables) if n.startswith(TABLE_PREFIX)]


def sweep_tables(netns: str, *, alone: bool = True) -> list[str]:
    """Delete nftrace tables a killed podpath left in a namespace: every one whose owner (the pid in
    its name) is dead; one with no pid in its name only when no other podpath runs (alone). Names."""
    gone = []
    for family, table in podpath_tables(netns):
        alive = owner_alive(table)
        if alive or (alive is None and not alone):
            continue
        if nft_cmd(netns, None, "delete", "table", family, table).returncode == 0:
            gone.append(table)
    return gone
