"""Shell prompts and command lines: which command printed what follows, with its arguments."""

from __future__ import annotations

import re
from typing import Callable

from .ipvs import IPVS_SAVE_SVC
from .neigh import NEIGH_KEYS, detect_arp_a, detect_arp_n
from .routes import ROUTE_KEYS, is_dst
from .state import ImportCtx, Hint, NO_HINT
from .sysctl import _SYSCTL_KEY
from .text import Words, base, is_ipv4, is_ipv6
from . import registry, scanner  # in the import cycle: used as module attributes


# --- command lines and prompts --------------------------------------------------------------

_PROMPT = re.compile(r"^[\w.@:~/\[\]()+-]*[#$%❯➜»]$")
_PROMPT_OPEN = re.compile(r"^(?:\[|\(|[\w.-]+@)")  # "[root@n1 ~]#", "(venv) u@h:~$", "u@h ~ $"
_PROMPT_HOST = re.compile(r"^[\w.-]+:?$")  # "node1 ~ #": a host name, then only paths
WRAPPERS = {"sudo", "doas", "nsenter", "kubectl", "oc", "docker", "crictl", "nerdctl", "podman",
            "chroot", "watch", "timeout", "env", "command", "time", "nice", "exec", "toolbox"}
SHELL_WORDS = {"iptables", "ip6tables", "nft", "ss", "netstat", "route", "ifconfig", "ethtool", "tcpdump",
               "ping", "curl", "wget", "nc", "kubectl", "crictl", "docker", "traceroute", "tracepath",
               "nslookup", "dig", "host", "conntrack", "cat", "ls", "cd", "systemctl", "journalctl",
               "mtr", "brctl", "ovs-vsctl", "calicoctl", "cilium", "hostname", "uname", "echo",
               "lsmod", "modprobe", "dmesg"} | WRAPPERS
FILTERS = {"grep", "egrep", "fgrep", "head", "tail", "sort", "column", "less", "more", "awk", "sed",
           "cut", "tr", "uniq", "wc", "tee", "cat"}


def prompt_len(w: Words, i: int) -> int:
    """How many words of a shell prompt start at i (`$`, `root@n1:~#`, `[root@n1 ~]#`)."""
    t = w[i]
    if not t:
        return 0
    if _PROMPT.match(t):
        return 1
    if len(t) > 64 or '"' in t or "{" in t:
        return 0  # a JSON array or a long value, not `[root@node1 ~]#`
    for j in range(1, 4):
        if w.at_bol(i + j):
            break
        if _PROMPT.match(w[i + j]):
            middle = w.items[i + 1:i + j]
            if _PROMPT_OPEN.match(t) or (_PROMPT_HOST.match(t) and middle
                                          and all(m[:1] in "~/" for m in middle)):
                return j + 1
            break
    return 0


_PROMPT_USER_HOST = re.compile(r"^[\[(]?[\w.-]+@([\w.-]+?)(?:[:\]][^\s]*)?$")
def prompt_host(w: Words, i: int) -> str | None:
    """The host name a prompt at i shows (`[root@master ~]#` → master, `node1 ~ #` → node1)."""
    p = prompt_len(w, i)
    if not p:
        return None
    first = w[i]
    m = _PROMPT_USER_HOST.match(first if p > 1 else first[:-1])
    if m:
        return m.group(1)
    if p > 1 and _PROMPT_HOST.match(first) and not first.startswith(("[", "(")):
        return first.rstrip(":")
    return None


_HEADER_DELIM = re.compile(r"^(?:={2,}|-{3,}|\*{3,}|#{2,}|==>|<==|>{3,}|<{3,})$")
_HEADER_HASH_HOST = re.compile(r"^(?:[A-Za-z][\w.-]*[0-9][\w.-]*|(?:master|worker|node|control|cp|k8s)[\w.-]*):?$",
                               re.I)


