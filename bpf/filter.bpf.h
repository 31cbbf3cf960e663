/* podpath, BPF side only: packet parsing and the filter, shared by tc.bpf.c, trace.bpf.c and
 * filter_check.bpf.c (the test program that holds pp_addrs_may_match to filter()).
 *
 * Needs vmlinux.h, bpf_helpers.h and bpf_endian.h included first. Defines no maps and no
 * globals: what includes it pays only for what it calls.
 */
#ifndef PODPATH_FILTER_BPF_H
#define PODPATH_FILTER_BPF_H

#include "podpath.h"

#define PP_ETH_P_IP     0x0800
#define PP_ETH_P_8021Q  0x8100
#define PP_IPPROTO_ICMP 1
#define PP_IPPROTO_TCP  6
#define PP_IPPROTO_UDP  17
#define PP_VXLAN_PORT_LINUX 8472
#define PP_VXLAN_PORT_IANA  4789
#define PP_TC_ACT_UNSPEC (-1)

/* Parsed headers of one IPv4 packet. */
struct pp_tuple {
	__u32 saddr, daddr, tcp_seq;
	__u16 sport, dport, ip_id, icmp_id, icmp_seq;
	__u8 proto, icmp_type, ttl, ok;
	__u32 l4_off; /* offset of the L4 header from the IPv4 header */
};

struct pp_iphdr {
	__u8 ver_ihl, tos;
	__u16 tot_len, id, frag_off;
	__u8 ttl, protocol;
	__u16 check;
	__u32 saddr, daddr;
};

/* Where a program reads its packet: the tc context (bpf_skb_load_bytes, direct packet access), or
 * kernel memory at an skb's head (tracing programs, bpf_probe_read_kernel). Each program builds
 * one kind as a constant, so the compiler keeps one branch of get_bytes(). */
struct pp_pkt {
	bool in_tc;           /* a constant: the compiler cannot tell a context pointer is not NULL */
	struct __sk_buff *tc; /* the tc context */
	const void *head;     /* tracing: the skb's head */
};

static __always_inline struct pp_pkt pp_pkt_tc(struct __sk_buff *ctx)
{ return (struct pp_pkt){ .in_tc = true, .tc = ctx }; }
static __always_inline struct pp_pkt pp_pkt_kernel(const void *head)
{ return (struct pp_pkt){ .in_tc = false, .head = head }; }

static __always_inline bool filter_saddr(const volatile struct pp_config *c, __u32 s)
{ return !(c->flags & PP_F_SADDR) || c->saddr == s; }
static __always_inline bool filter_daddr(const volatile struct pp_config *c, __u32 d)
{ return !(c->flags & PP_F_DADDR) || c->daddr == d; }
static __always_inline bool filter_proto(const volatile struct pp_config *c, __u8 p)
{ return !(c->flags & PP_F_PROTO) || c->proto == p; }
static __always_inline bool filter_sport(const volatile struct pp_config *c, __u16 p)
{ return !(c->flags & PP_F_SPORT) || c->sport == p; }
static __always_inline bool filter_dport(const volatile struct pp_config *c, __u16 p)
{ return !(c->flags & PP_F_DPORT) || c->dport == p; }
static __always_inline bool filter_ip_id(const volatile struct pp_config *c, __u16 id)
{ return !(c->flags & PP_F_IP_ID) || c->ip_id == id; }
static __always_inline bool filter_icmp_id(const volatile struct pp_config *c, const struct pp_tuple *t)
{ return !(c->flags & PP_F_ICMP_ID) || (t->proto == PP_IPPROTO_ICMP && c->icmp_id == t->icmp_id); }

