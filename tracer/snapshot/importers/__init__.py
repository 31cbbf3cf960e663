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

from ...bundle import Bundle
from ...errors import BundleError
from .registry import BY_NAME, COMMANDS, SUPPORTED, strong_start  # first: it loads every parser in order
from .finish import finish  # noqa: I001
from .scanner import Run, Scan, detect, scan
from .state import Command, ImportCtx, Hint, Hosts, HostState
from .text import Words, normalise

__all__ = ["BY_NAME", "COMMANDS", "SUPPORTED", "Command", "ImportCtx", "Hint", "Hosts", "HostState", "Run", "Scan", "Words",
           "detect",
           "finish", "host_name_of", "import_texts", "normalise", "recognise", "scan", "strong_start",
           "unparsed_summary"]


# --- public API -----------------------------------------------------------------------------


def recognise(text: str) -> list[tuple[str, str]]:
    """Split pasted text into (command, output) pairs, e.g. [("ip a", "1: lo: ..."), ("ip r", ...)].
    Consecutive records of one command form one chunk; prompts and command lines are left out."""
    if not isinstance(text, str):
        raise BundleError("pasted output must be text")
    s = scan(text, Hosts(), "-")
    return [(r.command, s.words.span(r.start, r.end)) for r in s.runs]


def import_texts(texts: list[tuple[str, str]], host_name: str | None = None) -> Bundle:
    """A Bundle(source="import") from pasted outputs: one Host per file, named host_name or the
    file's stem (files that get the same name are merged into one Host), plus one per host that
    prompts or headers name in a paste of several, and one per pod or namespace exec'd into.
    Raises BundleError when a file holds nothing recognisable."""
    hosts = Hosts()
    several = len(texts) > 1
    for label, content in texts:
        if not isinstance(content, str):
            raise BundleError(f"{label}: pasted output must be text")
        s = scan(content, hosts, host_name or host_name_of(str(label)))
        adopt_single_target(hosts, s, host_name or host_name_of(str(label)))
        known = {id(st) for st in hosts.states.values()}
        runs = [r for r in s.runs if id(r.state) in known]
        if not runs and s.runs:
            raise BundleError(f"{label}: only input (sysctl -w, echo, here-documents: what was typed, not what the "
                              f"kernel printed); paste the output of: {SUPPORTED}")
        if not runs:
            raise BundleError(f"{label}: no command output recognised; supported: {SUPPORTED}")
        for r in runs:
            if r.command not in r.state.host.sources:
                r.state.host.sources.append(r.command)
        by_host: dict[int, list[int]] = {}
        for i, st in s.unparsed:
            if id(st) in known:
                by_host.setdefault(id(st), []).append(i)
        for st in hosts.states.values():
            if id(st) in by_host:
                where = unparsed_summary(s.words, by_host[id(st)])
                st.note("unparsed", f"{label}: {where}" if several else where)
    kept = [st for st in hosts.states.values() if st.host.sources or st.host.sysctls]
    return Bundle(source="import", hosts=[finish(st) for st in kept],
                  created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def adopt_single_target(hosts: Hosts, s: Scan, default: str) -> None:
    """A file that is one pod's output only (`pod1.txt`: `kubectl exec shop-7d9f -- ip a`, `ip r`)
    keeps the name the user gave it; the pod's own name is noted."""
    targets = {id(r.state): r.state for r in s.runs if r.state is not None}
    own = hosts.states.get(default)
    if len(targets) != 1 or own is None or own.host.sources or own.host.sysctls:
        return
    st = next(iter(targets.values()))
    if st is own or st.host.kind != "pod" or st.host.sources or st.host.name not in hosts.states:
        return  # the pod was read before (another file): keep one host for it
    del hosts.states[st.host.name]
    st.note("exec", f"read through `{st.exec_via}`: pod {st.host.name}")
    st.host.name = default
    hosts.states[default] = st


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
