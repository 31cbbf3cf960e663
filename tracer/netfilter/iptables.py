"""Parse `iptables-save [-c]` output (iptables-nft and iptables-legacy print the same format).

The parser keeps every rule exactly as the kernel tool printed it (`IptRule.text`, the `-A` line
without its `[packets:bytes]` prefix) so findings can quote it verbatim, and also breaks it into
typed matches and a target for the evaluator. Options podpath cannot evaluate are kept as raw
tokens and listed in `IptRule.unsupported` rather than rejected: a real node's ruleset always
contains something exotic, and one odd rule must not stop the diagnosis. Text that is not
iptables-save output at all raises `BundleError` naming the line.

Tokenising follows iptables-restore rather than a shell: `"` groups, and inside quotes a backslash
escapes the next character. (shlex differs: iptables-save writes an apostrophe in a comment as
`\\'` inside double quotes, which shlex would keep with its backslash.) A line without quotes is one
regex scan.

At cluster scale (10,000 Services: 80,000 rules, 30,000 chains per node) `parse_save(lazy=True)`
reads the file in one pass, one regex per line, and keeps each rule's line to parse when it is
first read (`Chain.rule(i)`); `jump_key` reads from a line's text alone what an index over long
jump lists needs (index.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import BundleError
from . import values as V

# Chains each table registers with the kernel, i.e. the ones with a policy.
BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}

VERDICT_TARGETS = frozenset({"ACCEPT", "DROP", "RETURN", "REJECT", "QUEUE"})

# Generic (non-module) options and how many arguments each takes.
_GENERIC_ARITY = {
    "-s": 1, "--source": 1, "--src": 1,
    "-d": 1, "--destination": 1, "--dst": 1,
    "-i": 1, "--in-interface": 1,
    "-o": 1, "--out-interface": 1,
    "-p": 1, "--protocol": 1,
    "-f": 0, "--fragment": 0,
    "-m": 1, "--match": 1,
    "-j": 1, "--jump": 1,
    "-g": 1, "--goto": 1,
    "-c": 2, "--set-counters": 2,
    "-4": 0, "--ipv4": 0,
    "-6": 0, "--ipv6": 0,
}
_CANONICAL = {
    "--source": "-s", "--src": "-s", "--destination": "-d", "--dst": "-d",
    "--in-interface": "-i", "--out-interface": "-o", "--protocol": "-p", "--fragment": "-f",
    "--match": "-m", "--jump": "-j", "--goto": "-g", "--set-counters": "-c",
    "--ipv4": "-4", "--ipv6": "-6",
}

_PORT_OPTS = {
    "--sport": 1, "--source-port": 1, "--dport": 1, "--destination-port": 1,
}
# Match modules the evaluator understands, with the options it understands and their arity.
# A module listed here with an option not listed is kept but marked unsupported.
MATCH_OPTIONS: dict[str, dict[str, int]] = {
    "tcp": {**_PORT_OPTS, "--tcp-flags": 2, "--syn": 0},
    "udp": dict(_PORT_OPTS),
    "sctp": dict(_PORT_OPTS),
    "udplite": dict(_PORT_OPTS),
    "icmp": {"--icmp-type": 1},
    "multiport": {
        "--dports": 1, "--destination-ports": 1, "--sports": 1, "--source-ports": 1, "--ports": 1,
    },
    "comment": {"--comment": 1},
    "statistic": {"--mode": 1, "--probability": 1},
    "mark": {"--mark": 1},
    "conntrack": {"--ctstate": 1},
    "state": {"--state": 1},
    "addrtype": {"--src-type": 1, "--dst-type": 1, "--limit-iface-in": 0, "--limit-iface-out": 0},
    "limit": {"--limit": 1, "--limit-burst": 1},
    "length": {"--length": 1},
    "iprange": {"--src-range": 1, "--dst-range": 1},
    "pkttype": {"--pkt-type": 1},
    "policy": {"--dir": 1, "--pol": 1},
}
# Modules we know the shape of (so tokens are split right) but cannot evaluate from a snapshot.
UNEVALUATED_OPTIONS: dict[str, dict[str, int]] = {
    "physdev": {
        "--physdev-in": 1, "--physdev-out": 1, "--physdev-is-in": 0, "--physdev-is-out": 0,
        "--physdev-is-bridged": 0,
    },
    "set": {
        "--match-set": 2, "--return-nomatch": 0, "--update-counters": 0,
        "--update-subcounters": 0, "--packets-eq": 1, "--packets-lt": 1, "--packets-gt": 1,
        "--bytes-eq": 1, "--bytes-lt": 1, "--bytes-gt": 1,
    },
    "tcp": {"--tcp-option": 1},
    "statistic": {"--every": 1, "--packet": 1},
    "conntrack": {
        "--ctproto": 1, "--ctorigsrc": 1, "--ctorigdst": 1, "--ctreplsrc": 1, "--ctrepldst": 1,
        "--ctorigsrcport": 1, "--ctorigdstport": 1, "--ctreplsrcport": 1, "--ctrepldstport": 1,
        "--ctstatus": 1, "--ctexpire": 1, "--ctdir": 1,
    },
    "policy": {"--strict": 0, "--reqid": 1, "--spi": 1, "--proto": 1, "--mode": 1,
               "--tunnel-src": 1, "--tunnel-dst": 1, "--next": 0},
    "connmark": {"--mark": 1},
    "owner": {"--uid-owner": 1, "--gid-owner": 1, "--socket-exists": 0, "--suppl-groups": 0},
    "recent": {"--name": 1, "--set": 0, "--rcheck": 0, "--update": 0, "--remove": 0,
               "--seconds": 1, "--hitcount": 1, "--rttl": 0, "--mask": 1, "--rsource": 0,
               "--rdest": 0, "--reap": 0},
    "hashlimit": {"--hashlimit-upto": 1, "--hashlimit-above": 1, "--hashlimit-burst": 1,
                  "--hashlimit-mode": 1, "--hashlimit-name": 1, "--hashlimit-htable-expire": 1,
                  "--hashlimit-srcmask": 1, "--hashlimit-dstmask": 1},
    "socket": {"--transparent": 0, "--nowildcard": 0, "--restore-skmark": 0},
    "rpfilter": {"--loose": 0, "--validmark": 0, "--accept-local": 0, "--invert": 0},
    "string": {"--algo": 1, "--string": 1, "--hex-string": 1, "--from": 1, "--to": 1, "--icase": 0},
    "ttl": {"--ttl-eq": 1, "--ttl-gt": 1, "--ttl-lt": 1},
    "u32": {"--u32": 1},
    "bpf": {"--bytecode": 1, "--object-pinned": 1},
    "cgroup": {"--path": 1, "--cgroup": 1},
    "mac": {"--mac-source": 1},
    "ipvs": {"--ipvs": 0, "--vproto": 1, "--vaddr": 1, "--vport": 1, "--vdir": 1,
             "--vmethod": 1, "--vportctl": 1},
    "dscp": {"--dscp": 1, "--dscp-class": 1},
    "tos": {"--tos": 1},
    "connlimit": {"--connlimit-upto": 1, "--connlimit-above": 1, "--connlimit-mask": 1,
                  "--connlimit-saddr": 0, "--connlimit-daddr": 0},
    "helper": {"--helper": 1},
    "devgroup": {"--src-group": 1, "--dst-group": 1},
    "realm": {"--realm": 1},
    "nfacct": {"--nfacct-name": 1},
    "quota": {"--quota": 1},
}
TARGET_OPTIONS: dict[str, dict[str, int]] = {
    "REJECT": {"--reject-with": 1},
    "DNAT": {"--to-destination": 1, "--random": 0, "--persistent": 0},
    "SNAT": {"--to-source": 1, "--random": 0, "--random-fully": 0, "--persistent": 0},
    "MASQUERADE": {"--to-ports": 1, "--random": 0, "--random-fully": 0},
    "REDIRECT": {"--to-ports": 1, "--random": 0},
    "MARK": {"--set-xmark": 1, "--set-mark": 1, "--or-mark": 1, "--and-mark": 1, "--xor-mark": 1},
    "LOG": {"--log-prefix": 1, "--log-level": 1, "--log-tcp-sequence": 0, "--log-tcp-options": 0,
            "--log-ip-options": 0, "--log-uid": 0, "--log-macdecode": 0},
    "NFLOG": {"--nflog-group": 1, "--nflog-prefix": 1, "--nflog-range": 1, "--nflog-size": 1,
              "--nflog-threshold": 1},
    "TRACE": {},
    "NOTRACK": {},
    "CT": {"--notrack": 0, "--zone": 1, "--zone-orig": 1, "--zone-reply": 1, "--helper": 1,
           "--ctevents": 1, "--expevents": 1, "--timeout": 1},
    "CONNMARK": {"--set-xmark": 1, "--set-mark": 1, "--save-mark": 0, "--restore-mark": 0,
                 "--nfmask": 1, "--ctmask": 1, "--mask": 1, "--and-mark": 1, "--or-mark": 1,
                 "--xor-mark": 1},
    "CHECKSUM": {"--checksum-fill": 0},
    "TCPMSS": {"--set-mss": 1, "--clamp-mss-to-pmtu": 0},
    "NFQUEUE": {"--queue-num": 1, "--queue-balance": 1, "--queue-bypass": 0, "--queue-cpu-fanout": 0},
    "TPROXY": {"--on-port": 1, "--on-ip": 1, "--tproxy-mark": 1},
    "AUDIT": {"--type": 1},
}
# Targets the evaluator executes (the others are kept and reported as unsupported).
EVALUATED_TARGETS = frozenset(
    {"ACCEPT", "DROP", "RETURN", "REJECT", "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "MARK",
     "LOG", "NFLOG", "TRACE", "NOTRACK", "CT", "AUDIT", "CHECKSUM"}
)
# Options whose values iptables-save prints through xtables_save_string (quoted when needed).
STRING_OPTIONS = frozenset({"--comment", "--log-prefix", "--nflog-prefix", "--string"})

_NO_QUOTE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_CT_STATES = frozenset({"NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED", "SNAT", "DNAT"})
_ADDR_TYPES = frozenset({
    "UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE",
    "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE",
})
_TCP_FLAGS = frozenset({"SYN", "ACK", "FIN", "RST", "URG", "PSH", "ALL", "NONE", "ECE", "CWR"})
_COUNTER = re.compile(r"^\[(\d+):(\d+)\]$")
_CHAIN_NAME = re.compile(r"^[^\s!]{1,64}$")
_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


# ---------------------------------------------------------------------------------------------
# Data model


@dataclass
class Option:
    """One `--name args...` of a match or target; `value` is its typed form (None if kept raw)."""

    name: str
    args: list[str] = field(default_factory=list)
    negated: bool = False
    value: Any = None
    known: bool = True  # the evaluator understands this option


@dataclass
class Match:
    """One `-m module ...` (or the implicit protocol match iptables adds for `-p tcp --dport`)."""

    module: str
    options: list[Option] = field(default_factory=list)
    implicit: bool = False

    @property
    def known(self) -> bool:
        return self.module in MATCH_OPTIONS and all(o.known for o in self.options)

    def option(self, *names: str) -> Option | None:
        return next((o for o in self.options if o.name in names), None)


@dataclass
class Target:
    name: str  # ACCEPT, DROP, a user chain, DNAT, MARK...
    goto: bool = False  # -g: no return to the calling chain
    kind: str = "unknown"  # verdict | chain | extension | unknown (resolved once the table is read)
    options: list[Option] = field(default_factory=list)

    def option(self, *names: str) -> Option | None:
        return next((o for o in self.options if o.name in names), None)


@dataclass
class AddrMatch:
    text: str  # as printed: "10.244.0.0/16" (may be a comma list in hand-written input)
    nets: list[tuple[int, int]]  # (network, mask)
    negated: bool = False


@dataclass
class IfaceMatch:
    name: str  # "eth0", "veth+" (trailing + is a wildcard)
    negated: bool = False


@dataclass
class ProtoMatch:
    name: str  # as printed: "tcp", "udp", "17", "all"
    number: int | None  # None for "all"
    negated: bool = False


@dataclass
class IptRule:
    chain: str
    number: int  # 1-based position in its chain, as `iptables -L CHAIN --line-numbers` numbers it
    text: str  # the `-A CHAIN ...` line exactly as printed, without the counter prefix
    packets: int | None = None
    bytes: int | None = None
    src: AddrMatch | None = None
    dst: AddrMatch | None = None
    in_iface: IfaceMatch | None = None
    out_iface: IfaceMatch | None = None
    proto: ProtoMatch | None = None
    fragment: bool | None = None  # True for -f, False for ! -f
    matches: list[Match] = field(default_factory=list)
    target: Target | None = None
    lineno: int = 0

    @property
    def comment(self) -> str | None:
        for m in self.matches:
            if m.module == "comment":
                opt = m.option("--comment")
                if opt is not None and opt.args:
                    return opt.args[0]
        return None

    @property
    def unsupported(self) -> list[str]:
        """What the evaluator cannot interpret in this rule (empty when fully supported)."""
        out = []
        for m in self.matches:
            if m.module not in MATCH_OPTIONS:
                out.append(f"-m {m.module}")
            else:
                out += [f"-m {m.module} {o.name}" for o in m.options if not o.known]
        if self.target is not None and (
            self.target.kind == "unknown"
            or (self.target.kind == "extension" and self.target.name not in EVALUATED_TARGETS)
        ):
            out.append(f"-j {self.target.name}")
        if self.target is not None:
            out += [f"-j {self.target.name} {o.name}" for o in self.target.options if not o.known]
        return out

    def render(self) -> str:
        """Rebuild the `-A` line from the parsed fields, in iptables-save's canonical order."""
        return render_rule(self)


