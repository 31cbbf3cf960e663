"""Small value helpers shared by the iptables and nftables parsers and the evaluator.

Addresses are handled as 32-bit ints once parsed, because the evaluator compares them for
every rule of every hook and int arithmetic is an order of magnitude faster than `ipaddress`.
"""

from __future__ import annotations

import contextlib
import gc

import socket

MASK32 = 0xFFFFFFFF

# IP protocol numbers by the names iptables-save and nft print.
PROTO_NUMBERS: dict[str, int] = {
    "icmp": 1,
    "igmp": 2,
    "ipip": 4,
    "tcp": 6,
    "udp": 17,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "ipv6-icmp": 58,
    "icmpv6": 58,
    "sctp": 132,
    "udplite": 136,
}

# Protocols whose header carries 16-bit source/destination ports at offset 0.
PORT_PROTOS = frozenset({6, 17, 132, 136})

# ICMP type names (iptables --icmp-type and nft `icmp type`) -> (type, code or None).
ICMP_TYPES: dict[str, tuple[int, int | None]] = {
    "any": (255, None),
    "echo-reply": (0, None),
    "pong": (0, None),
    "destination-unreachable": (3, None),
    "network-unreachable": (3, 0),
    "host-unreachable": (3, 1),
    "protocol-unreachable": (3, 2),
    "port-unreachable": (3, 3),
    "fragmentation-needed": (3, 4),
    "source-route-failed": (3, 5),
    "network-unknown": (3, 6),
    "host-unknown": (3, 7),
    "network-prohibited": (3, 9),
    "host-prohibited": (3, 10),
    "TOS-network-unreachable": (3, 11),
    "TOS-host-unreachable": (3, 12),
    "communication-prohibited": (3, 13),
    "host-precedence-violation": (3, 14),
    "precedence-cutoff": (3, 15),
    "source-quench": (4, None),
    "redirect": (5, None),
    "echo-request": (8, None),
    "ping": (8, None),
    "router-advertisement": (9, None),
    "router-solicitation": (10, None),
    "time-exceeded": (11, None),
    "ttl-exceeded": (11, None),
    "parameter-problem": (12, None),
    "timestamp-request": (13, None),
    "timestamp-reply": (14, None),
    "info-request": (15, None),
    "info-reply": (16, None),
    "address-mask-request": (17, None),
    "address-mask-reply": (18, None),
}

# Well-known service names iptables/nft may print instead of numbers.
SERVICES: dict[str, int] = {
    "ssh": 22,
    "domain": 53,
    "http": 80,
    "https": 443,
    "ntp": 123,
    "bootps": 67,
    "bootpc": 68,
    "smtp": 25,
}


def ip_to_int(text: str) -> int:
    """Dotted IPv4 -> int; raises ValueError for anything else (hostnames, IPv6, junk)."""
    if not text or not text[0].isdigit() or text.count(".") != 3:
        raise ValueError(f"not an IPv4 address: {text!r}")
    try:
        return int.from_bytes(socket.inet_aton(text), "big")
    except OSError:
        raise ValueError(f"not an IPv4 address: {text!r}") from None


def int_to_ip(value: int) -> str:
    return socket.inet_ntoa(value.to_bytes(4, "big"))


def prefix_mask(length: int) -> int:
    if not 0 <= length <= 32:
        raise ValueError(f"prefix length {length} out of range")
    return (MASK32 << (32 - length)) & MASK32


def parse_net(text: str) -> tuple[int, int]:
    """`a.b.c.d`, `a.b.c.d/len` or `a.b.c.d/m.m.m.m` -> (network, mask) as ints."""
    addr, sep, mask_text = text.partition("/")
    net = ip_to_int(addr)
    if not sep:
        mask = MASK32
    elif mask_text.isdigit():
        mask = prefix_mask(int(mask_text))
    else:
        mask = ip_to_int(mask_text)
    return net & mask, mask


def net_text(net: int, mask: int) -> str:
    """(network, mask) -> the text iptables-save prints (`/len`, or a dotted mask if not contiguous)."""
    inverted = ~mask & MASK32
    if inverted & (inverted + 1) == 0:
        return f"{int_to_ip(net)}/{32 - inverted.bit_length()}"
    return f"{int_to_ip(net)}/{int_to_ip(mask)}"


def parse_number(text: str) -> int:
    """Decimal or 0x-hex, as iptables prints marks and masks."""
    return int(text, 0) if text.lower().startswith("0x") else int(text)


def parse_port(text: str) -> int:
    if text.isdigit():
        port = int(text)
    elif text in SERVICES:
        port = SERVICES[text]
    else:
        raise ValueError(f"bad port {text!r}")
    if port > 65535:
        raise ValueError(f"port {port} out of range")
    return port


def parse_port_range(text: str, sep: str = ":") -> tuple[int, int]:
    """`80`, `80:90`, `:90`, `80:` (iptables) -> inclusive (low, high)."""
    if sep in text:
        lo, _, hi = text.partition(sep)
        low = parse_port(lo) if lo else 0
        high = parse_port(hi) if hi else 65535
        if low > high:
            raise ValueError(f"bad port range {text!r}")
        return low, high
    port = parse_port(text)
    return port, port


def parse_value_mask(text: str) -> tuple[int, int]:
    """`0x4000/0x4000` or `0x4000` (mask all ones) -> (value, mask)."""
    value, sep, mask = text.partition("/")
    return parse_number(value), parse_number(mask) if sep else MASK32


def iface_matches(pattern: str, name: str) -> bool:
    """iptables `eth+` / nft `eth*` wildcard: a trailing `+` or `*` matches any suffix."""
    if pattern.endswith(("+", "*")) and not pattern.endswith("\\*"):
        return name.startswith(pattern[:-1])
    return name == pattern.replace("\\*", "*")


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while building many small acyclic objects (a big node's
    rules: 80,000 lines, 30,000 chains), where its repeated passes cost more than the work."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
