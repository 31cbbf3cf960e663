"""The importer's word index (`Words`) and iptables-save rule ends, after they were rewritten for speed
(issue 14: a 20 MB paste). Each is checked against the plain definition it replaced, on every pasted
fixture, so the imported bundle stays what it was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from podpath.tracer.snapshot.importers import import_texts
from podpath.tracer.snapshot.importers.text import Words, normalise

PASTED = Path(__file__).parent.parent / "fixtures" / "pasted"
FIXTURES = sorted(PASTED.rglob("*.txt"))


def reference_words(text: str) -> tuple[list, ...]:
    """Words as first written: a regex per line, one append per word."""
    items, starts, ends, lines, bol, indented = [], [], [], [], [], []
    offset = 0
    for lineno, line in enumerate(text.split("\n"), 1):
        for n, m in enumerate(re.finditer(r"\S+", line)):
            items.append(m.group())
            starts.append(offset + m.start())
            ends.append(offset + m.end())
            lines.append(lineno)
            bol.append(n == 0)
            indented.append(line[:1].isspace())
        offset += len(line) + 1
    return items, starts, ends, lines, bol, indented


def as_tuple(w: Words) -> tuple[list, ...]:
    return w.items, w.starts, w.ends, w.lines, w.bol, w.indented


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: str(p.relative_to(PASTED)))
def test_words_of_each_fixture_match_the_reference(path):
    text = normalise(path.read_text(errors="replace"))
    assert as_tuple(Words(text)) == reference_words(text)


def test_words_with_odd_whitespace_match_the_reference():
    # Vertical tab, form feed, U+2028 and U+3000 are whitespace to both str.split and \S; only "\n" ends a line.
    text = "\n\n  a\tb\x0bc\x0cd\u2028e\u3000f  \n\tg\n \n h  i\r\nlast"
    w = Words(text)
    assert as_tuple(w) == reference_words(text)
    assert w.items[:6] == ["a", "b", "c", "d", "e", "f"] and w.lines[6] == 4 and w.indented[6]
    assert Words("").n == 0 and Words("   \n  ").n == 0


@pytest.mark.parametrize("name", ["node1_iptables_save.txt", "node1_iptables_save_c.txt",
                                  "node1_iptables_legacy_save.txt"])
def test_squashed_iptables_save_splits_into_the_same_rules(name):
    """Rule ends are found word by word: a paste with every newline lost reads as the original."""
    text = (PASTED / name).read_text()
    plain = import_texts([("node1", text)]).hosts[0].iptables_save
    squashed = import_texts([("node1", text.replace("\n", " "))]).hosts[0].iptables_save
    assert plain == squashed
    rules = [line for t in plain.values() for line in t.splitlines() if line.startswith(("-A", "["))]
    assert rules and len(rules) == sum(line.startswith(("-A", "[")) for line in text.splitlines())