class Chain:
    """One chain. Its rules are kept as the raw lines iptables-save printed and parsed on first
    use (`rule(i)`, `rules`): a node with 10,000 Services has 80,000 rules, and one packet's walk
    needs a handful of them. A line that does not parse raises BundleError naming it, when read."""

    __slots__ = ("name", "policy", "packets", "bytes", "_parsed", "_raw", "_chains", "source")

    def __init__(self, name: str, policy: str | None = None, packets: int | None = None,
                 bytes: int | None = None, rules: list[IptRule] | None = None,
                 chains: dict[str, "Chain"] | None = None, source: str = "iptables-save"):
        self.name = name
        self.policy = policy  # ACCEPT/DROP for built-in chains, None for user chains
        self.packets = packets
        self.bytes = bytes
        self._parsed: list[IptRule | None] = list(rules) if rules else []
        self._raw: list[tuple[int, str]] = []  # (line number, line as printed)
        self._chains = chains  # the table's chains, to classify targets
        self.source = source

    def __repr__(self) -> str:
        return f"Chain({self.name!r}, policy={self.policy!r}, rules={len(self)})"

    def __len__(self) -> int:
        return len(self._parsed)

    @property
    def builtin(self) -> bool:
        return self.policy is not None

    @property
    def rules(self) -> list[IptRule]:
        return [self.rule(i) for i in range(len(self._parsed))]

    def rule(self, i: int) -> IptRule:
        """The i-th rule (0-based), parsed now if it was not yet."""
        rule = self._parsed[i]
        if rule is None:
            rule = self._parsed[i] = self._parse(i)
        return rule

    def raw(self, i: int) -> str:
        """The i-th rule's line as printed (with its `[p:b]` counters if any), without parsing it."""
        if i < len(self._raw) and self._raw[i][1]:
            return self._raw[i][1]
        return self.rule(i).text

    def summary(self, i: int) -> tuple[str, int | None, int | None, str | None]:
        """(text, packets, bytes, comment) of the i-th rule, without parsing it when its comment
        can be read plainly (`-m comment --comment X`, once): what listing every rule needs."""
        rule = self._parsed[i]
        if rule is None and i < len(self._raw) and self._raw[i][1]:
            try:
                packets, bytes_, body = _split_counters(self._raw[i][1])
            except ValueError:
                body = None
            n = body.count("--comment") if body is not None else -1
            if n == 0:
                return body, packets, bytes_, None
            m = _PLAIN_COMMENT.search(body) if n == 1 and "\\" not in body else None
            if m is not None and body.count('"', 0, m.start()) % 2 == 0:  # not inside quotes
                return body, packets, bytes_, m.group(1).strip('"')
            try:
                toks = tokenize(body) if body is not None else None
            except ValueError:
                toks = None
            if toks is not None:
                n = toks.count("--comment")
                if n == 0:
                    return body, packets, bytes_, None
                at = toks.index("--comment")
                if n == 1 and toks[at - 2:at] == ["-m", "comment"] and at + 1 < len(toks):
                    return body, packets, bytes_, toks[at + 1]
        rule = self.rule(i)
        return rule.text, rule.packets, rule.bytes, rule.comment

    def append_raw(self, lineno: int, line: str) -> None:
        """Add a rule line (`[p:b] -A ...` or `-A ...`) to parse when it is first read."""
        if len(self._raw) < len(self._parsed):
            self._raw += [(0, "")] * (len(self._parsed) - len(self._raw))
        self._raw.append((lineno, line))
        self._parsed.append(None)

    def _parse(self, i: int) -> IptRule:
        lineno, line = self._raw[i]
        try:
            packets, bytes_, body = _split_counters(line)
            rule = parse_rule(tokenize(body)[2:], self.name, i + 1, body)
        except (ValueError, IndexError) as e:
            raise _line_error(self.source, lineno, line, e) from None
        rule.lineno = lineno
        if packets is not None:
            rule.packets, rule.bytes = packets, bytes_
        if rule.target is not None:
            rule.target.kind = target_kind(rule.target, self._chains or {})
        return rule


