"""The netfilter hooks, in one place: their names as podpath prints them, in the kernel's order
(the index is NF_INET_PRE_ROUTING .. NF_INET_POST_ROUTING, checked against the kernel's BTF in
tests/unit/test_event_layout.py)."""

NF_HOOKS = ("prerouting", "input", "forward", "output", "postrouting")
NF_HOOK_NUMBER = {name: number for number, name in enumerate(NF_HOOKS)}
