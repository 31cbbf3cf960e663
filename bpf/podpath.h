/* podpath: the contract between the BPF programs and Python (tracer/probes/events.py).
 *
 * Only what crosses the boundary: the event record, the filter config, and the enums that give
 * their fields' values. Fixed-width fields with explicit padding, so the layout is the same for
 * clang -target bpf and for ctypes. tests/unit/test_event_layout.py compares the Python mirror
 * with these types as recorded in the compiled objects' BTF: struct sizes, offsets, signedness,
 * and every enum's names and values. Flags are enums too (not #defines) so that BTF carries them.
 * The BPF-only helpers, maps and filter functions are in filter.bpf.h and maps.bpf.h.
 *
 * Addresses (saddr/daddr/outer_*) are in network byte order, as on the wire; ports, ids and
 * sequence numbers are converted to host order by the BPF side.
 */
#ifndef PODPATH_H
#define PODPATH_H

/* pp_event.kind: which probe saw the packet. Python names a kind by its enumerator without the
 * prefix, lowercased ("netif_receive_skb"): the JSON's event kinds are these names. */
enum pp_kind {
	PP_KIND_TC = 1,                 /* tc (tcx or clsact); point = enum pp_point */
	PP_KIND_KFREE_SKB = 2,          /* skb:kfree_skb, reason + location */
	PP_KIND_CONSUME_SKB = 3,        /* skb:consume_skb (normal end of life), location */
	PP_KIND_NETIF_RECEIVE_SKB = 4,  /* net:netif_receive_skb */
	PP_KIND_NET_DEV_START_XMIT = 5, /* net:net_dev_start_xmit */
	PP_KIND_FIB = 6,                /* fib:fib_table_lookup; saddr/daddr from the flow key, ifindex = result */
	PP_KIND_NEIGH = 7,              /* neigh:*; point = enum pp_neigh_point, daddr = the neighbour */
	PP_KIND_NETFILTER = 8,          /* BPF netfilter link; point = hook number, nf_prio = bracket index */
};

/* pp_event.point for PP_KIND_TC (and the direction of netif_receive_skb / net_dev_start_xmit) */
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

/* pp_event.flags */
enum pp_ev_flag {
	PP_EV_INNER   = 0x01, /* the tuple is the inner packet of VXLAN; outer_* are the VTEPs */
	PP_EV_TRACKED = 0x02, /* the skb was already tracked (seen matching earlier) */
	PP_EV_MATCHED = 0x04, /* the headers matched the filter at this probe */
	PP_EV_REPLY   = 0x08, /* matched the filter in the reverse direction */
	PP_EV_PARSED  = 0x10, /* headers were parsed (tuple fields are valid) */
};

/* pp_config.flags: which filter fields are set (a zero field is a real value, not "any") */
enum pp_filter_flag {
	PP_F_SADDR   = 0x0001,
	PP_F_DADDR   = 0x0002,
	PP_F_PROTO   = 0x0004,
	PP_F_SPORT   = 0x0008,
	PP_F_DPORT   = 0x0010,
	PP_F_IP_ID   = 0x0020,
	PP_F_ICMP_ID = 0x0040,
	PP_F_BIDIR   = 0x0100, /* also match the reverse direction (the reply) */
	PP_F_ALL     = 0x8000, /* no filter: every IPv4 packet (doctor, benchmarks only) */
};

/* Counts both sides size things by. */
enum pp_limit {
	PP_NEIGH_ADDRS = 8, /* pp_config.neigh_addrs */
	PP_NF_BRACKETS = 8, /* netfilter programs pp_nf_0 .. pp_nf_7 (trace.bpf.c) */
};

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
	__u8 point;         /* tc: enum pp_point; netfilter: hook number; neigh: enum pp_neigh_point */
	__u8 proto;         /* IPPROTO_* */
	__u8 flags;         /* enum pp_ev_flag */
	__u8 icmp_type;
	__u8 ttl;
	/* The two signed fields carry negative values; the layout test checks ctypes reads them signed. */
	__s32 nf_prio;      /* netfilter: the bracket (program) index; user space maps it to the link's priority */
	__u32 cpu;
	__u32 fib_table;    /* fib: routing table id of this lookup */
	__s32 fib_err;      /* fib: 0, or -errno (-ENETUNREACH: no route; -EAGAIN: no match, next table) */
	__u32 fib_gw;       /* fib: the chosen gateway (network order), 0 when directly connected */
	__u32 nud_state;    /* neigh: NUD_* state of the entry after the event; 104 bytes, no padding */
};

/* The filter, as a global the loader writes (.data: before load, or after it in an agent). */
struct pp_config {
	__u32 saddr;     /* network byte order */
	__u32 daddr;
	__u16 sport;     /* host order */
	__u16 dport;
	__u16 ip_id;
	__u16 icmp_id;
	__u16 flags;     /* enum pp_filter_flag */
	__u8 proto;
	__u8 __pad0;
	__u32 __pad1;
	__u32 neigh_addrs[PP_NEIGH_ADDRS]; /* next hops on the path (network order; 0 = unused) */
};

#endif /* PODPATH_H */
