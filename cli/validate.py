"""Option ranges, checked at the edge: one line that names the option, the value and the range."""

from __future__ import annotations

import math

from podpath.tracer.errors import UsageError

MAX_PORT = 65535
MAX_COUNT = 65535  # the ICMP sequence number is 16 bits
MIN_SIZE, MAX_SIZE = 28, 65535  # an IPv4 header and an ICMP/UDP header; the IPv4 total length field
MAX_TIMEOUT = 3600.0


def port(value: int | None, option: str = "--port") -> int | None:
    if value is not None and not 1 <= value <= MAX_PORT:
        raise UsageError(f"{option} {value} is not a port: give 1..{MAX_PORT}")
    return value


def count(value: int) -> int:
    if not 1 <= value <= MAX_COUNT:
        raise UsageError(f"--count {value} is out of range: give 1..{MAX_COUNT} test packets")
    return value


def size(value: int | None) -> int | None:
    if value is not None and not MIN_SIZE <= value <= MAX_SIZE:
        raise UsageError(f"--size {value} is not an IPv4 packet size: give {MIN_SIZE}..{MAX_SIZE} bytes")
    return value


def timeout(value: float) -> float:
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise UsageError(f"--timeout {value} is out of range: give seconds, more than 0 and at most {MAX_TIMEOUT:g}")
    return value


def flow(*, port_: int | None = None, sport: int | None = None, size_: int | None = None) -> None:
    port(port_)
    port(sport, "--sport")
    size(size_)
