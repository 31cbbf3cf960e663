"""`iptables -S CHAIN -v` listings read back as the iptables-save text of those chains (what the
counters re-read after a drop uses), and which chains can hold a drop. The lab test
tests/lab/test_nf_scale.py compares the conversion with real iptables-save output; these pin the
cases a kube-proxy node rarely has: `-c` inside quotes or among a target's options."""

from __future__ import annotations

import pytest

from podpath.tracer.errors import BundleError
from podpath.tracer.netfilter import Netfilter, Packet
from podpath.tracer.netfilter.iptables import listing_to_save
from podpath.tracer.trace.counters import drop_chains

LISTING = """\
-P FORWARD DROP -c 7 420
-N GUARD
-A FORWARD -d 10.244.1.2/32 -m comment --comment "not -c 1 2 here" -c 3 180 -j GUARD
-A FORWARD -c 0 0 -j LOG --log-prefix "x -c 5 6 "
-A GUARD -p tcp -m tcp --dport 80 -c 2 120 -j DROP
-A GUARD -c 11 660
"""


def test_counters_move_in_front_and_quoted_or_target_text_stays():
    save = listing_to_save("filter", LISTING)
    assert save.splitlines() == [
        "*filter",
        ":FORWARD DROP [7:420]",
        ":GUARD - [0:0]",
        '[3:180] -A FORWARD -d 10.244.1.2/32 -m comment --comment "not -c 1 2 here" -j GUARD',
        '[0:0] -A FORWARD -j LOG --log-prefix "x -c 5 6 "',
        "[2:120] -A GUARD -p tcp -m tcp --dport 80 -j DROP",
        "[11:660] -A GUARD",
        "COMMIT",
    ]
    nf = Netfilter.from_texts(save)
    (alt,) = nf.evaluate("forward", Packet("10.244.0.2", "10.244.1.2", "tcp", 40000, 80))
    assert alt.verdict == "drop" and alt.decided_by.text == "-A GUARD -p tcp -m tcp --dport 80 -j DROP"
    assert alt.decided_by.packets == 2


def test_a_listing_that_is_not_one_is_refused_with_the_line():
    with pytest.raises(BundleError, match="unexpected line: 'iptables v1.8.9'"):
        listing_to_save("filter", "iptables v1.8.9\n")


def test_drop_chains_are_the_chains_with_drop_or_reject_rules_or_a_drop_policy():
    save = ("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SVC-X - [0:0]\n[0:0] -A KUBE-SVC-X -j KUBE-SEP-Y\nCOMMIT\n"
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:KUBE-FORWARD - [0:0]\n:OTHER - [0:0]\n"
            "[0:0] -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n"
            "[0:0] -A OTHER -p tcp -j REJECT --reject-with tcp-reset\n"
            "[0:0] -A INPUT -m comment --comment \"DROP\" -j ACCEPT\nCOMMIT\n")
    assert drop_chains(save) == {"filter": ["INPUT", "FORWARD", "KUBE-FORWARD", "OTHER"]}
    assert drop_chains(save.replace(":FORWARD DROP", ":FORWARD ACCEPT").replace("*filter", "*mangle")
                       .replace(" -j DROP", " -j ACCEPT").replace(" -j REJECT", " -j MARK")) == {}


# --- the fast cut of `-c P B` equals the token-by-token one ---------------------------------------------

from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from podpath.tracer.netfilter.iptables import _listed_counters, _listed_counters_by_token  # noqa: E402

_WORDS = st.sampled_from(["-c", "0", "12", "7", "-j", "-g", "ACCEPT", "KUBE-SVC-X", "-m", "comment", "--comment",
                          '"a -c 1 2 b"', '"x', 'y"', '"-j"', '"', "\\\"", "²", "-A", "FWD", "--dport", "80"])
_BLANKS = st.sampled_from([" "] * 12 + ["  ", "\t"])  # mostly single blanks: the fast cut's case


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(_WORDS, _BLANKS), min_size=1, max_size=14), st.booleans())
@example([("-j", " "), ("X", " "), ('"q"', " "), ("-c", " "), ("1", " "), ("2", " ")], True)  # -j before the quote
@example([('"q', " "), ('"', " "), ('"', " "), ("-c", " "), ("1", " "), ("2", " ")], True)  # odd quotes
@example([('"a\\"', " "), ("-c", " "), ("1", " "), ("1", " ")], True)  # an escaped quote: two quotes, one string
def test_fast_counter_cut_equals_the_token_by_token_cut(parts, lead):
    line = ("-A C " if lead else "") + "".join(w + b for w, b in parts).rstrip()
    assert _listed_counters(line) == _listed_counters_by_token(line)


@pytest.mark.parametrize("line, body, counters", [
    ('-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" '
     '-m tcp --dport 443 -c 5 300 -j KUBE-SVC-NPX46M4PTMTKRN6Y',
     '-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" '
     '-m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y', "[5:300]"),
    ('-A X -c 1 2 -c 3 4 -j DROP', '-A X -c 1 2 -j DROP', "[3:4]"),  # the last -c before the target
    ('-A X -m comment --comment "q" -c 1 2', '-A X -m comment --comment "q"', "[1:2]"),  # no target
    ('-A X -j LOG --log-prefix "p" -c 1 2', '-A X -j LOG --log-prefix "p" -c 1 2', None),  # the target's option
    ('-A X -m comment --comment "-c 1 2"', '-A X -m comment --comment "-c 1 2"', None),
])
def test_counters_cut_from_kube_proxy_lines_and_edge_cases(line, body, counters):
    assert _listed_counters(line) == (body, counters)
