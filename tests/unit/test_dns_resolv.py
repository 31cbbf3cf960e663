"""resolv.conf parsing and the names a pod's resolver tries (glibc res_search order)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podpath.tracer.dns import candidates, parse_resolv_conf
from podpath.tracer.errors import UsageError

KUBELET = """# written by kubelet
search default.svc.cluster.local svc.cluster.local cluster.local
nameserver 10.96.0.10
options ndots:5
"""


def test_kubelet_resolv_conf():
    rc = parse_resolv_conf(KUBELET)
    assert rc.nameservers == ["10.96.0.10"]
    assert rc.search == ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert rc.ndots == 5


def test_short_name_tries_the_search_list_first():
    rc = parse_resolv_conf(KUBELET)
    assert candidates("web", rc) == ["web.default.svc.cluster.local.", "web.svc.cluster.local.",
                                     "web.cluster.local.", "web."]


def test_ndots_5_sends_an_external_name_through_every_suffix_first():
    rc = parse_resolv_conf(KUBELET)
    got = candidates("example.com", rc)
    assert got[-1] == "example.com." and len(got) == 4


def test_enough_dots_or_a_trailing_dot_go_out_as_written():
    rc = parse_resolv_conf(KUBELET)
    assert candidates("a.b.c.d.e.f", rc)[0] == "a.b.c.d.e.f."
    assert candidates("example.com.", rc) == ["example.com."]


def test_last_search_line_wins_and_options_are_read():
    rc = parse_resolv_conf("search a.local\ndomain b.local\noptions ndots:2 timeout:3 attempts:4 rotate\n")
    assert (rc.search, rc.ndots, rc.timeout, rc.attempts) == (["b.local"], 2, 3.0, 4)


def test_bad_name_is_a_usage_error():
    with pytest.raises(UsageError):
        candidates("two words", parse_resolv_conf(KUBELET))


@given(st.text(max_size=300))
def test_parser_never_raises(text):
    rc = parse_resolv_conf(text)
    assert 0 <= rc.ndots <= 15


label = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)


@given(st.lists(label, min_size=1, max_size=6), st.integers(0, 8), st.lists(label, max_size=3))
def test_candidates_try_each_form_once_and_always_the_name_itself(parts, ndots, search):
    rc = parse_resolv_conf(f"search {' '.join(search)}\noptions ndots:{ndots}\n")
    name = ".".join(parts)
    got = candidates(name, rc)
    assert f"{name}." in got and all(c.endswith(".") for c in got)
    assert len(got) == len(search) + 1  # each search suffix once, and the name as written
    assert got[0] == f"{name}." if name.count(".") >= ndots else got[-1] == f"{name}."
