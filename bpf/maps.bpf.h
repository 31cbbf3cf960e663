/* podpath, BPF side only: the maps every object shares, skb tracking, and the event record.
 *
 * Maps and the filter: the same definitions in every object, so the loader can make the
 * objects share one ring buffer, one tracked-skb table and one loss counter (reuse_fd).
 * Needs filter.bpf.h (and what it needs) included first.
 */
#ifndef PODPATH_MAPS_BPF_H
#define PODPATH_MAPS_BPF_H

#include "filter.bpf.h"

/* The event's tuple fields from m (and the VTEPs from outer when flags has PP_EV_INNER). */
static __always_inline void set_tuple(struct pp_event *e, const struct pp_tuple *m,
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
 * (NAT), what it carries now, and through VXLAN the inner packet (m was parsed by filter_packet even
 * when it did not match). Returns the flags with PP_EV_PARSED/INNER set accordingly. */
static __always_inline __u8 set_reported_tuple(struct pp_event *e, const struct pp_tuple *m,
					       const struct pp_tuple *outer, __u8 f)
{
	if (f & PP_EV_MATCHED) {
		set_tuple(e, m, outer, f);
	} else if (m->ok && pp_is_vxlan(outer)) {
		f |= PP_EV_INNER | PP_EV_PARSED;
		set_tuple(e, m, outer, f);
	} else if (outer->ok) {
		f |= PP_EV_PARSED;
		set_tuple(e, outer, outer, PP_EV_PARSED);
	}
	return f;
}

/* The filter. Each object is built twice from the same source (bpf/Makefile):
 * - tc.bpf.o, trace.bpf.o (one-shot, `podpath trace` in process): in .rodata, set by the loader
 *   before load. The verifier reads it as a constant and skips every branch the filter rules out
 *   (about 40 % fewer instructions to verify: the load is what a one-shot trace waits for).
 * - tc.agent.bpf.o, trace.agent.bpf.o (-DPP_FILTER_DATA, `podpath agent`): in .data, a writable
 *   array map. The agent keeps its programs loaded and writes each trace's filter after load,
 *   before it attaches anything. Not const, so the verifier checks every branch whatever the filter.
 * Volatile either way, so each read is a plain load from the map's value (no helper call), never
 * folded by the compiler. */
#ifdef PP_FILTER_DATA
volatile struct pp_config pp_cfg SEC(".data") = {};
#else
const volatile struct pp_config pp_cfg = {};
#endif

/* Never read: keeps the contract's types in the object's BTF (ring buffer records are untyped,
 * and the enums only name the values of __u8/__u16 fields), so tests/unit/test_event_layout.py
 * can compare them with the Python mirror. */
struct pp_btf_types {
	struct pp_event event; /* by value: behind a pointer member, clang records only a FWD */
	enum pp_kind kind;
	enum pp_point point;
	enum pp_neigh_point neigh_point;
	enum pp_ev_flag ev_flag;
	enum pp_filter_flag filter_flag;
	enum pp_limit limit;
};
const volatile struct pp_btf_types pp_btf_types = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* 4 MiB */
} pp_events SEC(".maps");

/* The gate: every program returns at once while it is 0, before any parsing or map access, so a
 * link that lingers between an agent's traces costs traffic one load and a branch. Open (1) as loaded
 * (a one-shot trace's objects stay so); an agent closes it when a trace ends and its links linger,
 * and opens it once the next trace's filter is written (tracer/probes ProbeSet.set_gate). */
volatile __u32 pp_gate SEC(".data") = 1;

static __always_inline bool gate_open(void)
{
	return pp_gate != 0;
}

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
#endif /* PODPATH_MAPS_BPF_H */
