// SPDX-License-Identifier: GPL-2.0
/* podpath tc programs: one per direction, attached through tcx links (clsact where tcx is
 * missing) on every device of the expected path. They only observe: the verdict is always
 * TC_ACT_UNSPEC (== TCX_NEXT), so the packet continues exactly as without the probe. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include "podpath.h"

char LICENSE[] SEC("license") = "GPL";

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

static __always_inline int pp_tc(struct __sk_buff *ctx, __u8 point)
{
	struct pp_tuple outer = {}, m = {};
	__u32 ip_off = 14;
	__u16 eth_proto = 0;
	__u8 f;

	if (ctx->protocol != bpf_htons(PP_ETH_P_IP))
		return PP_TC_ACT_UNSPEC;

	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	if (BPF_CORE_READ(skb, dev, hard_header_len) == 0) {
		ip_off = 0; /* L3 device: the data starts at the IPv4 header */
	} else {
		if (bpf_skb_load_bytes(ctx, 12, &eth_proto, sizeof(eth_proto)) < 0)
			return PP_TC_ACT_UNSPEC;
		if (eth_proto == bpf_htons(PP_ETH_P_8021Q))
			ip_off = 18;
		else if (eth_proto != bpf_htons(PP_ETH_P_IP))
			return PP_TC_ACT_UNSPEC;
	}

	f = pp_match(ctx, NULL, true, ip_off, &pp_cfg, &outer, &m);
	__u64 addr = (__u64)skb;
	__u64 *seen = bpf_map_lookup_elem(&pp_tracked, &addr);
	if (!f && !seen)
		return PP_TC_ACT_UNSPEC;
	if (seen) {
		f |= PP_EV_TRACKED;
	} else {
		__u64 now = bpf_ktime_get_ns();
		bpf_map_update_elem(&pp_tracked, &addr, &now, BPF_ANY);
	}

	struct pp_event *e = pp_reserve();
	if (!e)
		return PP_TC_ACT_UNSPEC;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->skb = addr;
	e->netns = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	e->ifindex = ctx->ifindex;
	e->mark = ctx->mark;
	e->len = ctx->len;
	e->kind = PP_KIND_TC;
	e->point = point;
	e->cpu = bpf_get_smp_processor_id();
	if (f & PP_EV_MATCHED)
		pp_fill_tuple(e, &m, &outer, f);
	else if (outer.ok) /* tracked, headers no longer match (NAT): report what it carries now */
		pp_fill_tuple(e, &outer, &outer, PP_EV_PARSED), f |= PP_EV_PARSED;
	e->flags = f;
	bpf_ringbuf_submit(e, 0);
	return PP_TC_ACT_UNSPEC;
}

SEC("tc")
int pp_tc_ingress(struct __sk_buff *ctx)
{
	return pp_tc(ctx, PP_POINT_INGRESS);
}

SEC("tc")
int pp_tc_egress(struct __sk_buff *ctx)
{
	return pp_tc(ctx, PP_POINT_EGRESS);
}
