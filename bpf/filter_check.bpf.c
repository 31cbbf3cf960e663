// SPDX-License-Identifier: GPL-2.0
/* Test-only, never attached: tests/lab/test_filter_superset.py runs it with BPF_PROG_TEST_RUN on
 * generated frames to hold the probes' cheap pre-checks (pp_addrs_may_match, with the protocol,
 * and the route lookups' pp_fib_may_match) to filter(). It parses the frame as the tc probe does and returns what each filter function says
 * of it (enum pp_check), under the config in pp_check_cfg: a map, not .rodata, so one load
 * serves every config the test tries. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "filter.bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pp_config);
} pp_check_cfg SEC(".maps");

/* The program's return value: bits. */
enum pp_check {
	PP_CHECK_PARSED = 0x01,   /* an IPv4 header was found after the Ethernet header */
	PP_CHECK_FILTER = 0x02,   /* filter() matched the fully parsed headers */
	PP_CHECK_REPLY = 0x04,    /* ... as the reply */
	PP_CHECK_MAY = 0x08,      /* pp_hdr_may_match(): the pre-check lets it through */
	PP_CHECK_PRECHECKED = 0x10, /* filter_packet() with the pre-check (an untracked skb at a
				     * tracepoint or netfilter hook) matched */
	PP_CHECK_FIB_MAY = 0x20,  /* pp_fib_may_match(): a route lookup with these addresses and
				   * protocol passes pp_fib's pre-check */
};
/* keeps enum pp_check in BTF, where the test reads its values */
const volatile enum pp_check pp_check_bits = 0;

SEC("tc")
int pp_check_filter(struct __sk_buff *ctx)
{
	struct pp_tuple t = {}, outer = {}, m = {};
	struct pp_pkt pkt = pp_pkt_tc(ctx);
	__u32 zero = 0, r;
	struct pp_config *cfg = bpf_map_lookup_elem(&pp_check_cfg, &zero);

	if (!cfg || get_tuple(&pkt, 14, &t, NULL) < 0 || !t.ok)
		return 0;
	r = PP_CHECK_PARSED;
	__u8 f = filter(cfg, &t);
	if (f & PP_EV_MATCHED)
		r |= PP_CHECK_FILTER;
	if (f & PP_EV_REPLY)
		r |= PP_CHECK_REPLY;
	if (pp_hdr_may_match(cfg, t.saddr, t.daddr, t.proto))
		r |= PP_CHECK_MAY;
	if (filter_packet(&pkt, 14, cfg, cfg, &outer, &m) & PP_EV_MATCHED)
		r |= PP_CHECK_PRECHECKED;
	if (pp_fib_may_match(cfg, t.saddr, t.daddr, t.proto))
		r |= PP_CHECK_FIB_MAY;
	return r;
}