def _split_counters(line: str) -> tuple[int | None, int | None, str]:
    """`[p:b] -A ...` -> (p, b, "-A ..."); a line without counters -> (None, None, line)."""
    line = line.strip()
    if not line.startswith("["):
        return None, None, line
    counter, _, body = line.partition(" ")
    m = _COUNTER.match(counter)
    if not m:
        raise _LineError(f"bad rule counters {counter!r}")
    return int(m.group(1)), int(m.group(2)), body.strip()


@dataclass
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)


@dataclass
class Ruleset:
    tables: dict[str, Table] = field(default_factory=dict)

    def rule_count(self) -> int:
        return sum(len(c) for t in self.tables.values() for c in t.chains.values())


# ---------------------------------------------------------------------------------------------
# Tokens


class _LineError(ValueError):
    """A problem on one line; parse_save turns it into a BundleError naming the line."""


_BARE_TOKEN = re.compile(r"[^ \t\r\n]+")
# One piece of a token: unquoted text, a "quoted string" (backslash escapes inside), blanks
# between tokens, or a quote that never closes.
_PIECE = re.compile(r'([^ \t\r\n"]+)|"((?:[^"\\]|\\.)*)"|([ \t\r\n]+)|(")', re.S)
_ESCAPE = re.compile(r"\\(.)", re.S)


