// SPDX-License-Identifier: GPL-2.0
/* drop_icmp.bpf.c as a BPF netfilter program: NF_DROP for IPv4 ICMP at the hook its link names.
 * Kernel types from podpath's bpf/vmlinux.h (`make -C bpf` generates it first). libbpf 1.1 does
 * not know SEC("netfilter"): the loader sets BPF_PROG_TYPE_NETFILTER itself. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define NF_DROP 0
#define NF_ACCEPT 1

SEC("netfilter")
int nf_drop_icmp(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	struct iphdr ip;

	if (bpf_probe_read_kernel(&ip, sizeof(ip), skb->head + skb->network_header))
		return NF_ACCEPT;
	return ip.protocol == 1 /* IPPROTO_ICMP */ ? NF_DROP : NF_ACCEPT;
}
