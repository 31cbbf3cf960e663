// SPDX-License-Identifier: GPL-2.0
/* podpath watch: every kfree_skb drop counted exactly in a per-CPU hash (no sampling, no ring
 * buffer on the counting path), and a rate-limited sample of full events through a ring buffer,
 * with every event that could not be sampled or submitted counted in pw_stats. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "watch.h"

char LICENSE[] SEC("license") = "GPL";

const volatile struct pw_config pw_cfg = {};
/* never read: keeps struct pw_event in the object's BTF (it only travels through the ring buffer),
 * so tests/unit/test_watch_layout.py can check the Python mirror against it */
const volatile struct pw_event pw_event_layout = {};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, PW_MAX_KEYS);
	__type(key, struct pw_key);
	__type(value, struct pw_val);
} pw_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PW_STAT_N);
	__type(key, __u32);
	__type(value, __u64);
} pw_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pw_bucket);
} pw_bucket SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PW_RINGBUF_BYTES);
} pw_events SEC(".maps");

static __always_inline void pw_stat(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&pw_stats, &i);
	if (v)
		*v += 1; /* per-CPU: no other writer */
}

/* Add one packet to key's per-CPU value; false if the map is full. */
static __always_inline bool pw_count(struct pw_key *k, __u32 len)
{
	struct pw_val *v = bpf_map_lookup_elem(&pw_drops, k);
	if (v) {
		v->packets += 1;
		v->bytes += len;
		return true;
	}
	struct pw_val one = {.packets = 1, .bytes = len};
	long r = bpf_map_update_elem(&pw_drops, k, &one, BPF_NOEXIST);
	if (r == 0)
		return true;
	/* -EEXIST: a nested drop on this CPU (an interrupt) created it between lookup and update */
	v = bpf_map_lookup_elem(&pw_drops, k);
	if (v) {
		v->packets += 1;
		v->bytes += len;
		return true;
	}
	return false;
}

static __always_inline bool pw_take_token(__u64 now)
{
	__u32 zero = 0;
	struct pw_bucket *b = bpf_map_lookup_elem(&pw_bucket, &zero);
	if (!b || pw_cfg.samples_per_sec == 0)
		return false;
	if (now - b->window_start_ns >= 1000000000ULL) {
		b->window_start_ns = now;
		b->used = 0;
	}
	if (b->used >= pw_cfg.samples_per_sec)
		return false;
	b->used += 1;
	return true;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(pw_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	struct pw_key k = {};
	struct net_device *dev = skb->dev;

	k.reason = (__u32)reason;
	k.location = (__u64)location;
	if (dev) {
		k.ifindex = dev->ifindex;
		k.netns = dev->nd_net.net->ns.inum;
	} else {
		k.netns = BPF_CORE_READ(skb, sk, __sk_common.skc_net.net, ns.inum);
	}
	k.l3_proto = bpf_ntohs(skb->protocol);

	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	__u32 l4 = 0;
	if (k.l3_proto == 0x0800 && nh != 0xffff) {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh) == 0 && ip.version == 4) {
			k.l4_proto = ip.protocol;
			__builtin_memcpy(k.saddr, &ip.saddr, 4);
			__builtin_memcpy(k.daddr, &ip.daddr, 4);
			l4 = nh + ip.ihl * 4;
		}
	} else if (k.l3_proto == 0x86DD && nh != 0xffff) {
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh) == 0 && ip6.version == 6) {
			/* the first next header: a flow behind extension headers is keyed by addresses only */
			k.l4_proto = ip6.nexthdr;
			__builtin_memcpy(k.saddr, &ip6.saddr, 16);
			__builtin_memcpy(k.daddr, &ip6.daddr, 16);
			l4 = nh + sizeof(ip6);
		}
	}
	if (l4) {
		if (k.l4_proto == IPPROTO_TCP || k.l4_proto == IPPROTO_UDP) {
			__be16 ports[2];
			if (bpf_probe_read_kernel(ports, sizeof(ports), head + l4) == 0) {
				k.sport = bpf_ntohs(ports[0]);
				k.dport = bpf_ntohs(ports[1]);
			}
		} else if (k.l4_proto == IPPROTO_ICMP || k.l4_proto == 58 /* IPPROTO_ICMPV6, a macro vmlinux.h lacks */) {
			__u8 tc[2];
			if (bpf_probe_read_kernel(tc, sizeof(tc), head + l4) == 0)
				k.sport = (__u16)tc[0] << 8 | tc[1];
		}
	}

	__u32 len = skb->len;
	if (!pw_count(&k, len)) {
		/* bounded: a full map folds the flow away and still counts the drop at its place */
		pw_stat(PW_STAT_FLOW_FOLDED);
		__builtin_memset(k.saddr, 0, sizeof(k.saddr));
		__builtin_memset(k.daddr, 0, sizeof(k.daddr));
		k.sport = k.dport = 0;
		if (!pw_count(&k, len))
			pw_stat(PW_STAT_UNCOUNTED);
	}

	__u64 now = bpf_ktime_get_ns();
	if (!pw_take_token(now)) {
		pw_stat(PW_STAT_RATE_LIMITED);
		return 0;
	}
	struct pw_event *e = bpf_ringbuf_reserve(&pw_events, sizeof(*e), 0);
	if (!e) {
		pw_stat(PW_STAT_RINGBUF_LOST);
		return 0;
	}
	e->ts_ns = now;
	e->key = k;
	e->len = len;
	e->mark = skb->mark;
	e->cpu = bpf_get_smp_processor_id();
	e->_pad0 = 0;
	bpf_ringbuf_submit(e, 0);
	pw_stat(PW_STAT_SAMPLED);
	return 0;
}
