/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The built-in network functions, placed in chains at the pipeline's stages (see mizar_fn.h for
 * what a function is, and how it hands a packet on or drops it).
 *
 * - mz_fn_count: hands every packet on; its counters show what reached that point of the chain
 *   (a probe), and chains of it measure what the chain mechanism costs.
 * - mz_fn_ddos: a source blocklist and a per-source rate threshold, per VPC.
 * - mz_fn_ratelimit: token buckets (GCRA) per endpoint and per VPC, per direction.
 */
#include "mizar_fn.h"
#include "lookup.h"
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("xdp")
int mz_fn_count(struct xdp_md *ctx)
{
	struct mz_meta *m = mz_fn_meta();

	if (!m)
		return XDP_ABORTED;
	return mz_fn_next(ctx, m);
}

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MZ_MAX_DDOS_BLOCKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_ddos_block_key);
	__type(value, __u32); /* unused: presence is the rule */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_ddos_blocks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_DDOS_LIMITS);
	__type(key, __u32); /* VNI; 0 = the default */
	__type(value, struct mz_ddos_limit);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_ddos_limits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MZ_MAX_DDOS_SOURCES);
	__type(key, struct mz_ddos_source_key);
	__type(value, struct mz_ddos_source);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_ddos_sources SEC(".maps");

static __always_inline int ddos_blocked(__u32 vni, __u32 src)
{
	struct mz_ddos_block_key key = { .prefixlen = 64, .vni_be = bpf_htonl(vni), .prefix_be = src };

	if (bpf_map_lookup_elem(&mz_ddos_blocks, &key))
		return 1;
	key.vni_be = 0;
	return vni && bpf_map_lookup_elem(&mz_ddos_blocks, &key);
}

/* Whether `src` went over its VPC's threshold in the current window. The count is shared by
 * the CPUs (an atomic add: only sources of a VPC with a threshold pay it), so a source spread
 * over several receive queues gets no more; two CPUs opening a window at once may each count
 * from 1, which lets at most one packet per CPU more through. */
static __always_inline int ddos_over_rate(__u32 vni, __u32 src)
{
	struct mz_ddos_source_key key = { .vni = vni, .ip_be = src };
	const struct mz_ddos_limit *limit;
	struct mz_ddos_source *seen, fresh;
	__u32 any = 0;
	__u64 now;

	limit = bpf_map_lookup_elem(&mz_ddos_limits, &vni);
	if (!limit)
		limit = bpf_map_lookup_elem(&mz_ddos_limits, &any);
	if (!limit || !limit->packets)
		return 0;
	/* The coarse clock: a tick's precision is plenty for windows of 10 ms and more. */
	now = bpf_ktime_get_coarse_ns();
	seen = bpf_map_lookup_elem(&mz_ddos_sources, &key);
	if (!seen || now - seen->window_start_ns >= limit->window_ns) {
		fresh.window_start_ns = now;
		fresh.packets = 1;
		bpf_map_update_elem(&mz_ddos_sources, &key, &fresh, BPF_ANY);
		return 0;
	}
	return __sync_fetch_and_add(&seen->packets, 1) + 1 > limit->packets;
}

/*
 * mz_fn_ddos: drops packets from blocked sources (reason 0) and from sources over their VPC's
 * packet-rate threshold (reason 1, until their window ends). Tenants are kept apart: a VPC's
 * rules match its own VNI only, and a source is tracked per VPC.
 */