def tokenize(line: str) -> list[str]:
    """Split one line the way iptables-restore does (see module docstring), in linear time.

    Lines without a quote (nearly all of them) are one regex scan; quoted ones go piece by piece."""
    if '"' not in line:
        return _BARE_TOKEN.findall(line)
    tokens: list[str] = []
    buf: list[str] = []
    started = False
    for bare, quoted, blank, open_quote in _PIECE.findall(line):
        if open_quote:
            raise _LineError("unterminated quote")
        if blank:
            if started:
                tokens.append("".join(buf))
                buf, started = [], False
            continue
        buf.append(bare or _ESCAPE.sub(r"\1", quoted))
        started = True
    if started:
        tokens.append("".join(buf))
    return tokens


def save_string(value: str) -> str:
    """Quote like iptables-save's xtables_save_string: bare when safe, else "..." with escapes."""
    if value and all(c in _NO_QUOTE for c in value):
        return value
    escaped = "".join("\\" + c if c in "\"\\'" else c for c in value)
    return f'"{escaped}"'


def _quote_arg(option: str, value: str) -> str:
    if option in STRING_OPTIONS:
        return save_string(value)
    if value == "" or any(c in value for c in ' \t"\\'):
        return save_string(value)
    return value


# ---------------------------------------------------------------------------------------------
# Rule parsing


def parse_rule(tokens: list[str], chain: str, number: int, text: str) -> IptRule:
    """Parse the tokens after `-A CHAIN` into an IptRule."""
    rule = IptRule(chain=chain, number=number, text=text)
    context: Match | Target | None = None
    negate = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            if negate:
                raise _LineError("double '!'")
            negate = True
            i += 1
            continue
        if tok in _GENERIC_ARITY:
            args, i = _take_args(tokens, i, _GENERIC_ARITY[tok], tok)
            context = _apply_generic(rule, _CANONICAL.get(tok, tok), args, negate, context)
        elif tok.startswith("-") and len(tok) > 1:
            owner = _option_owner(rule, context, tok)
            arity = _option_arity(owner, tok)
            args, i = _take_args(tokens, i, arity, tok)
            owner.options.append(_typed_option(owner, tok, args, negate))
        else:
            raise _LineError(f"unexpected {tok!r}")
        negate = False
    if negate:
        raise _LineError("'!' at end of rule")
    return rule


def _take_args(tokens: list[str], i: int, arity: int | None, name: str) -> tuple[list[str], int]:
    """Take the option's arguments; arity None = greedy up to the next option (unknown options)."""
    if arity is None:
        j = i + 1
        while j < len(tokens) and not (tokens[j].startswith("-") and len(tokens[j]) > 1) \
                and tokens[j] != "!":
            j += 1
        return tokens[i + 1 : j], j
    args = tokens[i + 1 : i + 1 + arity]
    if len(args) < arity:
        raise _LineError(f"option {name} needs {arity} argument(s)")
    return args, i + 1 + arity


def _apply_generic(rule: IptRule, opt: str, args: list[str], negate: bool, context):
    if negate and opt not in ("-s", "-d", "-i", "-o", "-p", "-f"):
        raise _LineError(f"'!' cannot negate {opt}")
    if opt in ("-s", "-d"):
        nets = [_parse_net(a) for a in args[0].split(",")]
        setattr(rule, "src" if opt == "-s" else "dst", AddrMatch(args[0], nets, negate))
    elif opt in ("-i", "-o"):
        if not args[0] or len(args[0]) > 15:
            raise _LineError(f"bad interface name {args[0]!r}")
        setattr(rule, "in_iface" if opt == "-i" else "out_iface", IfaceMatch(args[0], negate))
    elif opt == "-p":
        rule.proto = ProtoMatch(args[0], _proto_number(args[0]), negate)
    elif opt == "-f":
        rule.fragment = not negate
    elif opt == "-m":
        if not re.match(r"^[A-Za-z0-9_.-]+$", args[0]):
            raise _LineError(f"bad match name {args[0]!r}")
        match = Match(args[0])
        rule.matches.append(match)
        return match
    elif opt in ("-j", "-g"):
        if rule.target is not None:
            raise _LineError("more than one target")
        if not _CHAIN_NAME.match(args[0]):
            raise _LineError(f"bad target {args[0]!r}")
        rule.target = Target(args[0], goto=opt == "-g")
        return rule.target
    elif opt == "-c":
        rule.packets, rule.bytes = _counter_value(args[0]), _counter_value(args[1])
    return context


