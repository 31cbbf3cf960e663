"""The tables of an iptables-save text, found without a regex over the whole of it
(snapshot/collectors.py save_tables): the same answer as the regex it replaced, on real saves and
on any text."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from podpath.tracer.snapshot.collectors import save_tables

FIXTURES = Path(__file__).parent.parent / "fixtures" / "netfilter"
REGEX = re.compile(r"^\*(\S+)", re.M)


def test_real_saves_name_their_tables():
    paths = sorted(FIXTURES.glob("*.iptables-save"))
    assert len(paths) >= 3
    for path in paths:
        text = path.read_text()
        assert save_tables(text) == REGEX.findall(text), path.name
        assert {"filter", "nat"} <= set(save_tables(text)), path.name


LINES = st.lists(st.one_of(st.sampled_from(["*nat", "*filter", "* nat", "*", "*mangle extra", "COMMIT", "",
                                             ":KUBE-SERVICES - [0:0]", "-A X -j Y", "# *raw", " *raw", "*raw\r",
                                             "*\tsecurity", "**odd"]),
                           st.text(alphabet="*\n \tabcX-:\r", max_size=12)), max_size=20)


@settings(max_examples=400, deadline=None)
@given(LINES, st.booleans())
def test_any_text_gives_what_the_regex_gives(lines, trailing_newline):
    text = "\n".join(lines) + ("\n" if trailing_newline else "")
    assert save_tables(text) == REGEX.findall(text)
