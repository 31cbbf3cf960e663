"""The scanner: at each word, a command line or one record of some command."""

from __future__ import annotations

from dataclasses import dataclass

from .state import Command, Ctx, HostState
from .text import Words, normalise
from . import prompts, registry  # in the import cycle: used as module attributes


# --- the scanner ----------------------------------------------------------------------------


@dataclass
class Run:
    command: str
    start: int  # word indices
    end: int


def scan(text: str, state: HostState) -> tuple[Words, list[Run], list[int]]:
    """Read one pasted text into state.host. Returns the words, the recognised runs and the
    indices of words nothing recognised."""
    w = Words(normalise(text))
    ctx = Ctx(state)
    runs: list[Run] = []
    unparsed: list[int] = []
    i = 0
    while i < w.n:
        line = prompts.command_line(w, i, ctx)
        if line:
            hint, j = line
            ctx.hint, ctx.current = hint, None
            ctx.cat_pending = bool(hint and hint.key)
            if hint and hint.name is None and hint.text:
                state.note("unsupported", f"`{hint.text[:60]}` at line {w.lines[i]}")
            i = max(j, i + 1)
            continue
        cmd = detect(w, i, ctx)
        if cmd is None:
            unparsed.append(i)
            i += 1
            continue
        if ctx.hint and ctx.hint.name and cmd.name != ctx.hint.name and not ctx.hinted("ip6tables-save"):
            ctx.hint = None  # the output of something else follows: the hint's dev/table no longer apply
        j = max(cmd.parse(w, i, ctx), i + 1)
        name = ctx.hint.name if cmd.name == "iptables-save" and ctx.hinted("ip6tables-save") else cmd.name
        if runs and runs[-1].command == name and runs[-1].end == i:
            runs[-1].end = j
        else:
            runs.append(Run(name, i, j))
        ctx.current = cmd
        i = j
    return w, runs, unparsed


def detect(w: Words, i: int, ctx: Ctx) -> Command | None:
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