def _option_owner(rule: IptRule, context, name: str) -> Match | Target:
    """Which match/target an option belongs to: the current `-m`/`-j`, else the implicit
    protocol match (`-p udp --dport 53` without `-m udp`, which iptables accepts)."""
    if isinstance(context, Target):
        return context
    if isinstance(context, Match) and _option_arity(context, name) is not None:
        return context
    proto = rule.proto.name if rule.proto else None
    if proto in ("tcp", "udp", "icmp", "sctp", "udplite") and name in MATCH_OPTIONS[proto]:
        for m in rule.matches:
            if m.module == proto:
                return m
        match = Match(proto, implicit=True)
        rule.matches.append(match)
        return match
    if context is None:
        raise _LineError(f"option {name} outside any match or target")
    return context


def _option_arity(owner: Match | Target, name: str) -> int | None:
    if isinstance(owner, Target):
        return TARGET_OPTIONS.get(owner.name, {}).get(name)
    arity = MATCH_OPTIONS.get(owner.module, {}).get(name)
    if arity is None:
        arity = UNEVALUATED_OPTIONS.get(owner.module, {}).get(name)
    return arity


def _typed_option(owner: Match | Target, name: str, args: list[str], negate: bool) -> Option:
    """Build the Option with its typed value; options the evaluator ignores stay raw (known=False)."""
    if isinstance(owner, Target):
        known = name in TARGET_OPTIONS.get(owner.name, {})
        if negate:
            raise _LineError(f"'!' cannot negate target option {name}")
        value = _target_value(owner.name, name, args) if known else None
        return Option(name, args, False, value, known)
    known = name in MATCH_OPTIONS.get(owner.module, {})
    value = _match_value(owner.module, name, args) if known else None
    return Option(name, args, negate, value, known)


def _match_value(module: str, name: str, args: list[str]) -> Any:
    arg = args[0] if args else ""
    if name in ("--sport", "--source-port", "--dport", "--destination-port"):
        return [V.parse_port_range(arg)]
    if name in ("--dports", "--destination-ports", "--sports", "--source-ports", "--ports"):
        ports = [V.parse_port_range(p) for p in arg.split(",")]
        if not ports or len(ports) > 15:
            raise _LineError(f"bad port list {arg!r}")
        return ports
    if name == "--tcp-flags":
        return _tcp_flag_set(args[0]), _tcp_flag_set(args[1])
    if name == "--syn":
        return _tcp_flag_set("SYN,RST,ACK,FIN"), _tcp_flag_set("SYN")
    if name == "--icmp-type":
        return _icmp_type(arg)
    if name == "--probability":
        p = float(arg)
        if not 0.0 <= p <= 1.0:
            raise _LineError(f"probability {arg} out of range")
        return p
    if name == "--mode":
        return arg
    if name == "--mark":
        return V.parse_value_mask(arg)
    if name in ("--ctstate", "--state"):
        return _word_set(arg, _CT_STATES, "state")
    if name in ("--src-type", "--dst-type"):
        return _word_set(arg, _ADDR_TYPES, "address type")
    if name == "--length":
        return V.parse_port_range(arg)  # same a:b syntax, 16-bit
    if name in ("--src-range", "--dst-range"):
        lo, _, hi = arg.partition("-")
        return V.ip_to_int(lo), V.ip_to_int(hi or lo)
    if name == "--pkt-type":
        if arg not in ("unicast", "broadcast", "multicast", "host", "otherhost"):
            raise _LineError(f"bad packet type {arg!r}")
        return arg
    if name == "--pol":
        return arg
    return _plain_value(args)


def _target_value(target: str, name: str, args: list[str]) -> Any:
    arg = args[0] if args else ""
    if name in ("--set-xmark", "--set-mark", "--or-mark", "--and-mark", "--xor-mark") \
            and target == "MARK":
        return V.parse_value_mask(arg)
    if name in ("--to-destination", "--to-source"):
        return _nat_to(arg)
    if name == "--to-ports":
        return V.parse_port_range(arg, "-")
    return _plain_value(args)


def _plain_value(args: list[str]) -> Any:
    """A flag (no argument) is True; one argument is itself; several stay a list."""
    if not args:
        return True
    return args[0] if len(args) == 1 else list(args)


def _nat_to(text: str) -> tuple[int, int | None]:
    """`10.244.0.2:53`, `1.2.3.4-1.2.3.9:1000-2000` -> (first address, first port or None)."""
    addr, _, port = text.partition(":")
    first = addr.partition("-")[0]
    return V.ip_to_int(first), (V.parse_port_range(port, "-")[0] if port else None)


def _tcp_flag_set(text: str) -> frozenset[str]:
    flags = frozenset(text.upper().split(","))
    if not flags <= _TCP_FLAGS:
        raise _LineError(f"bad TCP flags {text!r}")
    if "ALL" in flags:
        return frozenset({"SYN", "ACK", "FIN", "RST", "URG", "PSH", "ECE", "CWR"})
    return flags - {"NONE"}


def _icmp_type(text: str) -> tuple[int, int | None]:
    if text in V.ICMP_TYPES:
        return V.ICMP_TYPES[text]
    typ, sep, code = text.partition("/")
    if not typ.isdigit() or (sep and not code.isdigit()):
        raise _LineError(f"bad ICMP type {text!r}")
    return int(typ), (int(code) if sep else None)


def _word_set(text: str, allowed: frozenset[str], what: str) -> frozenset[str]:
    words = frozenset(w.upper() for w in text.split(","))
    if not words or not words <= allowed:
        raise _LineError(f"bad {what} {text!r}")
    return words


def _parse_net(text: str) -> tuple[int, int]:
    try:
        return V.parse_net(text)
    except ValueError as e:
        raise _LineError(str(e)) from None


