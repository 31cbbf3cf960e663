// SPDX-License-Identifier: GPL-2.0
/* podpath tc programs: one per direction, attached through tcx links (clsact where tcx is
 * missing) on every device of the expected path. They only observe: the verdict is always
 * TC_ACT_UNSPEC (== TCX_NEXT), so the packet continues exactly as without the probe. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "GPL";

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* The cheap pre-check, with direct packet access: 0 when the packet certainly does not match
 * the filter (neither it nor, for VXLAN, its inner packet has matching addresses and protocol),
 * 1 when it may (or when the headers are not in the linear area: then the full parse decides).
 * Production traffic between the two traced pods has their addresses: the protocol (and the
 * inner header of VXLAN) must reject it here, before any helper call. */
static __always_inline int pp_tc_may_match(struct __sk_buff *ctx, __u32 ip_off)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct pp_iphdr *ip = data + ip_off;

	if ((void *)(ip + 1) > end)
		return 1;
	if (pp_hdr_may_match(&pp_cfg, ip->saddr, ip->daddr, ip->protocol))
		return 1;
	if (ip->protocol != PP_IPPROTO_UDP || ip->ver_ihl != 0x45 || (bpf_ntohs(ip->frag_off) & 0x1fff))
		return 0; /* VXLAN from flannel and the kernel never carries IP options */
	__u16 *udp = data + ip_off + 20; /* sport, dport */
	if ((void *)(udp + 2) > end)
		return 1;
	if (udp[1] != bpf_htons(PP_VXLAN_PORT_LINUX) && udp[1] != bpf_htons(PP_VXLAN_PORT_IANA))
		return 0;
	/* UDP (8) + VXLAN (8) + inner Ethernet (14) */
	struct pp_iphdr *inner = data + ip_off + 20 + 30;
	if ((void *)(inner + 1) > end)
		return 1;
	return pp_hdr_may_match(&pp_cfg, inner->saddr, inner->daddr, inner->protocol);
}

static __always_inline int pp_tc(struct __sk_buff *ctx, __u8 point)
{
	struct pp_tuple outer = {}, m = {};
	struct pp_pkt pkt = pp_pkt_tc(ctx);
	__u32 ip_off = 14;
	__u8 f = 0;

	if (!gate_open())
		return PP_TC_ACT_UNSPEC;
	if (ctx->protocol != bpf_htons(PP_ETH_P_IP))
		return PP_TC_ACT_UNSPEC;

	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	if (skb->dev->hard_header_len == 0) {
		ip_off = 0; /* L3 device: the data starts at the IPv4 header */
	} else {
		void *data = (void *)(long)ctx->data;
		void *end = (void *)(long)ctx->data_end;
		__u16 eth_proto;
		if (data + 14 <= end)
			eth_proto = *(__u16 *)(data + 12);
		else if (bpf_skb_load_bytes(ctx, 12, &eth_proto, sizeof(eth_proto)) < 0)
			return PP_TC_ACT_UNSPEC;
		if (eth_proto == bpf_htons(PP_ETH_P_8021Q))
			ip_off = 18;
		else if (eth_proto != bpf_htons(PP_ETH_P_IP))
			return PP_TC_ACT_UNSPEC;
	}

	__u64 addr = (__u64)skb;
	__u64 *seen;
	if (!pp_tc_may_match(ctx, ip_off)) {
		/* Cannot match here, but it may have matched before a NAT rewrite: report it only if
		 * it is tracked (the lookup comes after the cheap checks, never before). */
		seen = pp_lookup_tracked(&addr);
		if (!seen)
			return PP_TC_ACT_UNSPEC;
		f = PP_EV_TRACKED | filter_packet(&pkt, ip_off, &pp_cfg, NULL, &outer, &m);
		goto report;
	}

	f = filter_packet(&pkt, ip_off, &pp_cfg, NULL, &outer, &m);
	seen = pp_lookup_tracked(&addr);
	if (!f && !seen)
		return PP_TC_ACT_UNSPEC;
	if (seen)
		f |= PP_EV_TRACKED;
	else
		pp_track(&addr);

report:;
	struct pp_event *e = pp_new_event(PP_KIND_TC, point, bpf_ktime_get_ns());
	if (!e)
		return PP_TC_ACT_UNSPEC;
	pp_mark_ours(e->ts_ns);
	e->skb = addr;
	e->netns = skb->dev->nd_net.net->ns.inum; /* direct load: skb is a trusted kernel pointer */
	e->ifindex = ctx->ifindex;
	e->mark = ctx->mark;
	e->len = ctx->len;
	e->flags = set_reported_tuple(e, &m, &outer, f);
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