def header_at(w: Words, i: int) -> tuple[str | None, int] | None:
    """A line that separates hosts: `=== node3 ===`, `--- worker1 ---`, `==> node2 <==`, `# worker1`.
    Returns (host, index after the line); host None for a header naming a command (`=== ip a ===`)."""
    if not w.bol[i]:
        return squashed_header_at(w, i)
    end = w.line_end(i)
    words = w.items[i:end]
    first = words[0]
    if first in ("#", "##", "###") and len(words) == 2 and _HEADER_HASH_HOST.match(words[1]) \
            and base(words[1]) not in SHELL_WORDS and base(words[1]) not in COMMAND_WORDS:
        return words[1].rstrip(":"), end  # "# worker1"; "# ip a" is a root prompt, "# notes" a comment
    if not _HEADER_DELIM.match(first) or len(words) < 3 or not _HEADER_DELIM.match(words[-1]):
        return squashed_header_at(w, i)  # the line goes on after the header (squashed text)
    inner = words[1:-1]
    name = inner[0].strip("[]():")
    if len(inner) > 4 or not re.match(r"^[A-Za-z0-9][\w.-]*$", name):
        return None
    if base(name) in COMMAND_WORDS or base(name) in SHELL_WORDS or name in ("sudo", "output"):
        return None, end
    return name, end


def may_be_header(w: Words, i: int) -> bool:
    """A cheap test before header_at: its first word is a delimiter, or `#` at a line start."""
    t = w.items[i]
    return t[:2] in ("==", "--", "**", "##", ">>", "<<") or (w.bol[i] and t[:1] == "#")


_SQUASHED_DELIM = re.compile(r"^(?:={3,}|-{3,}|==>)$")


def squashed_header_at(w: Words, i: int) -> tuple[str | None, int] | None:
    """`=== node2 ===` inside a line (chat squashed the newlines): the delimited forms only."""
    if not _SQUASHED_DELIM.match(w[i]):
        return None
    for j in range(i + 2, min(i + 6, w.n)):
        if _HEADER_DELIM.match(w[j]) and (w[j] == w[i] or (w[i], w[j]) == ("==>", "<==")):
            name = w[i + 1].strip("[]():")
            if not re.match(r"^[A-Za-z0-9][\w.-]*$", name):
                return None
            if base(name) in COMMAND_WORDS or base(name) in SHELL_WORDS:
                return None, j + 1
            return name, j + 1
    return None


def command_line(w: Words, i: int, ctx: ImportCtx) -> tuple[Hint | None, int] | None:
    """A command line at i: (hint, index after it); hint None for an empty prompt. Normal form:
    the whole line. Squashed: as far as the command's grammar goes, checked by its output following."""
    p = prompt_len(w, i)
    k = i + p
    if p and w.at_bol(k):
        return (None, k) if w.bol[i] else None  # an empty prompt line
    if not p and base(w[i]) not in COMMAND_WORDS and w[i] not in WRAPPERS:
        return None
    found = read_invocation(w, k, ctx)
    if found and p:
        found[0].prompt = w.span(i, k)
    if found and found[0].input and w.bol[i]:
        return found[0], w.line_end(i)  # `sysctl -w ...`, `echo ... | tee ...`: typed, prompt or not
    if found and (found[0].name or p):
        hint, j = found
        if w.at_bol(j) or output_follows(w, j, ctx, hint):
            return hint, j
        if w.bol[i]:  # more arguments than the grammar knows (`| grep -A3 x`): up to the output
            return hint, command_end(w, j, ctx)
        return (hint, j) if p else None
    if not p or not w.bol[i]:
        return None  # squashed: without a known command we cannot tell where it ends
    if w[i] == "#" and base(w[k]) not in SHELL_WORDS:
        return None  # "# Generated by iptables-save", "# notes": a comment, not a root prompt
    end = command_end(w, k, ctx)
    return Hint(name=None, text=w.span(k, end), prompt=w.span(i, k)), end


def output_follows(w: Words, j: int, ctx: ImportCtx, hint: Hint) -> bool:
    probe = ImportCtx(ctx.state, hint=hint, cat_pending=bool(hint.key))
    return scanner.detect(w, j, probe) is not None


def command_end(w: Words, k: int, ctx: ImportCtx) -> int:
    """End of a command line whose arguments we do not know: its line end, or (squashed text)
    the next prompt or unmistakable record."""
    j = k + 1
    while j < w.n and not w.bol[j]:
        if (prompt_len(w, j) and read_invocation(w, j + prompt_len(w, j), ctx)) or registry.strong_start(w, j):
            break
        j += 1
    return j


