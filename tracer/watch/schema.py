"""The tables `podpath watch` writes (documented in docs/forensics.md). Field names follow the
Hubble flow (node_name, drop_reason_desc, IP source/destination, l4 ports, traffic) and Retis
(skb-drop location, netns) vocabulary where they have one."""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("ns", tz="UTC")

_PLACE = [
    pa.field("node_name", pa.string()),
    pa.field("pod_name", pa.string()),  # null: the node's own namespace
    pa.field("namespace", pa.string()),  # the pod's Kubernetes namespace
    pa.field("netns", pa.uint32()),  # inode
    pa.field("ifindex", pa.uint32()),
    pa.field("interface", pa.string()),
    pa.field("drop_reason_desc", pa.string()),  # enum skb_drop_reason, without SKB_DROP_REASON_
    pa.field("location", pa.uint64()),  # kernel address that freed the skb
    pa.field("location_symbol", pa.string()),  # function+0xoff
    pa.field("ethertype", pa.uint16()),
    pa.field("l4_protocol", pa.string()),  # TCP, UDP, ICMP, or the number
    pa.field("ip_source", pa.string()),
    pa.field("ip_destination", pa.string()),
    pa.field("source_port", pa.uint16()),  # ICMP: type << 8 | code
    pa.field("destination_port", pa.uint16()),
]

SCHEMAS = {
    # exact counts: one row per key that dropped in the interval ending at `time`
    "drops": pa.schema([pa.field("time", TS), pa.field("interval_s", pa.float32()), *_PLACE,
                        pa.field("packets", pa.uint64()), pa.field("bytes", pa.uint64())]),
    # a rate-limited sample of single drops, stamped by the kernel
    "samples": pa.schema([pa.field("time", TS), *_PLACE, pa.field("length", pa.uint32()),
                          pa.field("mark", pa.uint32()), pa.field("cpu", pa.uint32())]),
    # cumulative node counters each second (group: softnet, conntrack, neigh, dev, chain, rule, watch)
    "counters": pa.schema([pa.field("time", TS), pa.field("node_name", pa.string()), pa.field("group", pa.string()),
                           pa.field("name", pa.string()), pa.field("object", pa.string()),
                           pa.field("value", pa.uint64())]),
    # configuration changes (kind: link, route, neigh, fdb, rule, ruleset, netlink)
    "changes": pa.schema([pa.field("time", TS), pa.field("node_name", pa.string()), pa.field("kind", pa.string()),
                          pa.field("action", pa.string()), pa.field("object", pa.string()),
                          pa.field("detail", pa.string())]),
}
