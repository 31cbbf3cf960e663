// SPDX-License-Identifier: GPL-2.0
/* A stand-in for a foreign program on the pod network (another CNI's leftover, a security
 * agent): it drops every IPv4 ICMP packet through the device it is attached to. The lab test
 * (tests/lab/test_programs.py) attaches it to node-b's cni0 egress with `tc` (clsact, section
 * "tc"), with a tcx link, or as XDP (section "xdp"), and checks podpath finds and blames it.
 * nf_drop_icmp.bpf.c is the same as a BPF netfilter link. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

static __always_inline int is_icmp(void *data, void *end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	return ip->protocol == IPPROTO_ICMP;
}

SEC("tc")
int drop_icmp(struct __sk_buff *skb)
{
	return is_icmp((void *)(long)skb->data, (void *)(long)skb->data_end) ? TC_ACT_SHOT : TC_ACT_OK;
}

SEC("xdp")
int xdp_drop_icmp(struct xdp_md *ctx)
{
	return is_icmp((void *)(long)ctx->data, (void *)(long)ctx->data_end) ? XDP_DROP : XDP_PASS;
}