def read_invocation(w: Words, k: int, ctx: ImportCtx) -> tuple[Hint, int] | None:
    """A (possibly wrapped: sudo, ip netns exec, kubectl exec --, nsenter) supported command."""
    start = k
    limit = k + 16
    while k < limit and k < w.n:
        if k > start and w.bol[k]:
            return None
        t = base(w[k])
        if t == "ip" and w[k + 1] == "netns" and w[k + 2] == "exec":
            k += 4
            continue
        if t in COMMAND_WORDS:
            got = ARGS[t](w, k + 1)
            if got:
                name, fields, j = got
                j = skip_filters(w, j)
                fields.update(exec_target(w.items[start:k]))
                return Hint(name=name, text=w.span(start, j), **fields), j
            if k == start:
                return None
        elif k == start and t not in WRAPPERS:
            return None
        k += 1
    return None


EXEC_TOOLS = {"kubectl", "oc", "docker", "crictl", "nerdctl", "podman"}
EXEC_VALUE_OPTS = {"-n", "--namespace", "-c", "--container", "--context", "--kubeconfig", "-u", "--user", "-w",
                   "--workdir", "-e", "--env", "--pod-running-timeout", "-f", "--filename"}


def exec_target(words: list[str]) -> dict:
    """Whose network namespace the wrapped command ran in: `kubectl exec [-n NS] POD [-c C] --`,
    `docker|crictl exec [opts] CONTAINER`, `ip netns exec NS`, `nsenter -t PID -n` / `--net=PATH`."""
    for n, t in enumerate(words):
        t = base(t)
        if t in EXEC_TOOLS and "exec" in words[n + 1:n + 3]:
            k = words.index("exec", n + 1) + 1
            namespace = None
            while k < len(words):
                opt = words[k]
                if opt == "--":
                    k += 1
                    continue
                if opt.startswith("-"):
                    key, eq, value = opt.partition("=")
                    if key in EXEC_VALUE_OPTS and not eq:
                        value = words[k + 1] if k + 1 < len(words) else ""
                        k += 1
                    if key in ("-n", "--namespace"):
                        namespace = value
                    k += 1
                    continue
                name = opt.split("/", 1)[1] if opt.startswith(("pod/", "pods/")) else opt
                return {"target": name, "target_namespace": namespace, "target_via": t}
            return {}
        if t == "ip" and words[n + 1:n + 3] == ["netns", "exec"] and n + 3 < len(words):
            return {"target": words[n + 3], "target_netns": words[n + 3], "target_via": "ip netns exec"}
        if t == "nsenter":
            pid = path = None
            rest = words[n + 1:]
            for m, opt in enumerate(rest):
                key, eq, value = opt.partition("=")
                if key in ("-t", "--target"):
                    pid = value if eq else (rest[m + 1] if m + 1 < len(rest) else None)
                elif key.startswith("--net") and eq or key.startswith("-n") and len(key) > 2 and key[2] == "/":
                    path = value if eq else key[2:]
                elif key.startswith("-t") and len(key) > 2 and key[2:].isdigit():
                    pid = key[2:]
            if path:
                name = path.rstrip("/").rsplit("/", 1)[-1]
                if name == "net":  # /proc/PID/ns/net
                    parts = path.strip("/").split("/")
                    name = f"pid-{parts[1]}" if len(parts) > 2 and parts[1].isdigit() else path
                return {"target": name, "target_netns": None if path.startswith("/proc/") else name,
                        "target_via": "nsenter"}
            if pid:
                return {"target": f"pid-{pid}", "target_via": "nsenter"}
            return {}
    return {}


FILTER_VALUE_OPTS = {"-A", "-B", "-C", "-m", "-e", "-f", "-n", "-F", "-d", "-k", "-t"}


def skip_filters(w: Words, j: int) -> int:
    """`| grep -E "a|b"`, `| column -t`, `2>/dev/null` after a command: where its output starts."""
    while j < w.n and not w.bol[j]:
        t = w[j]
        if t in (">", "2>", "&>"):
            j += 2
        elif re.match(r"^[0-9&]?>", t):
            j += 1
        elif t == "|" and base(w[j + 1]) in FILTERS:
            tool, j = base(w[j + 1]), j + 2
            pattern = tool in ("grep", "egrep", "fgrep", "awk", "sed")
            while w[j].startswith("-") and not w.bol[j]:
                pattern = pattern and w[j] not in ("-e", "-f")  # the pattern was an option's value
                j += 2 if w[j] in FILTER_VALUE_OPTS else 1
            if pattern and not w.at_bol(j):
                j = quoted_end(w, j)
        else:
            break
    return j