SEC("xdp")
int mz_fn_ddos(struct xdp_md *ctx)
{
	struct mz_meta *m = mz_fn_meta();
	__u32 src, vni;

	if (!m)
		return XDP_ABORTED;
	vni = m->d.vni;
	src = m->d.inner_src_be ? m->d.inner_src_be : m->d.outer_src_be;
	if (!src)
		return mz_fn_next(ctx, m);
	if (ddos_blocked(vni, src))
		return mz_fn_drop(m, MZ_DDOS_DROP_BLOCKED);
	if (ddos_over_rate(vni, src))
		return mz_fn_drop(m, MZ_DDOS_DROP_RATE);
	return mz_fn_next(ctx, m);
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_RATE_LIMITS);
	__type(key, struct mz_rl_key);
	__type(value, struct mz_rl_rule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_rl_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MZ_MAX_RATE_LIMITS);
	__type(key, __u32);
	__type(value, struct mz_rl_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_rl_state SEC(".maps");

#define SAME_RL_KEY(v, k)                                                                      \
	(READ_KEY_ONCE((v)->key.vni) == (k)->vni && READ_KEY_ONCE((v)->key.ip_be) == (k)->ip_be &&    \
	 READ_KEY_ONCE((v)->key.direction) == (k)->direction)

/* GCRA: whether a packet costing `cost` ns now conforms; if it does, the bucket is charged.
 * A compare-and-swap that keeps losing to other CPUs lets the packet through (bounded work). */
static __always_inline int gcra_over(__u64 *tat, __u64 now, __u64 cost, __u64 tolerance)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u64 seen = *(volatile __u64 *)tat;
		__u64 base = seen > now ? seen : now;

		if (base - now > tolerance)
			return 1;
		if (__sync_val_compare_and_swap(tat, seen, base + cost) == seen)
			return 0;
	}
	return 0;
}

/* 0 when the packet conforms to the rule of `key` (or there is none), else 1 + which measure
 * it broke (0: packets, 1: bytes). */
static __always_inline int rl_over(const struct mz_rl_key *key, __u64 now, __u64 len)
{
	struct mz_rl_rule rule;
	struct mz_rl_state *state;

	if (LOOKUP_COPY(&mz_rl_rules, key, &rule, SAME_RL_KEY) != MZ_FOUND)
		return 0;
	state = bpf_map_lookup_elem(&mz_rl_state, &rule.slot);
	if (!state)
		return 0;
	if (rule.ns_per_packet &&
	    gcra_over(&state->packets_tat, now, rule.ns_per_packet, rule.packet_tolerance_ns))
		return 1;
	if (rule.ps_per_byte &&
	    gcra_over(&state->bytes_tat, now, len * rule.ps_per_byte / 1000, rule.byte_tolerance_ns))
		return 2;
	return 0;
}

/*
 * mz_fn_ratelimit: per endpoint, then per VPC, in the direction its stage gives (ON_EGRESS: the
 * sender's; elsewhere: the receiver's), packets and bytes per second with a burst; the excess is
 * dropped under reasons 0-3 (endpoint packets, endpoint bytes, VPC packets, VPC bytes).
 */
SEC("xdp")
int mz_fn_ratelimit(struct xdp_md *ctx)
{
	struct mz_meta *m = mz_fn_meta();
	struct mz_rl_key key;
	int over;
	__u64 now;

	if (!m)
		return XDP_ABORTED;
	if (!m->d.vni)
		return mz_fn_next(ctx, m);
	key.vni = m->d.vni;
	key.direction = m->d.stage == MZ_CHAIN_EGRESS ? MZ_RL_EGRESS : MZ_RL_INGRESS;
	key.ip_be = key.direction == MZ_RL_EGRESS ? m->d.inner_src_be : m->d.inner_dst_be;
	now = bpf_ktime_get_ns();
	over = rl_over(&key, now, m->d.packet_len);
	if (over)
		return mz_fn_drop(m, over == 1 ? MZ_RL_DROP_ENDPOINT_PACKETS : MZ_RL_DROP_ENDPOINT_BYTES);
	key.ip_be = 0;
	over = rl_over(&key, now, m->d.packet_len);
	if (over)
		return mz_fn_drop(m, over == 1 ? MZ_RL_DROP_VPC_PACKETS : MZ_RL_DROP_VPC_BYTES);
	return mz_fn_next(ctx, m);
}
