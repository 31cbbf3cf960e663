// SPDX-License-Identifier: GPL-2.0
/* podpath tracepoint programs (tp_btf: BTF-typed raw tracepoints, no kprobes needed), and the
 * BPF netfilter programs. Their arguments are BTF-typed pointers: kernel fields are read by direct
 * loads (CO-RE relocated, faults handled by the verifier's exception table), several times
 * cheaper than bpf_probe_read_kernel per field; only packet bytes go through the helper. They
 * share the tc object's maps (the loader reuses their fds). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Where the IPv4 header starts: the network header, or skb->data where the network header is
 * not set yet (net:netif_receive_skb fires before skb_reset_network_header). */
enum pp_nh {
	PP_NH_NETWORK = 0,
	PP_NH_DATA = 1,
};

/* One skb probe site: what its events say and how it treats the skb. Each probe passes it as a
 * compound literal with designated initializers, so every argument is named at the call and folds
 * to a constant once pp_trace is inlined. */
struct pp_skb_site {
	__u8 kind;           /* enum pp_kind */
	__u8 point;          /* enum pp_point, or the netfilter hook */
	bool match;          /* match an untracked skb's headers against the filter (else: follow
			      * tracked skbs only) */
	bool end_of_life;    /* the skb is freed here: stop tracking it, never start */
	enum pp_nh nh;       /* where its IPv4 header starts */
	__s32 nf_bracket;    /* netfilter: the bracket (program) index, reported as nf_prio */
	__u64 location;      /* kfree_skb/consume_skb: the caller */
	__u32 reason;        /* kfree_skb: enum skb_drop_reason */
};

/* The event's device and its namespace; false when there is no device. */
static __always_inline bool set_dev(struct pp_event *e, struct net_device *dev)
{
	if (!dev)
		return false;
	e->ifindex = dev->ifindex;
	e->netns = dev->nd_net.net->ns.inum;
	return true;
}

/* The IPv4 header's offset from skb->head, or -1 when the skb has none that we could read. */
static __always_inline long get_ip_offset(struct sk_buff *skb, enum pp_nh nh)
{
	__u32 off;

	if (skb->protocol != bpf_htons(PP_ETH_P_IP))
		return -1;
	if (nh == PP_NH_DATA)
		off = (__u32)(skb->data - skb->head);
	else
		off = skb->network_header;
	if (off == 0xffff || off >= 0x10000)
		return -1;
	return off;
}

/* Start or stop following the skb; the flags gain PP_EV_TRACKED when it was followed already. */
static __always_inline __u8 set_tracking(__u64 *addr, bool seen, const struct pp_skb_site *site, __u8 f)
{
	if (seen) {
		if (site->end_of_life)
			pp_untrack(addr);
		return f | PP_EV_TRACKED;
	}
	if (!site->end_of_life)
		pp_track(addr);
	return f;
}

