"""Build a bundle from pasted command output (`podpath snapshot import FILE...`).

Users paste the classic checklist (`ip a`, `ip r`, `ip r get`, `arp -a`, `ip neigh`, `bridge fdb`,
`iptables-save`, `ipvsadm -Ln`, `sysctl`) from tickets and chats: several commands one after
another, with or without shell prompts, and often *squashed* (every newline lost). This module
turns such text into the same `Host` objects the live collectors produce.

How the text is read:

1. `normalise`: ANSI colours, CRLF, `> ` quote prefixes, code fences and common indentation go.
2. `Words`: the text as whitespace-separated words that remember their line, whether they start
   it, and whether that line is indented. Every parser reads words, never lines, so the normal and
   the squashed form parse alike; line starts are only an extra record boundary when present.
3. `_scan`: at each word, a shell prompt / command line (`$ ip a`, `root@n1:~# ip r`) sets a
   *hint* (which command follows, plus its `dev`/`table`/query arguments); otherwise the first
   command in `COMMANDS` whose detector accepts the word parses one record (an interface block, a
   route, an ARP entry, an iptables-save table...) and returns the index after it. Words no
   detector accepts are reported in `Host.gaps["unparsed"]`.

Adding a command = one detector, one parser (in the module of its command family), one line in
`registry.COMMANDS`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import PurePath

from ...bundle import Bundle, Host
from ...errors import BundleError
from .finish import finish
from .registry import BY_NAME, COMMANDS, SUPPORTED, strong_start
from .scanner import Run, detect, scan
from .state import Command, Ctx, Hint, HostState
from .text import Words, normalise

__all__ = ["BY_NAME", "COMMANDS", "SUPPORTED", "Command", "Ctx", "Hint", "HostState", "Run", "Words", "detect",
           "finish", "host_name_of", "import_texts", "normalise", "recognise", "scan", "strong_start",
           "unparsed_summary"]


# --- public API -----------------------------------------------------------------------------


def recognise(text: str) -> list[tuple[str, str]]:
    """Split pasted text into (command, output) pairs, e.g. [("ip a", "1: lo: ..."), ("ip r", ...)].
    Consecutive records of one command form one chunk; prompts and command lines are left out."""
    if not isinstance(text, str):
        raise BundleError("pasted output must be text")
    w, runs, _ = scan(text, HostState(Host(name="-")))
    return [(r.command, w.span(r.start, r.end)) for r in runs]


def import_texts(texts: list[tuple[str, str]], host_name: str | None = None) -> Bundle:
    """A Bundle(source="import") from pasted outputs: one Host per file, named host_name or the
    file's stem (files that get the same name are merged into one Host). Raises BundleError when
    a file holds nothing recognisable."""
    names = [host_name or host_name_of(str(label)) for label, _ in texts]
    states: dict[str, HostState] = {}
    for (label, content), name in zip(texts, names):
        if not isinstance(content, str):
            raise BundleError(f"{label}: pasted output must be text")
        state = states.get(name) or HostState(Host(name=name, kind="unknown"))
        w, runs, unparsed = scan(content, state)
        if not runs:
            raise BundleError(f"{label}: no command output recognised; supported: {SUPPORTED}")
        states[name] = state
        for r in runs:
            if r.command not in state.host.sources:
                state.host.sources.append(r.command)
        if unparsed:
            where = unparsed_summary(w, unparsed)
            state.note("unparsed", f"{label}: {where}" if names.count(name) > 1 else where)
    hosts = [finish(s) for s in states.values()]
    return Bundle(source="import", hosts=hosts,
                  created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def host_name_of(label: str) -> str:
    stem = PurePath(label).stem if label not in ("-", "") else ""
    return stem or "stdin"


def unparsed_summary(w: Words, idx: list[int], limit: int = 4) -> str:
    """`3 lines at line 40 ("RTNETLINK answers: ...")`, `5 words at line 1 (...)`, runs joined by `; `."""
    groups: list[list[int]] = []
    for i in idx:
        if groups and groups[-1][-1] == i - 1:
            groups[-1].append(i)
        else:
            groups.append([i])
    parts = []
    for g in groups[:limit]:
        lines = sorted({w.lines[i] for i in g})
        whole = w.bol[g[0]] and (g[-1] + 1 >= w.n or w.bol[g[-1] + 1])
        snippet = w.span(g[0], min(g[-1] + 1, g[0] + 8))[:40].replace("\n", " ")
        if whole:
            count = f"{len(lines)} line{'s' if len(lines) > 1 else ''}"
        else:
            count = f"{len(g)} word{'s' if len(g) > 1 else ''}"
        parts.append(f'{count} at line {lines[0]} ("{snippet}")')
    if len(groups) > limit:
        parts.append(f"and {len(groups) - limit} more")
    return "; ".join(parts)
