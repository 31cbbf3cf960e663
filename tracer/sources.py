"""Where a bundle comes from: a saved file, pasted command output, or a live snapshot of a lab."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from .bundle import Bundle
from .errors import BundleError, PermissionNeeded


def load_bundle(path: str) -> Bundle:
    p = Path(path)
    if not p.is_file():
        raise BundleError(f"bundle file '{path}' does not exist; make one with `podpath snapshot -o {path}`")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BundleError(f"cannot read bundle '{path}': {e}") from None
    return Bundle.from_json(text)


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PermissionNeeded(f"{what} needs root (it reads other network namespaces): run it as root, "
                               "or analyse a saved bundle with --bundle FILE")


def lab_snapshot(lab_name: str) -> Bundle:
    """Snapshot every namespace of a running netns lab, with the lab's inventory."""
    from .lab import Lab
    from .snapshot.live import collect

    require_root("a live snapshot")
    lab = Lab.load(lab_name)
    bundle = collect(lab.hosts())
    bundle.inventory = lab.inventory()
    bundle.created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return bundle
