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
