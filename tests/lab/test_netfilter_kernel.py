"""The netfilter parser and evaluator against the real kernel and tools (root; throwaway netns).

Every namespace is named `ppnf-*` and deleted in a finalizer even when a test fails; the root
namespace's rules are never touched (every command runs under `ip netns exec`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from podpath.tracer.netfilter import Netfilter, Packet, parse_json, parse_save

pytestmark = pytest.mark.lab

FIXTURES = Path(__file__).parent.parent / "fixtures" / "netfilter"
KUBE_RULES = (FIXTURES / "kube-proxy-flannel.rules").read_text()


def _require(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces and load rules")
    missing = [t for t in ("ip", *tools) if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tool(s): {', '.join(missing)}")


def _new_netns(request) -> str:
    name = f"ppnf-{uuid.uuid4().hex[:8]}"
    # registered before creation, so a half-made namespace is removed too
    request.addfinalizer(lambda: subprocess.run(["ip", "netns", "delete", name],
                                                capture_output=True))
    subprocess.run(["ip", "netns", "add", name], check=True)
    sh(name, "ip", "link", "set", "lo", "up")
    return name


@pytest.fixture
def netns(request) -> str:
    _require()
    return _new_netns(request)


def sh(ns: str, *cmd: str, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(["ip", "netns", "exec", ns, *cmd], input=stdin, text=True,
                          capture_output=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


# ---------------------------------------------------------------------------------------------
# What iptables prints vs what we parsed


def _line_numbers(ns: str, tool: str, table: str, chain: str) -> dict[int, str]:
    """`iptables -L CHAIN --line-numbers`: rule number -> target column."""
    out = sh(ns, tool, "-w", "-t", table, "-L", chain, "-n", "--line-numbers")
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0].isdigit():
            # a rule without a target has no target column: the next word is the protocol
            target = parts[1] if not parts[1].isdigit() else ""
            rows[int(parts[0])] = target
    return rows


def _assert_parse_matches_kernel(ns: str, tool: str, save_text: str) -> None:
    ruleset = parse_save(save_text)
    assert set(ruleset.tables) >= {"nat", "filter"}
    checked = 0
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            spec = sh(ns, tool, "-w", "-t", table.name, "-S", chain.name).splitlines()
            assert [l for l in spec if l.startswith("-A ")] == [r.text for r in chain.rules]
            numbers = _line_numbers(ns, tool, table.name, chain.name)
            assert sorted(numbers) == [r.number for r in chain.rules]
            for rule in chain.rules:
                assert numbers[rule.number] == (rule.target.name if rule.target else "")
                checked += 1
    assert checked == ruleset.rule_count() > 60


@pytest.mark.parametrize(
    "restore, save, tool",
    [("iptables-nft-restore", "iptables-nft-save", "iptables-nft"),
     ("iptables-legacy-restore", "iptables-legacy-save", "iptables-legacy")],
)
def test_iptables_rules_parse_like_the_kernel_numbers_them(request, restore, save, tool):
    _require(restore, save, tool)
    ns = _new_netns(request)
    sh(ns, restore, stdin=KUBE_RULES)
    text = sh(ns, save, "-c")
    _assert_parse_matches_kernel(ns, tool, text)
    backend = "iptables-nft" if "nft" in tool else "iptables-legacy"
    nf = Netfilter.from_texts(text if backend == "iptables-nft" else None,
                              text if backend == "iptables-legacy" else None)
    pkt = Packet("10.244.1.2", "10.96.0.10", "udp", sport=40000, dport=53, iif="cni0")
    results = nf.evaluate("prerouting", pkt, {"10.244.1.1"}, {})
    assert [(r.packet.dst, r.probability) for r in results] == [("10.244.0.2", 0.5),
                                                                 ("10.244.1.3", 0.5)]
    assert all(ref.backend == backend for r in results for ref in r.trail)


def test_iptables_nft_tables_are_skipped_in_nft_json(netns):
    _require("iptables-nft-restore", "iptables-nft-save", "nft")
    sh(netns, "iptables-nft-restore", stdin=KUBE_RULES)
    save_text = sh(netns, "iptables-nft-save", "-c")
    data = json.loads(sh(netns, "nft", "-j", "list", "ruleset"))
    tables = set(parse_save(save_text).tables)
    parsed = parse_json(data, tables)
    assert parsed.tables == {} and sorted(parsed.skipped) == ["ip filter", "ip mangle", "ip nat"]
    assert parse_json(data).tables == {}  # the heuristic agrees without the save output


# ---------------------------------------------------------------------------------------------
# What nft prints vs what we parsed


def _nft_cli_rules(text: str) -> dict[tuple[str, str, str], list[tuple[int, str]]]:
    """`nft -a list ruleset` -> {(family, table, chain): [(handle, text without counters)]}."""
    out: dict[tuple[str, str, str], list[tuple[int, str]]] = {}
    table = chain = None
    for line in text.splitlines():
        m = re.match(r"^table (\S+) (\S+) \{", line)
        if m:
            table, chain = (m.group(1), m.group(2)), None
            continue
        m = re.match(r"^\s+chain (\S+) \{", line)
        if m and table:
            chain = m.group(1)
            out[(*table, chain)] = []
            continue
        if re.match(r"^\s+(set|map) \S+ \{", line):
            chain = None
            continue
        m = re.match(r"^\s+(.*) # handle (\d+)$", line)
        if m and table and chain:
            rule = re.sub(r"counter packets \d+ bytes \d+", "counter", m.group(1)).strip()
            out[(*table, chain)].append((int(m.group(2)), rule))
    return out


def test_nft_rules_parse_like_nft_lists_them(netns):
    _require("nft")
    for src in ("native-firewall.nft", "kube-proxy-nftables.nft"):
        sh(netns, "nft", "-f", str(FIXTURES / src))
    data = json.loads(sh(netns, "nft", "-j", "list", "ruleset"))
    cli = _nft_cli_rules(sh(netns, "nft", "-a", "list", "ruleset"))
    parsed = parse_json(data)
    assert parsed.skipped == []
    count = 0
    for table in parsed.tables.values():
        for chain in table.chains.values():
            expected = cli[(table.family, table.name, chain.name)]
            assert [(r.handle, r.text) for r in chain.rules] == expected
            assert [r.position for r in chain.rules] == list(range(1, len(expected) + 1))
            count += len(expected)
    assert count == parsed.rule_count() > 30
    bases = {(c.table, c.name): (c.hook, c.priority, c.policy) for c in parsed.base_chains()}
    assert bases[("fw", "early")] == ("prerouting", -150, "drop")
    assert bases[("nat2", "post")] == ("postrouting", 110, "accept")


# ---------------------------------------------------------------------------------------------
# Real packets: the evaluator's verdict and rule agree with what the kernel did


@pytest.fixture
def pair(request):
    """Two namespaces joined by a veth: A 10.250.0.1 (va) <-> B 10.250.0.2 (vb)."""
    _require("ping")
    a, b = _new_netns(request), _new_netns(request)
    va, vb = f"va{uuid.uuid4().hex[:6]}", f"vb{uuid.uuid4().hex[:6]}"
    # the veth is created inside A, so nothing ever appears in the root namespace
    sh(a, "ip", "link", "add", va, "type", "veth", "peer", "name", vb, "netns", b)
    sh(a, "ip", "addr", "add", "10.250.0.1/24", "dev", va)
    sh(b, "ip", "addr", "add", "10.250.0.2/24", "dev", vb)
    sh(a, "ip", "link", "set", va, "up")
    sh(b, "ip", "link", "set", vb, "up")
    # a new veth's carrier comes up asynchronously: on a busy machine (parallel test workers) the
    # first echo can go unanswered for a second, so the baseline gets a few tries
    assert any(_ping(a, "10.250.0.2") for _ in range(5)), "baseline ping failed"
    return a, b, vb


def _ping(ns: str, dst: str) -> bool:
    proc = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", dst],
                          capture_output=True)
    return proc.returncode == 0


def _echo(vb: str, dst: str = "10.250.0.2") -> Packet:
    return Packet("10.250.0.1", dst, "icmp", iif=vb)


def _counted(save_text: str, table: str, chain: str, number: int) -> int:
    rule = parse_save(save_text).tables[table].chains[chain].rules[number - 1]
    return rule.packets or 0


@pytest.mark.parametrize(
    "restore, save, backend, target, verdict",
    [("iptables-nft-restore", "iptables-nft-save", "iptables-nft", "DROP", "drop"),
     ("iptables-legacy-restore", "iptables-legacy-save", "iptables-legacy",
      "REJECT --reject-with icmp-host-prohibited", "reject")],
)
def test_input_drop_is_the_rule_the_kernel_counted(pair, restore, save, backend, target, verdict):
    _require(restore, save)
    a, b, vb = pair
    rules = (
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":PODPATH-TEST - [0:0]\n"
        "-A INPUT -p tcp -j DROP\n"
        "-A INPUT -j PODPATH-TEST\n"
        "-A PODPATH-TEST -s 10.250.0.9/32 -j RETURN\n"
        f"-A PODPATH-TEST -s 10.250.0.1/32 -p icmp -m icmp --icmp-type 8 -j {target}\n"
        "COMMIT\n"
    )
    sh(b, restore, stdin=rules)
    assert not _ping(a, "10.250.0.2")
    text = sh(b, save, "-c")
    nf = Netfilter.from_texts(text if backend == "iptables-nft" else None,
                              text if backend == "iptables-legacy" else None)
    (r,) = nf.evaluate("input", _echo(vb), {"10.250.0.2"}, {vb: "10.250.0.2"})
    assert r.verdict == verdict
    ref = r.decided_by
    assert (ref.backend, ref.chain, ref.number) == (backend, "PODPATH-TEST", 2)
    assert _counted(text, "filter", "PODPATH-TEST", 2) >= 1
    # the command it suggests really removes the rule, and then the ping works
    sh(b, *ref.command().split())
    assert _ping(a, "10.250.0.2")


def test_nft_policy_drop_matches_the_kernel(pair):
    _require("nft")
    a, b, vb = pair
    sh(b, "nft", "-f", "-", stdin=(
        "table inet podpath_test {\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy drop;\n"
        "    ip saddr 10.250.0.9 counter accept\n"
        "    tcp dport 22 counter accept\n"
        "  }\n"
        "}\n"
    ))
    assert not _ping(a, "10.250.0.2")
    nf = Netfilter.from_texts(nftables=json.loads(sh(b, "nft", "-j", "list", "ruleset")))
    (r,) = nf.evaluate("input", _echo(vb), {"10.250.0.2"}, {vb: "10.250.0.2"})
    assert r.verdict == "drop" and r.decided_by.is_policy
    assert r.decided_by.table == "podpath_test" and r.decided_by.family == "inet"
    subprocess.run(["ip", "netns", "exec", b, "sh", "-c", r.decided_by.command()], check=True)
    assert _ping(a, "10.250.0.2")


def test_dnat_rewrites_like_the_kernel(pair):
    _require("iptables-nft-restore", "iptables-nft-save")
    a, b, vb = pair
    sh(a, "ip", "route", "add", "10.250.1.100/32", "via", "10.250.0.2")
    sh(b, "iptables-nft-restore", stdin=(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n:KUBE-SVC-TEST - [0:0]\n"
        "-A PREROUTING -d 10.250.1.100/32 -j KUBE-SVC-TEST\n"
        '-A KUBE-SVC-TEST -m comment --comment "test/svc -> 10.250.0.2" -j DNAT '
        "--to-destination 10.250.0.2\n"
        "COMMIT\n"
    ))
    assert _ping(a, "10.250.1.100")
    text = sh(b, "iptables-nft-save", "-c")
    nf = Netfilter.from_texts(text)
    (r,) = nf.evaluate("prerouting", _echo(vb, "10.250.1.100"), {"10.250.0.2"}, {})
    assert r.verdict == "accept" and r.packet.dst == "10.250.0.2"
    assert [(n.chain, n.number) for n in r.nat] == [("KUBE-SVC-TEST", 1)]
    assert _counted(text, "nat", "KUBE-SVC-TEST", 1) == 1  # NAT rules see the first packet only
