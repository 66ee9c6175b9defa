/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The built-in network functions, placed in chains at the pipeline's stages (see mizar_fn.h for
 * what a function is, and how it hands a packet on or drops it).
 *
 * - mz_fn_count: hands every packet on; its counters show what reached that point of the chain
 *   (a probe), and chains of it measure what the chain mechanism costs.
 * - mz_fn_ddos: a source blocklist and a per-source rate threshold, per VPC.
 */
#include "mizar_fn.h"
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