def _proto_number(text: str) -> int | None:
    low = text.lower()
    if low in ("all", "0"):
        return None
    if low in V.PROTO_NUMBERS:
        return V.PROTO_NUMBERS[low]
    if low.isdigit() and int(low) < 256:
        return int(low)
    raise _LineError(f"unknown protocol {text!r}")


def _counter_value(text: str) -> int:
    if not text.isdigit():
        raise _LineError(f"bad counter {text!r}")
    return int(text)


def target_kind(t: Target, chains) -> str:
    """verdict | chain | extension | unknown, once every chain of the table is known."""
    if t.name in chains:
        return "chain"
    if t.goto:
        return "unknown"  # -g needs a user chain
    if t.name in VERDICT_TARGETS and t.name != "QUEUE":
        return "verdict"
    if t.name in TARGET_OPTIONS:
        return "extension"
    return "unknown"


def resolve_targets(table: Table) -> None:
    """Classify every rule's target once all chains of the table are known."""
    for chain in table.chains.values():
        for rule in chain.rules:
            if rule.target is not None:
                rule.target.kind = target_kind(rule.target, table.chains)


def jump_key(line: str) -> tuple[int, int | None, int | None] | None:
    """(destination, protocol, destination port) a rule line can only ever match, read from its
    text without parsing it; None when the line does not say so plainly.

    Used to index long jump lists (KUBE-SERVICES). It must never be wrong, only sometimes
    silent: it answers for `-A C [[!] -s S] -d D[/32] ...` with one destination option, and adds
    (protocol, port) only for `-p P` right after it plus one `-m P --dport N` with N a number.
    A value that looks like an option (`--comment -d`) only makes it more careful. `line` may
    start with `[p:b]` counters."""
    m = _KUBE_SERVICE_RULE.match(line)
    if m is not None:  # kube-proxy's own shape, the bulk of a big node: one regex
        try:
            dst = V.ip_to_int(m.group(1))
        except ValueError:
            return None  # a bad rule: the walk reaches it and reports it
        port = int(m.group(3))
        return (dst, _KEY_PROTOS[m.group(2)], port) if port <= 0xFFFF else None
    try:
        toks = tokenize(_split_counters(line)[2])
    except ValueError:
        return None
    i = 2
    if i < len(toks) and toks[i] == "!":
        i += 1
    if i < len(toks) and toks[i] in ("-s", "--source", "--src"):
        i += 2
    elif i > 2:
        return None  # a "!" that negates something else
    if len(toks) < i + 2 or toks[i] != "-d":
        return None
    rest = toks[i + 2:]
    if any(t in _DST_OPTS for t in rest):
        return None  # a second destination (iptables keeps the last one) or an odd line
    try:
        net, mask = V.parse_net(toks[i + 1])
    except ValueError:
        return None
    if mask != V.MASK32:
        return None
    if len(rest) < 2 or rest[0] != "-p" or rest[1] not in _KEY_PROTOS \
            or any(t in _PROTO_OPTS for t in rest[2:]):
        return net, None, None
    ports = [j for j, t in enumerate(rest) if t in _DPORT_OPTS]
    if len(ports) != 1:
        return net, None, None
    j = ports[0]
    if j < 2 or rest[j - 2] != "-m" or rest[j - 1] != rest[1] or j + 1 >= len(rest) \
            or not rest[j + 1].isdigit() or not rest[j + 1].isascii() \
            or int(rest[j + 1]) > 0xFFFF:
        return net, None, None
    return net, _KEY_PROTOS[rest[1]], int(rest[j + 1])


_DST_OPTS = frozenset({"-d", "--destination", "--dst"})
# `-A C -d IP/32 -p P -m comment --comment C -m P --dport N -j T`, exactly (kube-proxy's
# KUBE-SERVICES line): its tokens, and so its parse, are these and no others.
_KUBE_SERVICE_RULE = re.compile(
    r'(?:\[\d+:\d+\] +)?-A [^ \t\r\n"]+ -d (\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})/32 -p (tcp|udp|sctp) '
    r'-m comment --comment (?:"[^"\\]*"|[A-Za-z0-9_-]+) -m \2 --dport ([0-9]{1,5}) '
    r'-j [^ \t\r\n"!]+[ \t\r\n]*$')
_PROTO_OPTS = frozenset({"-p", "--protocol"})
_DPORT_OPTS = frozenset({"--dport", "--destination-port"})
_KEY_PROTOS = {"tcp": 6, "udp": 17, "sctp": 132}


def _line_error(source: str, lineno: int, line: str, e: Exception) -> BundleError:
    snippet = line.strip()
    snippet = snippet if len(snippet) <= 80 else snippet[:77] + "..."
    msg = str(e).replace("\n", " ")
    return BundleError(f"{source} line {lineno}: {msg}: {snippet!r}")


# ---------------------------------------------------------------------------------------------
# Whole-file parsing


def parse_save(text: str, source: str = "iptables-save", lazy: bool = False) -> Ruleset:
    """Parse `iptables-save [-c]` output (also tolerates `iptables -S`-style `-P`/`-N` lines).

    One pass over the lines, each looked at once. Raises BundleError naming the first line that is
    not iptables-save output. `lazy`: check the file's structure (tables, chains, which chain each
    rule is in) now, and parse each rule when it is first read, which is when a bad rule line is
    reported (Netfilter reads only the chains a packet reaches).
    """
    if not isinstance(text, str):
        raise BundleError(f"{source}: expected text, got {type(text).__name__}")
    parser = _SaveParser(source, lazy)
    with V.gc_paused():
        lineno = parser.feed_lines(text.splitlines())
    try:
        parser.finish()
    except (ValueError, IndexError) as e:
        raise _line_error(source, lineno, "", e) from None
    return parser.ruleset


