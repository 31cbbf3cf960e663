/* podpath: the structs shared by the BPF programs and Python (tracer/probes/events.py).
 *
 * Defined once, here. Only fixed-width fields with explicit padding, so the layout is the same
 * for clang -target bpf and for ctypes; tests/unit/test_event_layout.py compares the Python
 * mirror with this struct as recorded in the compiled object's BTF.
 *
 * Addresses (saddr/daddr/outer_*) are in network byte order, as on the wire; ports, ids and
 * sequence numbers are converted to host order by the BPF side.
 */
#ifndef PODPATH_H
#define PODPATH_H

/* pp_event.kind: which probe saw the packet */
enum pp_kind {
	PP_KIND_TC = 1,            /* tc (tcx or clsact); point = PP_POINT_INGRESS/EGRESS */
	PP_KIND_KFREE_SKB = 2,     /* skb:kfree_skb, reason + location */
	PP_KIND_CONSUME_SKB = 3,   /* skb:consume_skb (normal end of life), location */
	PP_KIND_NETIF_RECEIVE = 4, /* net:netif_receive_skb */
	PP_KIND_XMIT = 5,          /* net:net_dev_start_xmit */
	PP_KIND_FIB = 6,           /* fib:fib_table_lookup; saddr/daddr from the flow key, ifindex = result */
	PP_KIND_NEIGH = 7,         /* neigh:*; point = enum pp_neigh_point, daddr = the neighbour */
	PP_KIND_NF = 8,            /* BPF netfilter link; point = hook number, nf_prio = bracket index */
};

enum pp_point {
	PP_POINT_INGRESS = 0,
	PP_POINT_EGRESS = 1,
};

/* pp_event.point for PP_KIND_NEIGH: which neigh tracepoint */
enum pp_neigh_point {
	PP_NEIGH_CREATE = 0,
	PP_NEIGH_UPDATE = 1,     /* neigh_update: a new state/lladdr (ARP reply, admin change) */
	PP_NEIGH_TIMER = 2,      /* neigh_timer_handler: probe timer ran (INCOMPLETE -> FAILED ...) */
	PP_NEIGH_SEND_DEAD = 3,  /* neigh_event_send_dead: a packet hit a FAILED entry */
};

#define PP_NEIGH_ADDRS 8

/* pp_event.flags */
#define PP_EV_INNER    0x01 /* the tuple is the inner packet of VXLAN; outer_* are the VTEPs */
#define PP_EV_TRACKED  0x02 /* the skb was already tracked (seen matching earlier) */
#define PP_EV_MATCHED  0x04 /* the headers matched the filter at this probe */
#define PP_EV_REPLY    0x08 /* matched the filter in the reverse direction */
#define PP_EV_PARSED   0x10 /* headers were parsed (tuple fields are valid) */

struct pp_event {
	__u64 ts_ns;        /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u64 skb;          /* kernel address of the struct sk_buff */
	__u64 location;     /* kfree_skb/consume_skb: kernel text address of the caller */
	__u32 netns;        /* network namespace inode (as in /proc/PID/ns/net) */
	__u32 ifindex;      /* device, in that namespace; 0 if none */
	__u32 reason;       /* kfree_skb: enum skb_drop_reason */
	__u32 mark;         /* skb->mark */
	__u32 len;          /* skb->len */
	__u32 saddr;        /* matched IPv4 header (inner one if PP_EV_INNER) */
	__u32 daddr;
	__u32 outer_saddr;  /* outer IPv4 header when PP_EV_INNER, else 0 */
	__u32 outer_daddr;
	__u32 tcp_seq;
	__u16 sport;
	__u16 dport;
	__u16 ip_id;
	__u16 icmp_id;
	__u16 icmp_seq;
	__u8 kind;          /* enum pp_kind */
	__u8 point;         /* tc: enum pp_point; netfilter: hook number */
	__u8 proto;         /* IPPROTO_* */
	__u8 flags;         /* PP_EV_* */
	__u8 icmp_type;
	__u8 ttl;
	__s32 nf_prio;      /* netfilter: the bracket (program) index; user space maps it to the link's priority */
	__u32 cpu;
	__u32 fib_table;    /* fib: routing table id of this lookup */
	__s32 fib_err;      /* fib: 0, or -errno (-ENETUNREACH: no route; -EAGAIN: no match, next table) */
	__u32 fib_gw;       /* fib: the chosen gateway (network order), 0 when directly connected */
	__u32 nud_state;    /* neigh: NUD_* state of the entry after the event; 104 bytes, no padding */
};

