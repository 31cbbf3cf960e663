"""The scanner: at each word, a command line or one record of some command."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from ...bundle import Host
from .state import Command, ImportCtx, Hint, Hosts, HostState
from .text import Words, normalise
from . import prompts, registry  # in the import cycle: used as module attributes


# --- the scanner ----------------------------------------------------------------------------


@dataclass
class Run:
    command: str
    start: int  # word indices
    end: int
    state: HostState | None = None  # the host the records went to


_HEREDOC = re.compile(r"<<-?\s*['\"]?([A-Za-z_][\w]*)['\"]?")


@dataclass
class Scan:
    """One pasted text, read: its words, the recognised runs, and the words nothing recognised
    (each with the host it was being read for)."""

    words: Words
    runs: list[Run]
    unparsed: list[tuple[int, HostState]]


# Words that may name a host: header delimiters, and prompts (`[root@master ~]#`, `admin@node2:~$`).
_SECTION_HINTS = re.compile(r"(?<!\S)(?:={2,}|-{3,}|\*{3,}|#{1,3}|==>|<==|>{3,}|<{3,}|\S*@\S*|\S+[#$%])(?!\S)")


def sections(w: Words, default: str) -> tuple[list[str], dict[str, set[str]]]:
    """The section (host) each line starts in: the file's own host until a header names another
    (`=== node2 ===`); and the prompt host names each section shows."""
    section, names, changes = default, {default: set()}, [(1, default)]
    for i in sorted({bisect.bisect_left(w.starts, m.start()) for m in _SECTION_HINTS.finditer(w.text)}):
        if i >= w.n:
            continue
        header = prompts.header_at(w, i) if prompts.may_be_header(w, i) else None
        if header and header[0]:
            section = header[0]
            names.setdefault(section, set())
            changes.append((w.lines[i], section))
        elif not header:
            name = prompts.prompt_host(w, i)
            if name:
                names[section].add(name)
    total = w.text.count("\n") + 1
    by_line: list[str] = []
    for (line, name), nxt in zip(changes, changes[1:] + [(total + 1, None)]):
        by_line += [name] * (nxt[0] - line)
    return by_line, names


def scan(text: str, hosts: Hosts, default: str) -> Scan:
    """Read one pasted text into `hosts`. Output goes to the host named `default` until a header
    (`=== node2 ===`) names another. Within one such section, prompts showing several host names
    (`[root@master ~]#`, `admin@node2:~$`) name the hosts; one name throughout is the section's own.
    Output of `kubectl exec POD -- ...` / `ip netns exec NS ...` / `nsenter` goes to that pod."""
    text = normalise(text)
    w = Words(text)
    _, names = sections(w, default)
    split = {s for s, n in names.items() if len(n) > 1}
    node = hosts.get(default)
    ctx = ImportCtx(node, node=node, section=default)
    runs: list[Run] = []
    unparsed: list[tuple[int, HostState]] = []
    i = 0
    while i < w.n:
        if ctx.discard_to is not None and (w.lines[i] > ctx.discard_to or
                                           (ctx.discard_to < 0 and w.lines[i] > w.lines[i - 1] + 1)):
            ctx.state, ctx.discard_to = ctx.node, None  # the echoed input ended (a blank line, or its count)
        if prompts.may_be_header(w, i):
            header = prompts.header_at(w, i)
            if header:
                name, j = header
                if name:
                    ctx.node, ctx.section = hosts.get(name), name
                    ctx.state, ctx.hint, ctx.current, ctx.discard_to = ctx.node, None, None, None
                i = j
                continue
        heredoc = heredoc_at(w, i)
        if heredoc:
            switch_host(w, i, ctx, hosts, split)
            i = skip_heredoc(w, i, *heredoc, ctx)
            continue
        line = prompts.command_line(w, i, ctx)
        if line:
            switch_host(w, i, ctx, hosts, split)
            enter_command(w, i, line[0], ctx, hosts)
            i = max(line[1], i + 1)
            continue
        cmd = detect(w, i, ctx)
        if cmd is None:
            unparsed.append((i, ctx.state))
            i += 1
            continue
        if ctx.hint and ctx.hint.name and cmd.name != ctx.hint.name and not ctx.hinted("ip6tables-save"):
            ctx.hint = None  # the output of something else follows: the hint's dev/table no longer apply
        j = max(cmd.parse(w, i, ctx), i + 1)
        name = ctx.hint.name if cmd.name == "iptables-save" and ctx.hinted("ip6tables-save") else cmd.name
        if runs and runs[-1].command == name and runs[-1].end == i and runs[-1].state is ctx.state:
            runs[-1].end = j
        else:
            runs.append(Run(name, i, j, ctx.state))
        ctx.current = cmd
        i = j
    return Scan(w, runs, unparsed)


def enter_command(w: Words, i: int, hint: Hint | None, ctx: ImportCtx, hosts: Hosts) -> None:
    """A command line at i: what follows is its output, for the node or the pod it ran in; or,
    for a command that sets or writes, input echoed back, which goes nowhere."""
    ctx.hint, ctx.current, ctx.discard_to = hint, None, None
    ctx.cat_pending = bool(hint and hint.key)
    ctx.state = ctx.node
    if hint and hint.target:
        remote = hint.target_via in ("kubectl", "oc")  # kubectl runs anywhere: the node is unknown
        ctx.state = hosts.get(hint.target, kind="pod", node=None if remote else ctx.node.host.name,
                              netns=hint.target_netns, namespace=hint.target_namespace)
        ctx.state.exec_via = hint.text.split(" -- ")[0] if " -- " in hint.text else hint.text
    if hint and hint.input:
        ctx.node.note("input", f"line {w.lines[i]}: `{hint.text[:60]}` sets or writes, so what it prints is input, "
                               "not the kernel's state")
        ctx.state = HostState(Host(name="-"))
        # with a prompt, up to the next command line; without, its echo lines (or up to a blank line)
        ctx.discard_to = float("inf") if hint.prompt else hint.echo + w.lines[i] if hint.echo >= 0 else -1
        ctx.hint = None
    elif hint and hint.name is None and hint.text:
        ctx.node.note("unsupported", f"`{hint.text[:60]}` at line {w.lines[i]}")


def switch_host(w: Words, i: int, ctx: ImportCtx, hosts: Hosts, split: set[str]) -> None:
    """A prompt naming a host (`[root@node2 ~]#`) moves the reading to that host, when the section
    holds several."""
    name = prompts.prompt_host(w, i) if ctx.section in split else None
    if name:
        ctx.node = hosts.get(name)


def heredoc_at(w: Words, i: int) -> tuple[int, str] | None:
    """A command line with a here-document (`cat <<EOF | sudo tee FILE`) at i: (index of its `<<`
    word, the end word). Only a line start or a prompt starts one; a squashed paste may hold several."""
    if "<<" not in w.text[w.starts[i]:w.ends[min(i + 16, w.n - 1)]]:
        return None  # the cheap test first: most lines hold no here-document
    if not (w.bol[i] or prompts.prompt_len(w, i)):
        return None
    k = i + prompts.prompt_len(w, i)
    for j in range(k, min(k + 16, w.n)):
        if j > k and (w.bol[j] or prompts.prompt_len(w, j)):
            return None
        m = _HEREDOC.match(w.items[j]) if "<<" in w.items[j] else None
        if m is None and "<<" in w.items[j]:
            m = _HEREDOC.search(w.items[j] + " " + w[j + 1])
        if m:
            return j, m.group(1)
    return None


def skip_heredoc(w: Words, i: int, at: int, end_word: str, ctx: ImportCtx) -> int:
    """`cat <<EOF | sudo tee /etc/sysctl.d/k8s.conf`, its lines up to EOF (the user's input) and
    what `tee` prints back after it: none of it is state. Returns the index after all of it."""
    command_end = w.line_end(i) if w.bol[i] else at + 1
    while command_end < w.n and not w.bol[command_end] and w.items[command_end] in ("|", "sudo", "tee", "-a") \
            or (command_end < w.n and not w.bol[command_end] and w.items[command_end - 1] == "tee"):
        command_end += 1  # squashed: `| sudo tee FILE` ends the command line
    command = w.span(i, command_end)
    j = command_end
    while j < w.n and not (w.items[j] == end_word and (w.bol[j] or w[j - 1] == ">")):
        j += 1
    body = [t for t in w.items[command_end:j] if t != ">"]  # `> ` continuation prompts (squashed)
    j = min(j + 1, w.n)
    if "tee" in command and w.items[j:j + len(body)] == body:
        j += len(body)  # tee echoes the body: the same words again
    ctx.node.note("input", f"lines {w.lines[i]}-{w.lines[j - 1]}: `{command[:60]}` and its here-document are "
                           "input, not the kernel's state")
    ctx.hint, ctx.current = None, None
    return j


def detect(w: Words, i: int, ctx: ImportCtx) -> Command | None:
    """The command whose record starts at word i. An unmistakable record (strength 2) wins, the
    hinted command first; a plausible one (1) counts at a line start or inside a run or hint."""
    hinted = registry.BY_NAME.get(ctx.hint.name) if ctx.hint and ctx.hint.name else None
    if ctx.hinted("ip6tables-save"):
        hinted = registry.BY_NAME["iptables-save"]
    order = ([hinted] if hinted else []) + [c for c in registry.COMMANDS if c is not hinted]
    weak = None
    for cmd in order:
        s = cmd.detect(w, i, ctx)
        if s >= 2:
            return cmd
        if s == 1 and weak is None and (w.bol[i] or cmd is ctx.current or cmd is hinted):
            weak = cmd
    return weak
