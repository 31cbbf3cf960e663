"""`--nftrace`: the kernel's own nf_tables trace of the test packet, for certainty about the rule.

Opt-in, because it changes the node for the duration of the trace: in each namespace on the path
it adds a table `ip podpath_nftrace_<token>` whose base chains (prerouting and output, priority
-500, before everything else) set `meta nftrace set 1` on the test flow, and reads
`nft -a monitor trace` there. The table is deleted when the trace ends; a killed run's table is
removed by the next podpath that runs alone (RunLock) and by `podpath cleanup`. nftrace sees
nf_tables only: iptables-nft and nft rulesets, not iptables-legacy.

Each decisive line ("rule ... (verdict drop)", "policy drop") is mapped back to the rule in the
snapshot by its handle: the position in its chain is the iptables rule number for iptables-nft.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import subprocess
import threading
import time
from dataclasses import asdict, dataclass

from ..errors import BundleError
from ..netns import netns_path

from ..probes.nftables import TABLE_PREFIX, nft_cmd, sweep_tables
LINE = re.compile(r"^trace id (?P<id>[0-9a-f]+) (?P<family>\w+) (?P<table>\S+) (?P<chain>\S+) "
                  r"(?P<kind>packet|rule|verdict|policy|unknown)(?::)? ?(?P<text>.*?)\s*$")
HANDLE = re.compile(r"# handle (\d+)")
VERDICT = re.compile(r"\(verdict (\w+)[^)]*\)")


@dataclass
class NftraceLine:
    netns: str
    trace_id: str
    family: str
    table: str
    chain: str
    kind: str  # packet, rule, verdict, policy
    text: str
    handle: int | None = None
    verdict: str | None = None  # accept, drop, continue, jump X... (rule, policy, verdict lines)
    # a decisive rule's position in its chain, read where the line was seen (with_positions): a
    # coordinator on another node cannot read that namespace's handles
    position: int | None = None

    @property
    def decisive(self) -> bool:
        return self.verdict in ("drop", "reject") and not self.table.startswith(TABLE_PREFIX)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["position"] is None:  # optional: recordings made before it stay as they were
            del d["position"]
        return d


NFNLGRP_NFTRACE = 9  # linux/netfilter/nfnetlink.h: the multicast group trace messages go to


def _subscribed(pid: int) -> bool:
    """Whether process `pid` holds a netfilter netlink socket that has joined the trace group, as
    its namespace's /proc/net/netlink lists it (Groups: the first 32 groups' bits)."""
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")}
        with open(f"/proc/{pid}/net/netlink") as f:
            rows = [line.split() for line in f.readlines()[1:]]
    except OSError:
        return False
    return any(len(r) >= 10 and r[1] == "12" and r[9] in inodes and
               int(r[3], 16) & (1 << (NFNLGRP_NFTRACE - 1)) for r in rows)


def _await_subscribed(procs: list[subprocess.Popen], most: float = 5.0) -> None:
    """`nft monitor` prints nothing once it has subscribed: wait until each one's netlink socket has
    joined the trace group (a packet sent before that is not traced; on a loaded machine nft takes
    a while to start)."""
    end = time.monotonic() + most
    for p in procs:
        while time.monotonic() < end and p.poll() is None and not _subscribed(p.pid):
            time.sleep(0.01)


def with_positions(lines: list[NftraceLine]) -> list[NftraceLine]:
    """The lines, each decisive rule line with its rule's position in its chain, read now in its
    namespace (on the node that saw it)."""
    out = []
    for x in lines:
        if x.decisive and x.kind == "rule" and x.handle is not None and x.position is None:
            pos = next((i + 1 for i, r in enumerate(_live_chain_rules(x)) if r.get("handle") == x.handle), None)
            x = dataclasses.replace(x, position=pos)
        out.append(x)
    return out


def parse_line(netns: str, line: str) -> NftraceLine | None:
    m = LINE.match(line.strip())
    if not m:
        return None
    text = m["text"]
    h = HANDLE.search(text)
    verdict = None
    if m["kind"] == "rule":
        v = VERDICT.search(text)
        verdict = v.group(1) if v else None
        text = VERDICT.sub("", HANDLE.sub("", text)).strip()
    elif m["kind"] in ("policy", "verdict"):
        verdict = text.split()[0] if text else None
    return NftraceLine(netns, m["id"], m["family"], m["table"], m["chain"], m["kind"], text,
                       int(h.group(1)) if h else None, verdict)


def _match(src: str, dst: str | None, proto: str | None) -> list[str]:
    l4 = f" meta l4proto {proto}" if proto in ("icmp", "tcp", "udp") else ""
    if dst is None:  # any destination (after a Service's DNAT elsewhere): the source pod's flows
        return [f"ip saddr {src}{l4} meta nftrace set 1", f"ip daddr {src}{l4} meta nftrace set 1"]
    return [f"ip saddr {src} ip daddr {dst}{l4} meta nftrace set 1",
            f"ip saddr {dst} ip daddr {src}{l4} meta nftrace set 1"]


class NfTrace:
    """Temporary trace tables plus one `nft monitor trace` per namespace; lines() while running,
    close() removes everything (also on errors)."""

    def __init__(self, namespaces: list[str], src: str, dst: str | None, proto: str | None, *, sweep: bool = False):
        self.namespaces = list(dict.fromkeys(namespaces))
        self.table = f"{TABLE_PREFIX}{os.getpid()}_{secrets.token_hex(3)}"  # the owner, for sweeps
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._lines: list[NftraceLine] = []
        self._lock = threading.Lock()
        self._added: list[str] = []
        self.errors: list[str] = []
        rules = _match(src, dst, proto)
        chains = "".join(f"  chain {hook} {{ type filter hook {hook} priority -500; policy accept;\n"
                         + "".join(f"    {r}\n" for r in rules) + "  }\n" for hook in ("prerouting", "output"))
        script = f"table ip {self.table} {{\n{chains}}}\n"
        try:
            for ns in self.namespaces:
                sweep_tables(ns, alone=sweep)
                p = nft_cmd(ns, script)
                if p.returncode != 0:
                    self.errors.append(f"{ns}: cannot add the nftrace table: {p.stderr.strip()}")
                    continue
                self._added.append(ns)
                # --pdeathsig: the monitor dies with podpath, even on SIGKILL (else it pins the namespace)
                mon = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "nsenter", f"--net={netns_path(ns)}",
                                        "nft", "-a", "monitor", "trace"],
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                self._procs.append((ns, mon))
                threading.Thread(target=self._read, args=(ns, mon), daemon=True).start()
            _await_subscribed([mon for _, mon in self._procs])
        except BaseException:
            self.close()
            raise

    def _read(self, ns: str, mon: subprocess.Popen) -> None:
        for raw in mon.stdout:
            line = parse_line(ns, raw)
            if line is not None:
                with self._lock:
                    self._lines.append(line)

    def result(self) -> list[NftraceLine]:
        """The lines once the monitors are quiet, each decisive rule line located in its chain
        (with_positions: read here, on the node that saw it)."""
        return with_positions(self.lines())

    def lines(self, settle: float = 0.1, most: float = 2.0) -> list[NftraceLine]:
        """What the monitors printed, once they have been quiet for `settle` s after their first
        line (they print asynchronously, later on a loaded machine), waiting at most `most` s: a
        namespace the packet never reached prints nothing, and costs the whole wait."""
        end, seen, quiet_since = time.monotonic() + most, 0, time.monotonic()
        while time.monotonic() < end:
            with self._lock:
                n = len(self._lines)
            if n != seen:
                seen, quiet_since = n, time.monotonic()
            elif n and time.monotonic() - quiet_since >= settle:
                break
            time.sleep(0.02)
        with self._lock:
            return list(self._lines)

    def close(self) -> None:
        for _, mon in self._procs:
            mon.terminate()
        for _, mon in self._procs:
            try:
                mon.wait(timeout=2)
            except subprocess.TimeoutExpired:
                mon.kill()
        self._procs.clear()
        for ns in self._added:
            p = nft_cmd(ns, None, "delete", "table", "ip", self.table)
            if p.returncode != 0 and "No such file" not in p.stderr:
                self.errors.append(f"{ns}: could not delete {self.table}: {p.stderr.strip()}")
        self._added.clear()


def rule_for(host, line: NftraceLine):
    """The snapshot's RuleRef for a decisive nftrace line (by handle), or None. Its position in the
    chain: what the node that saw it read (with_positions: iptables-nft's tables are in the snapshot
    as iptables-save text only, without handles), else the snapshot's nft rules (native tables)."""
    from ..netfilter import Netfilter

    if line.handle is None or not host.nftables:
        return None
    pos = line.position
    if pos is None:
        rules = [x["rule"] for x in host.nftables.get("nftables", []) if "rule" in x]
        same_chain = [r for r in rules if (r.get("family"), r.get("table"), r.get("chain")) ==
                      (line.family, line.table, line.chain)]
        pos = next((i + 1 for i, r in enumerate(same_chain) if r.get("handle") == line.handle), None)
    if pos is None:
        return None
    try:
        # that chain's rules only: a big live namespace is read per chain (netfilter/live.py)
        refs = Netfilter.from_host(host).rules_in({(b, line.table, line.chain) for b in ("iptables-nft", "nftables")})
    except BundleError:
        return None
    for r in refs:
        if r.table == line.table and r.chain == line.chain and r.number == pos and \
                (r.backend == "iptables-nft" or r.handle == line.handle):
            return r
    return None


def _live_chain_rules(line: NftraceLine) -> list[dict]:
    """The rules (with handles) of the chain an nftrace line names, read from its namespace."""
    try:
        p = nft_cmd(line.netns, None, "-j", "list", "chain", line.family, line.table, line.chain)
        data = json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else {}
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    items = data.get("nftables", []) if isinstance(data, dict) else []
    return [x["rule"] for x in items if isinstance(x, dict) and isinstance(x.get("rule"), dict)]
