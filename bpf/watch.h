/* SPDX-License-Identifier: GPL-2.0 */
/* podpath watch: the layouts shared by bpf/watch.bpf.c and tracer/watch/kernel.py.
 * Only __u* types and explicit padding, so every byte is a named field on every arch
 * (tests/unit/test_watch_layout.py checks the Python mirrors against the object's BTF). */
#ifndef PODPATH_WATCH_H
#define PODPATH_WATCH_H

#define PW_MAX_KEYS      16384 /* distinct (netns, dev, reason, location, proto, flow) keys */
#define PW_RINGBUF_BYTES (4 << 20)

/* pw_stats indexes (per-CPU array): what was counted without a full event, and why */
#define PW_STAT_SAMPLED       0 /* full events submitted to the ring buffer */
#define PW_STAT_RATE_LIMITED  1 /* drops counted but not sampled (over the per-CPU rate) */
#define PW_STAT_RINGBUF_LOST  2 /* sample wanted, ring buffer full: the event is lost, the drop counted */
#define PW_STAT_FLOW_FOLDED   3 /* key map full: counted under the flowless key of its place */
#define PW_STAT_UNCOUNTED     4 /* even the flowless key could not be inserted */
#define PW_STAT_N             5

/* The aggregation key: where and why a packet died, plus a bounded flow key (IPv4 or IPv6
 * addresses, ports). Folded drops have zero addresses and ports. */
struct pw_key {
	__u32 netns;     /* namespace inode of the device (or the socket when there is no device) */
	__u32 ifindex;
	__u32 reason;    /* enum skb_drop_reason */
	__u16 l3_proto;  /* ethertype, host order (0x0800 IPv4) */
	__u8  l4_proto;  /* IPPROTO_* (0: not IP); IPv6: the first next header */
	__u8  _pad0;
	__u64 location;  /* kernel address that freed the skb */
	__u8  saddr[16]; /* network byte order; IPv4 in the first 4 bytes, the rest zero */
	__u8  daddr[16];
	__u16 sport;     /* host order; ICMP, ICMPv6: type << 8 | code in sport */
	__u16 dport;
	__u32 _pad1;
};

struct pw_val {
	__u64 packets;
	__u64 bytes;
};

/* One sampled drop, in full */
struct pw_event {
	__u64 ts_ns;     /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	struct pw_key key;
	__u32 len;       /* skb->len */
	__u32 mark;
	__u32 cpu;
	__u32 _pad0;
};

/* Set before load (const volatile): the sample rate per CPU, per second (0 = no samples) */
struct pw_config {
	__u32 samples_per_sec;
	__u32 _pad0;
};

/* The per-CPU token bucket of the sampler */
struct pw_bucket {
	__u64 window_start_ns;
	__u64 used;
};

#endif