/* pp_config.flags: which filter fields are set (a zero field is a real value, not "any") */
#define PP_F_SADDR   0x0001
#define PP_F_DADDR   0x0002
#define PP_F_PROTO   0x0004
#define PP_F_SPORT   0x0008
#define PP_F_DPORT   0x0010
#define PP_F_IP_ID   0x0020
#define PP_F_ICMP_ID 0x0040
#define PP_F_BIDIR   0x0100 /* also match the reverse direction (the reply) */
#define PP_F_ALL     0x8000 /* no filter: every IPv4 packet (doctor, benchmarks only) */

/* The filter, as read-only data set at load time (pwru style). */
struct pp_config {
	__u32 saddr;     /* network byte order */
	__u32 daddr;
	__u16 sport;     /* host order */
	__u16 dport;
	__u16 ip_id;
	__u16 icmp_id;
	__u16 flags;     /* PP_F_* */
	__u8 proto;
	__u8 __pad0;
	__u32 __pad1;
	__u32 neigh_addrs[PP_NEIGH_ADDRS]; /* next hops on the path (network order; 0 = unused) */
};

#ifdef __bpf__
/* ---- BPF side only: packet parsing and the filter, shared by tc.bpf.c and trace.bpf.c ---- */

#define PP_ETH_P_IP     0x0800
#define PP_ETH_P_8021Q  0x8100
#define PP_IPPROTO_ICMP 1
#define PP_IPPROTO_TCP  6
#define PP_IPPROTO_UDP  17
#define PP_VXLAN_PORT_LINUX 8472
#define PP_VXLAN_PORT_IANA  4789
#define PP_TC_ACT_UNSPEC (-1)
#define PP_NF_BRACKETS 8 /* pp_nf_0 .. pp_nf_7 (trace.bpf.c) */

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

/* Read len bytes at off: from the skb (tc: bpf_skb_load_bytes) or from kernel memory at base
 * (tracing programs). `tc` is a compile-time constant, so each program keeps one branch. */
static __always_inline int pp_read(void *ctx, const void *base, bool tc, __u32 off, void *dst, __u32 len)
{
	if (tc) {
		/* Direct packet access when the bytes are in the linear area, else the helper. */
		struct __sk_buff *skb = ctx;
		void *data = (void *)(long)skb->data;
		void *end = (void *)(long)skb->data_end;
		if (off < 512 && data + off + len <= end) {
			__builtin_memcpy(dst, data + off, len);
			return 0;
		}
		return bpf_skb_load_bytes(ctx, off, dst, len);
	}
	return bpf_probe_read_kernel(dst, len, base + off);
}

/* Parse the IPv4 header at ip_off and its TCP/UDP/ICMP header. */
/* Could a packet with these addresses match the filter (either direction with BIDIR)? */
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

/* precheck (a filter, or NULL): skip reading the L4 header of a packet that cannot match it and
 * cannot be VXLAN (not UDP) — the common case for all other traffic, one read instead of two. */
static __always_inline int pp_parse_ipv4(void *ctx, const void *base, bool tc, __u32 ip_off,
					 struct pp_tuple *t, const volatile struct pp_config *precheck)
{
	struct pp_iphdr ip;

