/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Writing a network function for the Mizar pipeline: the maps a function shares with the
 * pipeline (pinned by name) and the three things a function does.
 *
 *   SEC("xdp") int my_fn(struct xdp_md *ctx)
 *   {
 *           struct mz_meta *m = mz_fn_meta();
 *
 *           if (!m)
 *                   return XDP_ABORTED;
 *           ... read m->d (stage, VNI, addresses, the decision), read or rewrite the packet
 *           (mz_fn_inner_dport reads the inner destination port) ...
 *           if (bad)
 *                   return mz_fn_drop(ctx, m, 0); // drop, counted under this function's reason 0
 *           return mz_fn_next(ctx, m);        // hand the packet on (to the next function, or
 *                                             // to the stage's exit, which applies the decision)
 *   }
 *
 * Rules: end with mz_fn_next or mz_fn_drop (what a function returns otherwise is the packet's
 * verdict, uncounted); do not move the packet's start or end (bpf_xdp_adjust_head/tail: the
 * offsets in the decision would go stale); rewrite bytes in place, checksums included.
 */
#ifndef MIZAR_FN_H
#define MIZAR_FN_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "mizar_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mz_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME); /* pinned: a reload must not swap it under running packets */
} mz_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, MZ_FN_PROG_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_functions SEC(".maps");

/* One slot per function program, for the chains of VPCs and endpoints (slots flagged
 * MZ_FN_SHARED_SLOT in a plan). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, MZ_FN_PROGRAMS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_fn_programs SEC(".maps");

/* The exits: transit's (MZ_EXIT_TRANSIT) and egress's (MZ_EXIT_EGRESS). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_stage_exit SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MZ_MAX_FN_INSTANCES);
	__type(key, __u32);
	__type(value, struct mz_fn_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_fn_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MZ_CHAIN_POINTS);
	__type(key, __u32);
	__type(value, struct mz_chain_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_chain_stats SEC(".maps");

static __always_inline struct mz_meta *mz_fn_meta(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&mz_meta, &zero);
}

/* The running function's counters. */
static __always_inline struct mz_fn_stats *mz_fn_own_stats(const struct mz_meta *m)
{
	__u32 pos = m->chain_pos, instance;

	if (pos >= MZ_MAX_CHAIN)
		return 0;
	instance = m->instance[pos];
	return bpf_map_lookup_elem(&mz_fn_stats, &instance);
}

/* Timed packets: the running function's time so far goes to its counters. */
static __always_inline void mz_fn_clock(struct mz_meta *m, struct mz_fn_stats *s)
{
	__u64 now;

	if (!m->clock_ns || !s)
		return;
	now = bpf_ktime_get_ns();
	s->timed++;
	s->ns += now - m->clock_ns;
	m->clock_ns = now;
}

/* The exit of the program the packet is in. */
static __always_inline __u32 mz_fn_exit_slot(const struct mz_meta *m)
{
	return m->d.stage == MZ_CHAIN_EGRESS ? MZ_EXIT_EGRESS : MZ_EXIT_TRANSIT;
}

/* A tail call failed: counted for the stage; the exit applies the decision as it stands. */
static __always_inline int mz_fn_chain_failed(struct xdp_md *ctx, const struct mz_meta *m)
{
	__u32 stage = m->d.stage;
	struct mz_chain_stats *cs = bpf_map_lookup_elem(&mz_chain_stats, &stage);

	if (cs)
		cs->failed++;
	bpf_tail_call(ctx, &mz_stage_exit, mz_fn_exit_slot(m));
	/* Not even the exit: a verdict that needs no rewrite stands, anything else is dropped. */
	return m->d.action == MZ_ACTION_VERDICT ? (int)m->d.verdict : XDP_DROP;
}

/* Tail-calls the function in `slot` of a plan (returns only if that fails). */
static __always_inline void mz_fn_call(struct xdp_md *ctx, __u32 slot)
{
	if (slot & MZ_FN_SHARED_SLOT)
		bpf_tail_call(ctx, &mz_fn_programs, slot & (MZ_FN_SHARED_SLOT - 1));
	else
		bpf_tail_call(ctx, &mz_functions, slot);
}

/* The inner packet's TCP or UDP destination port (network order) into *port: 0 when it has
 * one (IPv4, not a later fragment, the ports within the frame), -1 otherwise. */
static __always_inline int mz_fn_inner_dport(struct xdp_md *ctx, const struct mz_meta *m, __u16 *port)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 offset = m->d.inner_ip_offset;
	struct iphdr *ip;
	__u16 *ports;

	if (!offset || offset > 512)
		return -1;
	ip = data + offset;
	if ((void *)(ip + 1) > end || ip->ihl < 5 || ip->frag_off & bpf_htons(0x1fff) ||
	    (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP))
		return -1;
	/* UDP and TCP both start with the two ports. */
	ports = (void *)ip + ip->ihl * 4;
	if ((void *)(ports + 2) > end)
		return -1;
	*port = ports[1];
	return 0;
}

/* Remembers the decision as it stands, for the next function's "changed" count. */
static __always_inline void mz_fn_mark_decision(struct mz_meta *m)
{
	m->seen_verdict = m->d.verdict;
	m->seen_action = m->d.action;
	m->seen_ifindex = m->d.ifindex;
	m->seen_next_hop_be = m->d.next_hop_be;
}

/* Hands the packet to the next function of the chain, or to the stage's exit after the last. */
static __always_inline int mz_fn_next(struct xdp_md *ctx, struct mz_meta *m)
{
	struct mz_fn_stats *s = mz_fn_own_stats(m);
	__u32 pos;

	if (s) {
		s->passed++;
		if (m->d.verdict != m->seen_verdict || m->d.action != m->seen_action ||
		    m->d.ifindex != m->seen_ifindex || m->d.next_hop_be != m->seen_next_hop_be) {
			s->changed++;
			mz_fn_mark_decision(m);
		}
		mz_fn_clock(m, s);
	}
	pos = m->chain_pos + 1;
	m->chain_pos = pos;
	if (pos < m->chain_len && pos < MZ_MAX_CHAIN) {
		mz_fn_call(ctx, m->chain[pos]);
		return mz_fn_chain_failed(ctx, m);
	}
	bpf_tail_call(ctx, &mz_stage_exit, mz_fn_exit_slot(m));
	return mz_fn_chain_failed(ctx, m);
}

/* Drops the packet, counted under the function's own reason (0 .. MZ_FN_DROP_REASONS - 1).
 * While a capture taps the verdict, the stage's exit takes the drop (and taps it). */
static __always_inline int mz_fn_drop(struct xdp_md *ctx, struct mz_meta *m, __u32 reason)
{
	struct mz_fn_stats *s = mz_fn_own_stats(m);
	__u32 pos = m->chain_pos;

	if (reason >= MZ_FN_DROP_REASONS)
		reason = MZ_FN_DROP_REASONS - 1;
	if (s) {
		s->dropped[reason]++;
		mz_fn_clock(m, s);
	}
	m->fn_reason = reason + 1;
	m->fn_dropper = pos < MZ_MAX_CHAIN ? m->instance[pos & (MZ_MAX_CHAIN - 1)] : 0;
	m->d.verdict = XDP_DROP;
	if (m->tap_verdict)
		bpf_tail_call(ctx, &mz_stage_exit, mz_fn_exit_slot(m));
	return XDP_DROP;
}

#endif /* MIZAR_FN_H */