# `[p:b] -A CHAIN ` with a plain chain name: the rule's chain without tokenising the line.
_RULE_START = frozenset("[-")
# ` -m comment --comment X` with X one plain or "quoted" token (no backslash in the line).
_PLAIN_COMMENT = re.compile(r' -m comment --comment ("[^"]*"|[^ \t\r\n"]+)(?=[ \t\r\n]|$)')
# `:NAME POLICY [p:b]`, the common chain header (anything else goes through _declare_chain).
_CHAIN_HEADER = re.compile(r":([^\s!]{1,64}) (-|ACCEPT|DROP|QUEUE|RETURN)(?: \[(\d+):(\d+)\])?[ \t\r\n]*$")
_APPEND = re.compile(r'(?:\[\d+:\d+\] +)?-A[ \t]+([^ \t\r\n"]+)(?:[ \t\r\n]|$)')


class _SaveParser:
    def __init__(self, source: str, lazy: bool = False):
        self.source = source
        self.lazy = lazy
        self.ruleset = Ruleset()
        self.table: Table | None = None

    def feed_lines(self, lines: list[str]) -> int:
        """Read every line; returns the number of the last. Rule lines in a declared chain (nearly
        all lines) take one regex match and an append; the rest goes through feed()."""
        lineno = 0
        chains: dict[str, Chain] = {}
        append = _APPEND.match
        header = _CHAIN_HEADER.match
        table = None
        for lineno, line in enumerate(lines, 1):
            first = line[:1]
            if self.lazy and first in _RULE_START:
                m = append(line)
                chain = chains.get(m.group(1)) if m is not None else None
                if chain is not None:
                    chain.append_raw(lineno, line)
                    continue
            elif first == ":" and table is not None:
                m = header(line)
                if m is not None and m.group(1) not in chains:
                    name, policy, packets, bytes_ = m.groups()
                    chains[name] = Chain(
                        name, None if policy == "-" else policy,
                        None if packets is None else int(packets),
                        None if bytes_ is None else int(bytes_), chains=chains, source=self.source)
                    continue
            try:
                self.feed(line, lineno)
            except BundleError:
                raise
            except (ValueError, IndexError) as e:
                raise _line_error(self.source, lineno, line, e) from None
            table = self.table
            chains = table.chains if table is not None else {}
        return lineno

    def feed(self, raw: str, lineno: int) -> None:
        line = raw.strip()
        if not line:
            return
        first = line[0]
        if first == "-" or first == "[":
            self._rule_line(line, lineno)
        elif first == "#":
            return
        elif first == "*":
            self._open_table(line[1:].strip())
        elif line == "COMMIT":
            if self.table is None:
                raise _LineError("COMMIT outside a table")
            self._close_table()
        elif first == ":":
            self._declare_chain(line[1:])
        else:
            self._rule_line(line, lineno)

    def finish(self) -> None:
        # A paste that lost its final COMMIT still says what the rules are.
        if self.table is not None:
            self._close_table()

    def _open_table(self, name: str) -> None:
        if self.table is not None:
            raise _LineError(f"table {name!r} starts before COMMIT of {self.table.name!r}")
        if not _TABLE_NAME.match(name):
            raise _LineError(f"bad table name {name!r}")
        if name in self.ruleset.tables:
            raise _LineError(f"table {name!r} appears twice")
        self.table = Table(name)

    def _close_table(self) -> None:
        assert self.table is not None
        if not self.lazy:
            resolve_targets(self.table)  # lazily read rules classify their target when parsed
        self.ruleset.tables[self.table.name] = self.table
        self.table = None

    def _require_table(self) -> Table:
        if self.table is None:
            raise _LineError("line outside a table (missing '*filter'?)")
        return self.table

    def _new_chain(self, table: Table, name: str, *args) -> Chain:
        chain = table.chains[name] = Chain(name, *args, chains=table.chains, source=self.source)
        return chain

    def _declare_chain(self, rest: str) -> None:
        table = self._require_table()
        parts = rest.split()
        if len(parts) not in (2, 3) or not _CHAIN_NAME.match(parts[0]):
            raise _LineError("bad chain header")
        name, policy = parts[0], parts[1]
        packets = bytes_ = None
        if len(parts) == 3:
            m = _COUNTER.match(parts[2])
            if not m:
                raise _LineError(f"bad chain counters {parts[2]!r}")
            packets, bytes_ = int(m.group(1)), int(m.group(2))
        if policy != "-" and policy not in ("ACCEPT", "DROP", "QUEUE", "RETURN"):
            raise _LineError(f"bad policy {policy!r}")
        if name in table.chains:
            raise _LineError(f"chain {name!r} declared twice")
        self._new_chain(table, name, None if policy == "-" else policy, packets, bytes_)

    def _rule_line(self, line: str, lineno: int) -> None:
        m = _APPEND.match(line)
        if m is not None:
            name = m.group(1)
        else:  # the long form, a quoted chain name, -P/-N, bad counters, or not a rule at all
            tokens = tokenize(_split_counters(line)[2])
            if not tokens:
                raise _LineError("counters without a rule")
            cmd = tokens[0]
            if cmd in ("-P", "-N"):
                self._short_form(cmd, tokens[1:])
                return
            if cmd not in ("-A", "--append"):
                raise _LineError(f"not an iptables-save line (starts with {cmd!r})")
            if len(tokens) < 2:
                raise _LineError("-A without a chain")
            name = tokens[1]
        table = self._require_table()
        chain = table.chains.get(name)
        if chain is None:
            raise _LineError(f"chain {name!r} was not declared")
        chain.append_raw(lineno, line)
        if not self.lazy:
            chain.rule(len(chain) - 1)  # errors in file order, as iptables-restore reports them

    def _short_form(self, cmd: str, args: list[str]) -> None:
        """`iptables -S` lines: `-P CHAIN POLICY`, `-N CHAIN` (table defaults to filter)."""
        if self.table is None:
            self._open_table("filter")
        table = self._require_table()
        if cmd == "-N":
            if len(args) != 1 or not _CHAIN_NAME.match(args[0]):
                raise _LineError("bad -N line")
            if args[0] in table.chains:
                raise _LineError(f"chain {args[0]!r} declared twice")
            self._new_chain(table, args[0])
            return
        if len(args) != 2 or args[1] not in ("ACCEPT", "DROP"):
            raise _LineError("bad -P line")
        chain = table.chains.get(args[0]) or self._new_chain(table, args[0])
        chain.policy = args[1]