	t->ok = 0;
	if (pp_read(ctx, base, tc, ip_off, &ip, sizeof(ip)) < 0)
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
	    !(pp_addrs_may_match(precheck, ip.saddr, ip.daddr) && filter_proto(precheck, ip.protocol)))
		return 0;
	if (bpf_ntohs(ip.frag_off) & 0x1fff) /* a non-first fragment has no L4 header */
		return 0;
	if (ip.protocol == PP_IPPROTO_TCP) {
		struct { __u16 sport, dport; __u32 seq; } th;
		if (pp_read(ctx, base, tc, t->l4_off, &th, sizeof(th)) == 0) {
			t->sport = bpf_ntohs(th.sport);
			t->dport = bpf_ntohs(th.dport);
			t->tcp_seq = bpf_ntohl(th.seq);
		}
	} else if (ip.protocol == PP_IPPROTO_UDP) {
		struct { __u16 sport, dport; } uh;
		if (pp_read(ctx, base, tc, t->l4_off, &uh, sizeof(uh)) == 0) {
			t->sport = bpf_ntohs(uh.sport);
			t->dport = bpf_ntohs(uh.dport);
		}
	} else if (ip.protocol == PP_IPPROTO_ICMP) {
		struct { __u8 type, code; __u16 csum, id, seq; } ih;
		if (pp_read(ctx, base, tc, t->l4_off, &ih, sizeof(ih)) == 0) {
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
 * returns PP_EV_* flags (0: nothing matched). outer receives the outer tuple. */
static __always_inline __u8 pp_match(void *ctx, const void *base, bool tc, __u32 ip_off,
				     const volatile struct pp_config *cfg,
				     struct pp_tuple *outer, struct pp_tuple *m, bool precheck)
{
	__u8 f;

	if (pp_parse_ipv4(ctx, base, tc, ip_off, outer, precheck ? cfg : NULL) < 0)
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
	if (pp_read(ctx, base, tc, inner_eth + 12, &inner_proto, sizeof(inner_proto)) < 0 ||
	    inner_proto != bpf_htons(PP_ETH_P_IP))
		return 0;
	if (pp_parse_ipv4(ctx, base, tc, inner_eth + 14, m, NULL) < 0)
		return 0;
	f = filter(cfg, m);
	return f ? (f | PP_EV_INNER | PP_EV_PARSED) : 0;
}

static __always_inline void pp_fill_tuple(struct pp_event *e, const struct pp_tuple *m,
					  const struct pp_tuple *outer, __u8 flags)
{
	e->saddr = m->saddr;
	e->daddr = m->daddr;
	e->sport = m->sport;
	e->dport = m->dport;
	e->proto = m->proto;
	e->ip_id = m->ip_id;
	e->icmp_id = m->icmp_id;
	e->icmp_seq = m->icmp_seq;
	e->icmp_type = m->icmp_type;
	e->tcp_seq = m->tcp_seq;
	e->ttl = m->ttl;
	if (flags & PP_EV_INNER) {
		e->outer_saddr = outer->saddr;
		e->outer_daddr = outer->daddr;
	} else {
		e->outer_saddr = e->outer_daddr = 0;
	}
}

/* The tuple an event reports: the matched one; for a tracked skb whose headers no longer match
 * (NAT), what it carries now, and through VXLAN the inner packet (m was parsed by pp_match even
 * when it did not match). Returns the flags with PP_EV_PARSED/INNER set accordingly. */
static __always_inline __u8 pp_report_tuple(struct pp_event *e, const struct pp_tuple *m,
					    const struct pp_tuple *outer, __u8 f)
{
	if (f & PP_EV_MATCHED) {
		pp_fill_tuple(e, m, outer, f);
	} else if (m->ok && pp_is_vxlan(outer)) {
		f |= PP_EV_INNER | PP_EV_PARSED;
		pp_fill_tuple(e, m, outer, f);
	} else if (outer->ok) {
		f |= PP_EV_PARSED;
		pp_fill_tuple(e, outer, outer, PP_EV_PARSED);
	}
	return f;
}

/* Maps and the filter: the same definitions in every object, so the loader can make the
 * objects share one ring buffer, one tracked-skb table and one loss counter (reuse_fd). */
const volatile struct pp_config pp_cfg = {};

/* Never read: keeps struct pp_event in the object's BTF (ring buffer records are untyped), so
 * tests/unit/test_event_layout.py can compare it with the Python mirror. */
struct pp_event *const volatile pp_event_btf = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* 4 MiB */
} pp_events SEC(".maps");

/* skb address -> first time (ns) it matched: later probes attribute events to it even when
 * NAT rewrote its headers. Deleted when the skb is freed; LRU bounds what is never freed. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} pp_tracked SEC(".maps");

/* How many entries pp_tracked may hold (incremented on each insert, decremented on each delete
 * that found its entry; LRU evictions are not counted, so it can only over-estimate). While it is
 * zero no skb is tracked, and the probes skip the pp_tracked lookup for what does not match. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pp_ntracked SEC(".maps");

static __always_inline bool pp_any_tracked(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&pp_ntracked, &zero);
	return !n || *n != 0;
}

static __always_inline __u64 *pp_lookup_tracked(__u64 *addr)
{
	if (!pp_any_tracked())
		return NULL;
	return bpf_map_lookup_elem(&pp_tracked, addr);
}

static __always_inline void pp_track(__u64 *addr)
{
	__u32 zero = 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 *n = bpf_map_lookup_elem(&pp_ntracked, &zero);
	/* Count first: a concurrent reader may over-estimate, never miss the entry. */
	if (n)
		__sync_fetch_and_add(n, 1);
	if (bpf_map_update_elem(&pp_tracked, addr, &now, BPF_NOEXIST) != 0 && n)
		__sync_fetch_and_add(n, -1); /* already there (counted by whoever added it) */
}