def quoted_end(w: Words, j: int) -> int:
    """Index after the shell word at j, which may be a quoted string spanning several words."""
    q = w[j][:1]
    if q not in ("'", '"') or (len(w[j]) > 1 and w[j].endswith(q)):
        return j + 1
    k = j + 1
    while k < w.n and not w.bol[k]:
        k += 1
        if w[k - 1].endswith(q):
            break
    return k


ArgsResult = tuple[str | None, dict, int] | None


def ip_object(word: str) -> str | None:
    for full, name in (("address", "ip a"), ("link", "ip link"), ("route", "ip r"), ("neighbour", "ip neigh"),
                       ("neighbor", "ip neigh"), ("rule", "ip rule")):
        if word and full.startswith(word) and not (full == "rule" and len(word) < 2):
            return name
    return None


def args_ip(w: Words, k: int) -> ArgsResult:
    fields: dict = {}
    brief = False
    while w[k].startswith("-") and not w.at_bol(k):
        opt = w[k].lstrip("-")
        if opt in ("n", "netns", "f", "family", "b", "batch", "rc", "rcvbuf", "l", "loops"):
            if opt in ("f", "family") and w[k + 1] in ("inet6", "6"):
                fields["v6"] = True
            k += 2
            continue
        fields["v6"] = fields.get("v6") or opt == "6"
        brief = brief or opt in ("br", "brief")
        k += 1
    if w.at_bol(k):
        return None
    name = ip_object(w[k])
    if name is None:
        return (None, {}, k + 1) if w[k].isalpha() else None
    if brief and name in ("ip a", "ip link"):
        name = "ip -br a" if name == "ip a" else "ip -br link"
    k += 1
    if w[k] in ("show", "list", "ls", "lst", "sh", "s", "l"):
        k += 1
    elif w[k] in ("get", "g") and name == "ip r":
        name = "ip r get"
        k += 1
        if is_ipv4(w[k]) or is_ipv6(w[k]):
            fields["query"] = w[k]
            k += 1
    elif w[k] and not w.bol[k] and w[k] in ("add", "del", "delete", "replace", "change", "flush", "set", "append"):
        return None, {"input": True}, k  # `ip route add ...`: a change, not a reading
    pairs = {"dev", "table", "type", "proto", "scope", "vrf", "master", "nud", "to", "from", "iif", "oif",
             "mark", "uid", "tos", "ipproto", "sport", "dport", "label", "match", "exact", "root", "lookup",
             "fwmark", "priority", "pref", "group"}
    singles = {"up", "fibmatch", "connected", "cache", "all", "permanent", "proxy", "unused", "dynamic",
               "primary", "secondary"}
    while k < w.n and not w.bol[k]:
        t = w[k]
        if t in pairs and w[k + 1] and not w.bol[k + 1]:
            if t in ("dev", "table"):
                fields[t] = w[k + 1]
            k += 2
        elif t in singles:
            k += 1
        elif t in ("|", "2>/dev/null") or t.startswith(("2>", ">")):
            break
        elif any(c.detect(w, k, NO_HINT) for c in registry.COMMANDS):
            break  # the output starts (squashed text)
        elif name in ("ip a", "ip link", "ip -br a", "ip -br link") and re.match(r"^[\w.@-]+$", t) \
                and "dev" not in fields:
            fields["dev"] = t  # `ip a show eth0`
            k += 1
        elif name in ("ip r", "ip neigh") and (is_dst(t) or t == "default") and \
                not (w[k + 1] in ROUTE_KEYS or w[k + 1] in ("nexthop",) or w[k + 1] in NEIGH_KEYS):
            k += 1  # `ip r show 10.0.0.0/8` selector
        else:
            break
    if name in ("ip a", "ip link", "ip -br a", "ip -br link"):
        fields.pop("dev", None)  # their output names the device anyway
    return name, fields, k


