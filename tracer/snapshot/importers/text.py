"""Pasted text as words, and the small value tests every parser uses."""

from __future__ import annotations

import ipaddress
import re
import textwrap


# --- text normalisation ---------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+")  # "> " and "> > " quotes of mail and chat
_FENCE = re.compile(r"^\s*(?:```|~~~)[\w+-]*\s*$")  # markdown code fences
_IP_ONELINE = re.compile(r"^[0-9]+: ")  # `ip -o`: one line per object, "\" marks the line breaks
_INVISIBLE = {ord(c): " " for c in "\xa0\u2007\u202f"} | {ord(c): None for c in "\u200b\u200c\u200d\ufeff"}


def normalise(text: str) -> str:
    """Pasted text as the command printed it, as far as that can be restored line by line."""
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = []
    for line in text.split("\n"):
        line = line.translate(_INVISIBLE) if not line.isascii() else line
        line = "" if _FENCE.match(line) else _QUOTE.sub("", line).rstrip()
        if _IP_ONELINE.match(line) and "\\ " in line:
            line = re.sub(r"\\ +(?=\S)", "\n    ", line)
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


_WORD = re.compile(r"\S+")


class Words:
    """Whitespace-separated words of a text; `w[i]` is "" past either end."""

    def __init__(self, text: str) -> None:
        # Built a line at a time with C-level splits (a 20 MB paste is ~2 M words): str.split() and
        # the regex's \S agree on what whitespace is (both use str.isspace).
        self.text = text
        self.items: list[str] = text.split()
        self.starts: list[int] = [m.start() for m in _WORD.finditer(text)]
        self.ends: list[int] = [s + len(t) for s, t in zip(self.starts, self.items)]
        self.lines: list[int] = []
        self.bol: list[bool] = []  # first word of its line
        self.indented: list[bool] = []  # its line starts with whitespace
        for lineno, line in enumerate(text.split("\n"), 1):
            count = len(line.split())
            if count:
                self.lines += [lineno] * count
                self.bol.append(True)
                self.bol += [False] * (count - 1)
                self.indented += [line[:1].isspace()] * count
        self.n = len(self.items)

    def __getitem__(self, i: int) -> str:
        return self.items[i] if 0 <= i < self.n else ""

    def at_bol(self, i: int) -> bool:
        """A line (or the text) starts at i: an unmistakable record boundary."""
        return i >= self.n or self.bol[i]

    def line_end(self, i: int) -> int:
        """Index of the first word of the next line."""
        i += 1
        while i < self.n and not self.bol[i]:
            i += 1
        return i

    def line_text(self, i: int) -> str:
        """The whole line word i is on, as pasted."""
        start = self.text.rfind("\n", 0, self.starts[i]) + 1
        end = self.text.find("\n", self.starts[i])
        return self.text[start:end if end >= 0 else len(self.text)].strip()

    def span(self, i: int, j: int) -> str:
        """The original text of words i..j-1."""
        return self.text[self.starts[i]:self.ends[j - 1]] if j > i else ""


# --- small value helpers --------------------------------------------------------------------

_IPV4 = re.compile(r"^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$")
_MAC = re.compile(r"^[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2}){5}$")
_HWADDR = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2})+$")


def num(s: str) -> int | None:
    return int(s) if s.isascii() and s.isdigit() else None


def is_ipv4(s: str) -> bool:
    m = _IPV4.match(s)
    return bool(m) and all(int(g) <= 255 for g in m.groups())


def is_prefix4(s: str) -> bool:
    addr, slash, length = s.partition("/")
    return is_ipv4(addr) and (not slash or (num(length) is not None and num(length) <= 32))


def is_ipv6(s: str) -> bool:
    addr, slash, length = s.partition("/")
    if ":" not in addr or not addr.isascii():
        return False
    try:
        ipaddress.IPv6Address(addr)
    except ValueError:
        return False
    return not slash or (num(length) is not None and num(length) <= 128)


def is_mac(s: str) -> bool:
    return bool(_MAC.match(s))


def mac(s: str) -> str | None:
    """Lower-case, zero-padded MAC (`0:11:22:3:4:5` from BSD arp too); other hw addresses as-is."""
    if _MAC.match(s):
        return ":".join(p.zfill(2) for p in s.lower().split(":"))
    return s.lower() if _HWADDR.match(s) else None


_REDACTED = re.compile(r"^(?:(?:[0-9]{1,3}|[xX*#?]+|[a-zA-Z]{1,3})\.){3}(?:[0-9]{1,3}|[xX*#?]+|[a-zA-Z]{1,3})"
                       r"(?:/[0-9]{1,2})?(?::[0-9]+)?$|^<[^<>]+>$|^\[?(?:redacted|REDACTED|hidden|masked)\]?$")


def is_redacted(s: str) -> bool:
    """`10.xx.xx.1`, `10.0.*.*`, `a.b.c.d`, `<node-ip>`, `REDACTED`: an address the user hid."""
    return bool(_REDACTED.match(s)) and not is_prefix4(s.split(":")[0])


def addr_port(s: str) -> tuple[str, int] | None:
    """`10.96.0.10:53` → ("10.96.0.10", 53); IPv6 `[fd00::1]:53` → None (IPv4 only)."""
    host, _, port = s.rpartition(":")
    return (host, num(port)) if is_ipv4(host) and num(port) is not None else None


TABLES = {"main": 254, "local": 255, "default": 253, "unspec": 0}


def table_id(value: str | None) -> int | None:
    return None if value is None else TABLES.get(value, num(value))


def base(word: str) -> str:
    return word.rsplit("/", 1)[-1]