static __always_inline int pp_trace(struct sk_buff *skb, const struct pp_skb_site *site)
{
	struct pp_tuple outer = {}, m = {};
	__u64 addr = (__u64)skb;
	if (!gate_open())
		return 0;
	__u64 *seen = pp_lookup_tracked(&addr);
	__u8 f = 0;

	if (!seen && !site->match)
		return 0;

	long off = get_ip_offset(skb, site->nh);
	if (off >= 0) {
		struct pp_pkt pkt = pp_pkt_kernel(skb->head);
		/* a tracked skb is reported whatever it carries: no pre-check */
		f = filter_packet(&pkt, off, &pp_cfg, seen ? NULL : &pp_cfg, &outer, &m);
	}

	if (!seen && !(f & PP_EV_MATCHED))
		return 0;
	f = set_tracking(&addr, seen, site, f);

	struct pp_event *e = pp_new_event(site->kind, site->point, bpf_ktime_get_ns());
	if (!e)
		return 0;
	pp_mark_ours(e->ts_ns);
	e->skb = addr;
	e->location = site->location;
	e->reason = site->reason;
	if (!set_dev(e, skb->dev)) /* rare: no device */
		e->netns = BPF_CORE_READ(skb, sk, __sk_common.skc_net.net, ns.inum);
	e->mark = skb->mark;
	e->len = skb->len;
	e->nf_prio = site->nf_bracket;
	e->flags = set_reported_tuple(e, &m, &outer, f);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(pp_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	/* a drop of an skb no probe saw before still matters: it may be the first and only event */
	return pp_trace(skb, &(struct pp_skb_site){
		.kind = PP_KIND_KFREE_SKB, .location = (__u64)location, .reason = (__u32)reason,
		.match = true, .end_of_life = true, .nh = PP_NH_NETWORK,
	});
}

SEC("tp_btf/consume_skb")
int BPF_PROG(pp_consume_skb, struct sk_buff *skb, void *location)
{
	return pp_trace(skb, &(struct pp_skb_site){
		.kind = PP_KIND_CONSUME_SKB, .location = (__u64)location,
		.match = false, .end_of_life = true, .nh = PP_NH_NETWORK,
	});
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(pp_netif_rcv, struct sk_buff *skb)
{
	return pp_trace(skb, &(struct pp_skb_site){
		.kind = PP_KIND_NETIF_RECEIVE_SKB, .point = PP_POINT_INGRESS,
		.match = false, .end_of_life = false, .nh = PP_NH_DATA,
	});
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(pp_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return pp_trace(skb, &(struct pp_skb_site){
		.kind = PP_KIND_NET_DEV_START_XMIT, .point = PP_POINT_EGRESS,
		.match = false, .end_of_life = false, .nh = PP_NH_NETWORK,
	});
}

/* fib:fib_table_lookup has no skb. A lookup is ours when it follows one of our packet events on
 * the same CPU (pp_recent_ours: input routing, forwarding, the reverse-path check) or when
 * pp_fib_may_match says it is a socket's output lookup for our flow.
 * Other traffic between the same two pods — every forwarded packet is looked up — is skipped. */
SEC("tp_btf/fib_table_lookup")
int BPF_PROG(pp_fib, u32 tb_id, const struct flowi4 *flp, const struct fib_nh_common *nhc, int err)
{
	if (!gate_open())
		return 0;
	/* cheapest test first: input lookups carry no protocol, so other traffic fails it at once */
	__u8 proto = flp->__fl_common.flowic_proto;
	__u64 now = bpf_ktime_get_ns();
	if (!pp_proto_may_match(&pp_cfg, proto) && !pp_recent_ours(now))
		return 0;
	__u32 s = flp->saddr, d = flp->daddr;
	if (!pp_recent_ours(now) && !pp_fib_may_match(&pp_cfg, s, d, proto))
		return 0;
	struct pp_event *e = pp_new_event(PP_KIND_FIB, 0, now);
	if (!e)
		return 0;
	e->saddr = s;
	e->daddr = d;
	e->proto = flp->__fl_common.flowic_proto;
	/* MATCHED: the flow's addresses (REPLY: swapped); neither: a lookup for our packet's outer
	 * (VXLAN) header, tied to it by pp_recent_ours */
	if ((s == 0 || filter_saddr(&pp_cfg, s)) && filter_daddr(&pp_cfg, d))
		e->flags = PP_EV_PARSED | PP_EV_MATCHED;
	else if (filter_saddr(&pp_cfg, d) && filter_daddr(&pp_cfg, s))
		e->flags = PP_EV_PARSED | PP_EV_MATCHED | PP_EV_REPLY;
	else
		e->flags = PP_EV_PARSED;
	e->fib_table = tb_id;
	e->fib_err = err;
	e->reason = flp->__fl_common.flowic_iif; /* the input device (0: a local socket) */
	if (nhc && !err) {
		if (nhc->nhc_gw_family == 2 /* AF_INET */)
			e->fib_gw = nhc->nhc_gw.ipv4;
		set_dev(e, nhc->nhc_dev);
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* neigh:*: only the neighbours the planned path resolves (pp_cfg.neigh_addrs). */
static __always_inline bool filter_neigh(const volatile struct pp_config *c, __u32 addr)
{
	if (!addr)
		return false;
#pragma unroll
	for (int i = 0; i < PP_NEIGH_ADDRS; i++)
		if (c->neigh_addrs[i] == addr)
			return true;
	return false;
}

static __always_inline int pp_neigh(const struct neighbour *n, __u8 point, int err)
{
	__u32 addr = 0;

	if (!gate_open())
		return 0;
	if (n->tbl->family != 2 /* AF_INET */)
		return 0;
	bpf_probe_read_kernel(&addr, sizeof(addr), (const void *)n + bpf_core_field_offset(struct neighbour, primary_key));
	if (!filter_neigh(&pp_cfg, addr))
		return 0;
	struct pp_event *e = pp_new_event(PP_KIND_NEIGH, point, bpf_ktime_get_ns());
	if (!e)
		return 0;
	e->daddr = addr;
	e->flags = PP_EV_PARSED;
	e->reason = (__u32)err;
	e->nud_state = n->nud_state;
	set_dev(e, n->dev);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/neigh_create")
int BPF_PROG(pp_neigh_create, struct neigh_table *tbl, struct net_device *dev, const void *pkey,
	     const struct neighbour *n, bool exempt_from_gc)
{
	return pp_neigh(n, PP_NEIGH_CREATE, 0);
}

SEC("tp_btf/neigh_update")
int BPF_PROG(pp_neigh_update, struct neighbour *n, const u8 *lladdr, u8 new, u32 flags, u32 nlmsg_pid)
{
	return pp_neigh(n, PP_NEIGH_UPDATE, new);
}

SEC("tp_btf/neigh_timer_handler")
int BPF_PROG(pp_neigh_timer, struct neighbour *n, int err)
{
	return pp_neigh(n, PP_NEIGH_TIMER, err);
}

SEC("tp_btf/neigh_event_send_dead")
int BPF_PROG(pp_neigh_dead, struct neighbour *n, int err)
{
	return pp_neigh(n, PP_NEIGH_SEND_DEAD, err);
}

/* BPF netfilter link programs: libbpf 1.1 does not know SEC("netfilter"); the loader sets the
 * program type (BPF_PROG_TYPE_NETFILTER) and attach type (BPF_NETFILTER) itself.
 *
 * A link's priority is not visible to its program, so there is one program per bracket: the
 * loader attaches pp_nf_<i> at the i-th priority of a hook (the start, just before each table
 * that has a base chain there, the end), and the event's nf_prio carries i. Which brackets a
 * packet passed tells which hook and which table took it. They follow skbs a tc probe (or
 * pp_nf_m0) tracked, which keeps them cheap for all other traffic and follows the packet through
 * NAT; only pp_nf_m0 matches headers. They always accept. */
enum pp_nf_role {
	PP_NF_FOLLOW = 0, /* report skbs already tracked */
	PP_NF_MATCH = 1,  /* also match untracked skbs against the filter */
};

static __always_inline int pp_nf_bracket(struct bpf_nf_ctx *ctx, __s32 bracket, enum pp_nf_role role)
{
	bool match = role == PP_NF_MATCH;

	if (!gate_open())
		return 1; /* NF_ACCEPT */
	if (!match && !pp_any_tracked())
		return 1; /* NF_ACCEPT: nothing of ours in flight, the cheapest exit */
	struct sk_buff *skb = ctx->skb;
	__u8 hook = ctx->state->hook;

	pp_trace(skb, &(struct pp_skb_site){
		.kind = PP_KIND_NETFILTER, .point = hook, .nf_bracket = bracket,
		.match = match, .end_of_life = false, .nh = PP_NH_NETWORK,
	});
	return 1; /* NF_ACCEPT */
}

#define PP_NF_PROG(i) \
	SEC("netfilter") int pp_nf_##i(struct bpf_nf_ctx *ctx) { return pp_nf_bracket(ctx, i, PP_NF_FOLLOW); }

PP_NF_PROG(0)
PP_NF_PROG(1)
PP_NF_PROG(2)
PP_NF_PROG(3)
PP_NF_PROG(4)
PP_NF_PROG(5)
PP_NF_PROG(6)
PP_NF_PROG(7)

/* The start of a hook in the namespaces where the trace's packets are created (the end pods): it
 * matches the filter, because locally generated packets meet OUTPUT before any tc probe. */
SEC("netfilter")
int pp_nf_m0(struct bpf_nf_ctx *ctx)
{
	return pp_nf_bracket(ctx, 0, PP_NF_MATCH);
}