def args_arp(w: Words, k: int) -> ArgsResult:
    letters = ""
    while w[k].startswith("-") and not w.at_bol(k):
        if w[k] in ("-i", "-H", "-t", "--device", "--hw-type"):
            k += 2
            continue
        letters += w[k].lstrip("-")
        k += 1
    if "s" in letters or "d" in letters:
        return None, {}, k
    name = "arp -a" if "a" in letters else "arp -n"
    if w[k] and not w.bol[k] and not detect_arp_a(w, k, NO_HINT) and not detect_arp_n(w, k, NO_HINT) \
            and (is_ipv4(w[k]) or re.match(r"^[\w.-]+$", w[k])) and w[k] != "|":
        k += 1  # arp -a HOST
    return name, {}, k


def args_bridge(w: Words, k: int) -> ArgsResult:
    while w[k].startswith("-") and not w.at_bol(k):
        k += 2 if w[k] in ("-n", "-netns", "-b", "-batch") else 1
    if not (w[k] and "fdb".startswith(w[k])) or w.at_bol(k):
        return (None, {}, k + 1) if w[k].isalpha() and not w.at_bol(k) else None
    k += 1
    fields: dict = {}
    if w[k] in ("show", "list", "ls", "sh", "s"):
        k += 1
    while k < w.n and not w.bol[k]:
        if w[k] in ("dev", "br", "brport", "vlan", "state") and w[k + 1]:
            if w[k] in ("dev", "brport"):
                fields["dev"] = w[k + 1]
            k += 2
        elif w[k] in ("dynamic", "self", "master"):
            k += 1
        else:
            break
    return "bridge fdb", fields, k


def args_iptables_save(tool: str) -> Callable[[Words, int], ArgsResult]:
    def args(w: Words, k: int) -> ArgsResult:
        while w[k].startswith("-") and not w.at_bol(k):
            k += 2 if w[k] in ("-t", "--table", "-M", "--modprobe", "-f", "--file") else 1
        name = "ip6tables-save" if tool.startswith("ip6") else "iptables-save"
        backend = "nft" if "-nft" in tool else "legacy" if "-legacy" in tool else None
        return name, {"backend": backend}, k
    return args


def args_iptables(w: Words, k: int) -> ArgsResult:
    """`iptables [-t T] -S` reads like iptables-save; `-L` is listed, not evaluated; the rest changes rules."""
    table, command, end = None, None, command_end(w, k - 1, NO_HINT)
    j = k
    while j < end and w[j].startswith("-"):
        t = w[j]
        if t in ("-t", "--table") and j + 1 < end:
            table, j = w[j + 1], j + 2
            continue
        if t in ("-S", "--list-rules"):
            command = "iptables-save"
        elif t in ("-L", "--list") or (t[1:2] != "-" and "L" in t):
            command = command or "iptables -L"
        elif t in ("-A", "-I", "-D", "-R", "-P", "-N", "-X", "-F", "-Z", "-E", "--append", "--insert", "--delete",
                   "--policy", "--flush"):
            return None, {"input": True}, end  # a change, not a reading
        j += 1
    if command == "iptables-save":
        while j < end and re.match(r"^[A-Z][\w-]*$", w[j]):
            j += 1  # `iptables -S FORWARD`
        return "iptables-save", {"table": table or "filter"}, j
    if command:
        return command, {}, end
    return None, {}, end


def args_ipvsadm(w: Words, k: int) -> ArgsResult:
    letters, save, other = "", False, False
    while w[k].startswith("-") and not w.at_bol(k):
        t = w[k]
        if t in ("-A", "-a") and w[k + 1] in IPVS_SAVE_SVC:
            break  # the -S output starts
        if t in ("-t", "-u", "-f", "--tcp-service", "--udp-service", "--fwmark-service"):
            k += 2
            continue
        if t.startswith("--"):
            save = save or t == "--save"
            other = other or t in ("--stats", "--rate", "--thresholds", "--connection", "--timeout", "--daemon")
            letters += "L" if t == "--list" else ""
        else:
            letters += t[1:]
        k += 1
    save = save or "S" in letters
    if other or "c" in letters:
        return None, {}, k
    return ("ipvsadm -Sn" if save else "ipvsadm -Ln"), {}, k


