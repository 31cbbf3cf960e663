"""DNS from a pod's point of view: its resolv.conf, the names its resolver tries, and a traced lookup."""

from .lookup import Attempt, DnsResult, lookup
from .resolv import ResolvConf, candidates, parse_resolv_conf

__all__ = ["lookup", "DnsResult", "Attempt", "ResolvConf", "parse_resolv_conf", "candidates"]