static __always_inline void pp_untrack(__u64 *addr)
{
	__u32 zero = 0;
	if (bpf_map_delete_elem(&pp_tracked, addr) == 0) {
		__u64 *n = bpf_map_lookup_elem(&pp_ntracked, &zero);
		if (n)
			__sync_fetch_and_add(n, -1);
	}
}

/* Per CPU: when this CPU last reported one of the trace's packets. Route lookups carry no skb;
 * one that follows our packet on the same CPU within PP_OURS_NS serves it. */
#define PP_OURS_NS 50000
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pp_last_ours SEC(".maps");

static __always_inline void pp_mark_ours(__u64 now)
{
	__u32 zero = 0;
	__u64 *t = bpf_map_lookup_elem(&pp_last_ours, &zero);
	if (t)
		*t = now;
}

static __always_inline bool pp_recent_ours(__u64 now)
{
	__u32 zero = 0;
	__u64 *t = bpf_map_lookup_elem(&pp_last_ours, &zero);
	return t && *t && now - *t < PP_OURS_NS;
}

/* Ring buffer reservation failures (events lost), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pp_lost SEC(".maps");

static __always_inline struct pp_event *pp_reserve(void)
{
	struct pp_event *e = bpf_ringbuf_reserve(&pp_events, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&pp_lost, &zero);
		if (n)
			*n += 1;
	}
	return e;
}
/* A zeroed event of this kind, stamped with now and the CPU; NULL (and counted lost) when the
 * ring buffer is full. Every probe starts its record here. */
static __always_inline struct pp_event *pp_new_event(__u8 kind, __u8 point, __u64 now)
{
	struct pp_event *e = pp_reserve();
	if (!e)
		return NULL;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = now;
	e->kind = kind;
	e->point = point;
	e->cpu = bpf_get_smp_processor_id();
	return e;
}
#endif /* __bpf__ */

#endif /* PODPATH_H */