def args_sysctl(w: Words, k: int) -> ArgsResult:
    values_only = writes = False
    assigned = 0
    while k < w.n and not w.bol[k]:
        t = w[k]
        if t in ("-p", "--load", "--system", "-w", "--write") or t.startswith("--load="):
            writes = True  # what it prints is what it set: the user's input, not a reading
            k += 2 if t in ("-p", "--load") and w[k + 1].startswith("/") and not w.bol[k + 1] else 1
        elif t in ("-r", "--pattern") and w[k + 1] and not w.bol[k + 1]:
            k += 2
        elif t.startswith("-"):
            # -n / --values print values without keys, -N keys without values: nothing to read
            values_only = values_only or t in ("--values", "--names") or (t[1:2] != "-" and ("n" in t or "N" in t))
            writes = writes or (t[1:2] != "-" and ("w" in t or "p" in t))
            k += 1
        elif _SYSCTL_KEY.match(t) and w[k + 1] != "=":
            k += 1
        elif "=" in t and _SYSCTL_KEY.match(t.partition("=")[0]):
            writes, assigned = True, assigned + 1  # sysctl [-w] key=value
            k += 1
        else:
            break
    if writes:
        return None, {"input": True, "echo": assigned}, k
    return (None if values_only else "sysctl"), {}, k


def args_net_tools(tool: str) -> Callable[[Words, int], ArgsResult]:
    """`ifconfig [-a] [IF]`, `netstat -rn`, `route -n`, `brctl show`; their changing forms are input."""
    def args(w: Words, k: int) -> ArgsResult:
        end = command_end(w, k - 1, NO_HINT)  # its line; squashed, up to the output that follows
        words = w.items[k:end]
        changes = {"ifconfig": {"up", "down", "mtu", "netmask", "hw", "add", "del"}, "route": {"add", "del"},
                   "brctl": {"addbr", "delbr", "addif", "delif"}}.get(tool, set())
        if changes & set(words):
            return None, {"input": True}, end  # `ifconfig eth0 mtu 1400`, `route add ...`: a change
        if tool == "ifconfig":
            j = k
            while j < end and (w[j].startswith("-") or (j == k and re.match(r"^[\w.@-]+$", w[j]))):
                j += 1  # `ifconfig -a`, `ifconfig eth0`: the output starts with "eth0: flags=" or "eth0 Link"
            return "ifconfig", {}, j if j < end and detect_output_start(w, j) else end
        if tool == "brctl":
            return ("brctl show" if words[:1] == ["show"] else None), {}, end
        reads_routes = tool == "route" or any(x.startswith("-") and "r" in x for x in words)
        return ("netstat -rn" if reads_routes else None), {}, end
    return args


def detect_output_start(w: Words, j: int) -> bool:
    return any(c.detect(w, j, NO_HINT) == 2 for c in registry.COMMANDS)


def args_input(w: Words, k: int) -> ArgsResult:
    """`echo 1 > /proc/sys/net/ipv4/ip_forward`, `printf ... | tee FILE`: input, never state."""
    end = command_end(w, k - 1, NO_HINT)
    tee = any(base(t) == "tee" for t in w.items[k:end])
    return None, {"input": True, "echo": 1 if tee else 0}, end


def args_cat(w: Words, k: int) -> ArgsResult:
    path = w[k]
    if path.startswith("/proc/sys/net/") and not w.at_bol(k):
        return "sysctl", {"key": path[len("/proc/sys/"):].replace("/", ".")}, k + 1
    if path.endswith("subnet.env") and not w.at_bol(k):
        return "subnet.env", {}, k + 1  # /run/flannel/subnet.env
    if path.startswith("/etc/") and not w.at_bol(k):
        # /etc/sysctl.conf, /etc/sysctl.d/*: what will be set at boot, not what the kernel holds now
        return None, {"input": True, "echo": -1}, k + 1
    return None


ARGS: dict[str, Callable[[Words, int], ArgsResult]] = {
    "ip": args_ip, "arp": args_arp, "bridge": args_bridge, "ipvsadm": args_ipvsadm, "sysctl": args_sysctl,
    "cat": args_cat, "echo": args_input, "printf": args_input, "tee": args_input,
    **{t: args_net_tools(t) for t in ("ifconfig", "netstat", "route", "brctl")},
    "iptables": args_iptables, "iptables-nft": args_iptables, "iptables-legacy": args_iptables,
    **{t: args_iptables_save(t) for t in ("iptables-save", "iptables-nft-save", "iptables-legacy-save",
                                          "ip6tables-save", "ip6tables-nft-save", "ip6tables-legacy-save")},
}
COMMAND_WORDS = set(ARGS)