/* 0: no match; PP_EV_MATCHED: forward direction; PP_EV_MATCHED|PP_EV_REPLY: the reply. */
static __always_inline __u8 filter(const volatile struct pp_config *c, const struct pp_tuple *t)
{
	if (!t->ok)
		return 0;
	if (c->flags & PP_F_ALL)
		return PP_EV_MATCHED;
	if (!filter_proto(c, t->proto) || !filter_icmp_id(c, t))
		return 0;
	if (filter_saddr(c, t->saddr) && filter_daddr(c, t->daddr) &&
	    filter_sport(c, t->sport) && filter_dport(c, t->dport) && filter_ip_id(c, t->ip_id))
		return PP_EV_MATCHED;
	/* The reply: addresses and ports swapped; the IP id differs, the ICMP id is the same. */
	if ((c->flags & PP_F_BIDIR) && filter_saddr(c, t->daddr) && filter_daddr(c, t->saddr) &&
	    filter_sport(c, t->dport) && filter_dport(c, t->sport))
		return PP_EV_MATCHED | PP_EV_REPLY;
	/* A DNATed flow (a Service): after the nat table the request goes to an endpoint, and its
	 * reply comes from there, not from the address we sent to. Our source address and our own
	 * (bound, unique) source port identify both, whatever the other end became. */
	if ((c->flags & PP_F_SPORT) && (c->flags & PP_F_SADDR)) {
		if (c->saddr == t->saddr && c->sport == t->sport)
			return PP_EV_MATCHED;
		if ((c->flags & PP_F_BIDIR) && c->saddr == t->daddr && c->sport == t->dport)
			return PP_EV_MATCHED | PP_EV_REPLY;
	}
	return 0;
}

/* Could a packet with these addresses match the filter (either direction with BIDIR)? The cheap
 * pre-check before the L4 header is read: it must stay a superset of filter() (whatever filter()
 * matches, this lets through), which tests/lab/test_filter_superset.py checks. */
static __always_inline bool pp_addrs_may_match(const volatile struct pp_config *c, __u32 s, __u32 d)
{
	if (c->flags & PP_F_ALL)
		return true;
	if (filter_saddr(c, s) && filter_daddr(c, d))
		return true;
	if ((c->flags & PP_F_SPORT) && (c->flags & PP_F_SADDR) && (c->saddr == s || c->saddr == d))
		return true; /* maybe a DNATed flow, either way (filter() checks the port) */
	return (c->flags & PP_F_BIDIR) && filter_saddr(c, d) && filter_daddr(c, s);
}

/* The protocol part of every pre-check. PP_F_ALL first: filter() takes every packet then,
 * whatever protocol the config also names. */
static __always_inline bool pp_proto_may_match(const volatile struct pp_config *c, __u8 proto)
{
	return (c->flags & PP_F_ALL) || filter_proto(c, proto);
}

/* The pre-check every caller makes on an IPv4 header: addresses and the protocol. */
static __always_inline bool pp_hdr_may_match(const volatile struct pp_config *c, __u32 s, __u32 d, __u8 proto)
{
	return pp_proto_may_match(c, proto) && pp_addrs_may_match(c, s, d);
}

/* A route lookup (fib:fib_table_lookup) not tied to one of our packet events: is it a socket's
 * output lookup for our flow? It carries addresses and the protocol (output lookups set it), no
 * ports: a DNATed flow's lookups are ours only by following its packet events (pp_recent_ours).
 * It must let through every packet filter() matches by its addresses, which
 * tests/lab/test_filter_superset.py checks. */
static __always_inline bool pp_fib_may_match(const volatile struct pp_config *c, __u32 s, __u32 d, __u8 proto)
{
	if (!pp_proto_may_match(c, proto)) /* what pp_fib tests first, the cheapest */
		return false;
	if (c->flags & PP_F_ALL)
		return true;
	/* a socket's lookup before it has a source address has saddr 0 */
	if ((s == 0 || filter_saddr(c, s)) && filter_daddr(c, d))
		return true;
	return (c->flags & PP_F_BIDIR) && (s == 0 || filter_saddr(c, d)) && filter_daddr(c, s);
}

/* Read len bytes at off. In tc: direct packet access when the bytes are in the linear area,
 * else the helper. */
static __always_inline int get_bytes(const struct pp_pkt *p, __u32 off, void *dst, __u32 len)
{
	if (p->in_tc) {
		struct __sk_buff *skb = p->tc;
		void *data = (void *)(long)skb->data;
		void *end = (void *)(long)skb->data_end;
		if (off < 512 && data + off + len <= end) {
			__builtin_memcpy(dst, data + off, len);
			return 0;
		}
		return bpf_skb_load_bytes(skb, off, dst, len);
	}
	return bpf_probe_read_kernel(dst, len, p->head + off);
}

/* Parse the IPv4 header at ip_off and its TCP/UDP/ICMP header.
 * precheck (a filter, or NULL): skip reading the L4 header of a packet that cannot match it and
 * cannot be VXLAN (not UDP) — the common case for all other traffic, one read instead of two. */