# ---------------------------------------------------------------------------------------------
# Rendering (the inverse of parse_rule, for round trips and for building rules in tests)


def render_rule(rule: IptRule) -> str:
    parts = ["-A", rule.chain]
    for flag, m in (("-s", rule.src), ("-d", rule.dst)):
        if m is not None:
            parts += (["!"] if m.negated else []) + [flag, m.text]
    for flag, m in (("-i", rule.in_iface), ("-o", rule.out_iface)):
        if m is not None:
            parts += (["!"] if m.negated else []) + [flag, m.name]
    if rule.proto is not None:
        parts += (["!"] if rule.proto.negated else []) + ["-p", rule.proto.name]
    if rule.fragment is not None:
        parts += ([] if rule.fragment else ["!"]) + ["-f"]
    for match in rule.matches:
        if not match.implicit:
            parts += ["-m", match.module]
        parts += _render_options(match.options)
    if rule.target is not None:
        parts += ["-g" if rule.target.goto else "-j", rule.target.name]
        parts += _render_options(rule.target.options)
    return " ".join(parts)


def _render_options(options: list[Option]) -> list[str]:
    out: list[str] = []
    for opt in options:
        if opt.negated:
            out.append("!")
        out.append(opt.name)
        out += [_quote_arg(opt.name, a) for a in opt.args]
    return out


# ---------------------------------------------------------------------------------------------
# `iptables -t T -S [CHAIN] -v` listings, read back as iptables-save text

# One whole token with its place in the line: unquoted text, quoted pieces glued to it, or blanks.
_TOKEN_SPAN = re.compile(r'(?:[^ \t\r\n"]+|"(?:[^"\\]|\\.)*")+|[ \t\r\n]+', re.S)
_LISTED_POLICY = re.compile(r"-P (\S+) (\S+)(?: -c (\d+) (\d+))?[ \t]*$")


_TAIL_COUNTERS = re.compile(r" -c (\S+) (\S+)(?= |$)")


def _listed_counters(line: str) -> tuple[str, str | None]:
    """`-A C <matches> -c P B -j T ...` -> ("-A C <matches> -j T ...", "[P:B]").

    iptables prints a rule's counters (-v) as the unquoted tokens `-c P B` after its matches and
    before its target, where iptables-save prints `[P:B]` in front of the line; a `-c` inside a
    quoted comment or among the target's options is left alone."""
    # The common line (kube-proxy's: quoted comments, single blanks, `-c P B -j T` after the last
    # quote) is cut without tokenizing it (10,000 rules: 0.11 -> 0.02 s); any line this cannot
    # settle for certain (escapes, tabs, a -j/-g before the last quote) goes token by token.
    q = line.rfind('"') + 1  # what follows the last quote is outside quotes when they pair up
    if "\\" not in line and "\t" not in line and "  " not in line and line.count('"') % 2 == 0 \
            and " -j " not in line[:q] and " -g " not in line[:q]:
        stop = min((at for at in (line.find(" -j ", q), line.find(" -g ", q)) if at >= 0), default=len(line))
        last = None
        for last in _TAIL_COUNTERS.finditer(line, q, stop):
            pass
        if last is not None and last.group(1).isdigit() and last.group(2).isdigit():
            return line[:last.start()] + line[last.end():], f"[{last.group(1)}:{last.group(2)}]"
    return _listed_counters_by_token(line)


def _listed_counters_by_token(line: str) -> tuple[str, str | None]:
    """_listed_counters for any line: token by token, quotes and escapes respected."""
    spans = [m.span() for m in _TOKEN_SPAN.finditer(line) if not m.group().isspace()]
    at = None
    for k, (s, e) in enumerate(spans):
        word = line[s:e]
        if word in ("-j", "-g"):
            break
        if word == "-c" and k + 2 < len(spans) and all(line[a:b].isdigit() for a, b in spans[k + 1:k + 3]):
            at = k
    if at is None:
        return line, None
    cut_from = spans[at - 1][1] if at else 0  # keep the blank before -c out of the text
    cut_to = spans[at + 2][1]
    counters = f"[{line[spans[at + 1][0]:spans[at + 1][1]]}:{line[spans[at + 2][0]:spans[at + 2][1]]}]"
    return line[:cut_from] + line[cut_to:], counters


def listing_to_save(table: str, text: str) -> str:
    """`iptables -t TABLE -S [CHAIN] -v` output as the `iptables-save -c` text of those chains:
    `-P C POLICY -c P B` -> `:C POLICY [P:B]`, `-N C` -> `:C - [0:0]`, and each rule's `-c P B` moved
    to its `[P:B]` prefix, so its text is the one iptables-save prints (what findings quote and
    counters are matched by)."""
    heads, rules = [], []
    for line in text.splitlines():
        if line.startswith("-A "):
            body, counters = _listed_counters(line.rstrip())
            rules.append(f"{counters} {body}" if counters else body)
        elif line.startswith("-N "):
            heads.append(f":{line[3:].strip()} - [0:0]")
        elif line.startswith("-P "):
            m = _LISTED_POLICY.match(line)
            if m is None:
                raise BundleError(f"iptables -S printed an unexpected policy line: {line.strip()[:80]!r}")
            name, policy, packets, bytes_ = m.groups()
            heads.append(f":{name} {policy} [{packets or 0}:{bytes_ or 0}]")
        elif line.strip():
            raise BundleError(f"iptables -S printed an unexpected line: {line.strip()[:80]!r}")
    return "\n".join([f"*{table}", *heads, *rules, "COMMIT", ""])
