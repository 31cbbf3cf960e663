"""`sysctl -a`, `sysctl KEY` and `cat /proc/sys/net/...`."""

from __future__ import annotations

import re

from .state import ImportCtx
from .text import Words, num
from . import registry  # in the import cycle: used as module attributes


# --- sysctl -------------------------------------------------------------------------------------

_SYSCTL_KEY = re.compile(r"^[a-z][a-z0-9_-]*(?:\.[^\s=.]+)+$", re.ASCII)


def detect_sysctl(w: Words, i: int, ctx: ImportCtx) -> int:
    if ctx.cat_pending and ctx.hinted("sysctl"):
        return 2
    t = w[i]
    if _SYSCTL_KEY.match(t) and w[i + 1] == "=" and not w.bol[i + 1]:
        return 2
    key, eq, value = t.partition("=")
    if eq and value and _SYSCTL_KEY.match(key) and "." in key:
        return 1
    return 1 if t == "sysctl:" else 0


def parse_sysctl(w: Words, i: int, ctx: ImportCtx) -> int:
    """`net.ipv4.ip_forward = 1` (also squashed), `key=value`, and the value after `cat /proc/sys/...`."""
    if ctx.cat_pending:
        ctx.cat_pending = False
        k = value_end(w, i, first=i)
        store_sysctl(ctx, ctx.hint.key if ctx.hint else None, w.span(i, k))
        return k
    t = w[i]
    if t == "sysctl:":  # "sysctl: permission denied on key 'fs.protected_fifos'"
        k = i + 1
        while k < w.n and not w.at_bol(k) and k < i + 8:
            k += 1
            if w[k - 1].endswith(("'", '"')) and k - 1 > i + 1:
                break
        return k
    if w[i + 1] == "=":
        k = value_end(w, i + 2, first=i + 2)
        store_sysctl(ctx, t, w.span(i + 2, k))
        return k
    key, _, value = t.partition("=")
    store_sysctl(ctx, key, value)
    return i + 1


def value_end(w: Words, k: int, first: int) -> int:
    """A sysctl value: the rest of its line (`32768	60999`, `reno cubic`); squashed, where the
    line goes on with more, one word plus any numbers after it."""
    if k >= w.n or (w.bol[k] and k == first and w[k - 1] == "="):
        return k  # "key =" with an empty value
    j = k + 1
    while j < w.n and not w.bol[j] and w[j + 1] != "=" and not registry.strong_start(w, j):
        j += 1
    if w.at_bol(j):
        return j
    end = k + 1
    while end < j and num(w[end]) is not None:
        end += 1
    return end


def store_sysctl(ctx: ImportCtx, key: str | None, value: str) -> None:
    if not key:
        return
    key = key.replace("/", ".")  # sysctl prints "flannel.1" as "flannel/1"; the bundle keeps dots
    if key.startswith("net."):
        ctx.host.sysctls[key] = value.strip()