static __always_inline int get_tuple(const struct pp_pkt *p, __u32 ip_off, struct pp_tuple *t,
				     const volatile struct pp_config *precheck)
{
	struct pp_iphdr ip;

	t->ok = 0;
	if (get_bytes(p, ip_off, &ip, sizeof(ip)) < 0)
		return -1;
	if ((ip.ver_ihl >> 4) != 4)
		return -1;
	__u32 ihl = (ip.ver_ihl & 0xf) * 4;
	if (ihl < 20)
		return -1;
	t->saddr = ip.saddr;
	t->daddr = ip.daddr;
	t->proto = ip.protocol;
	t->ip_id = bpf_ntohs(ip.id);
	t->ttl = ip.ttl;
	t->sport = t->dport = t->icmp_id = t->icmp_seq = 0;
	t->icmp_type = 0;
	t->tcp_seq = 0;
	t->l4_off = ip_off + ihl;
	t->ok = 1;
	if (precheck && ip.protocol != PP_IPPROTO_UDP &&
	    !pp_hdr_may_match(precheck, ip.saddr, ip.daddr, ip.protocol))
		return 0;
	if (bpf_ntohs(ip.frag_off) & 0x1fff) /* a non-first fragment has no L4 header */
		return 0;
	if (ip.protocol == PP_IPPROTO_TCP) {
		struct { __u16 sport, dport; __u32 seq; } th;
		if (get_bytes(p, t->l4_off, &th, sizeof(th)) == 0) {
			t->sport = bpf_ntohs(th.sport);
			t->dport = bpf_ntohs(th.dport);
			t->tcp_seq = bpf_ntohl(th.seq);
		}
	} else if (ip.protocol == PP_IPPROTO_UDP) {
		struct { __u16 sport, dport; } uh;
		if (get_bytes(p, t->l4_off, &uh, sizeof(uh)) == 0) {
			t->sport = bpf_ntohs(uh.sport);
			t->dport = bpf_ntohs(uh.dport);
		}
	} else if (ip.protocol == PP_IPPROTO_ICMP) {
		struct { __u8 type, code; __u16 csum, id, seq; } ih;
		if (get_bytes(p, t->l4_off, &ih, sizeof(ih)) == 0) {
			t->icmp_type = ih.type;
			if (ih.type == 0 || ih.type == 8) { /* echo reply / request */
				t->icmp_id = bpf_ntohs(ih.id);
				t->icmp_seq = bpf_ntohs(ih.seq);
			}
		}
	}
	return 0;
}

static __always_inline bool pp_is_vxlan(const struct pp_tuple *t)
{
	return t->ok && t->proto == PP_IPPROTO_UDP &&
	       (t->dport == PP_VXLAN_PORT_LINUX || t->dport == PP_VXLAN_PORT_IANA);
}

/* Match the outer packet, then (for VXLAN) the inner one. Fills *m with the matched tuple and
 * returns PP_EV_* flags (0: nothing matched). outer receives the outer tuple. precheck: as for
 * get_tuple() (cfg, or NULL to always read the outer L4 header). */
static __always_inline __u8 filter_packet(const struct pp_pkt *p, __u32 ip_off,
					  const volatile struct pp_config *cfg,
					  const volatile struct pp_config *precheck,
					  struct pp_tuple *outer, struct pp_tuple *m)
{
	__u8 f;

	if (get_tuple(p, ip_off, outer, precheck) < 0)
		return 0;
	f = filter(cfg, outer);
	if (f) {
		*m = *outer;
		return f | PP_EV_PARSED;
	}
	if (!pp_is_vxlan(outer))
		return 0;
	/* UDP (8) + VXLAN (8) + inner Ethernet (14) */
	__u32 inner_eth = outer->l4_off + 16;
	__u16 inner_proto;
	if (get_bytes(p, inner_eth + 12, &inner_proto, sizeof(inner_proto)) < 0 ||
	    inner_proto != bpf_htons(PP_ETH_P_IP))
		return 0;
	if (get_tuple(p, inner_eth + 14, m, NULL) < 0)
		return 0;
	f = filter(cfg, m);
	return f ? (f | PP_EV_INNER | PP_EV_PARSED) : 0;
}

#endif /* PODPATH_FILTER_BPF_H */
