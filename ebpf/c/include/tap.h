/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Taps (see "Taps" in mizar_abi.h): what transit, egress and the tap function share. mz_tap()
 * reads the frame's fields once, runs the capture's filter over them and, when it accepts,
 * copies the frame and what the point knows into the ring buffer.
 */
#ifndef MZ_TAP_H
#define MZ_TAP_H

#include "parsing.h"
#include "mizar_fn.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MZ_TAP_RING_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_taps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mz_tap_filter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_tap_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mz_tap_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_tap_stats SEC(".maps");

struct mz_tap_record {
	struct mz_tap_header h;
	__u8 data[MZ_TAP_SNAP_MAX];
};

/* What a tap point knows besides the frame. */
struct mz_tap_site {
	__u32 point;          /* enum mz_tap_point */
	__u32 instance;
	__u32 stage;
	__u32 verdict;
	__u32 reason;
	__u32 fn_drop;
	__u32 vni;            /* 0: read it from the frame */
};

/* An IPv4 header's fields at `ip` as the innermost packet's (addresses, protocol, ports, ICMP
 * type, TCP flags). Returns 1 if there was one. */
static __always_inline int tap_ip_fields(struct iphdr *ip, void *end, __u32 *f)
{
	__u8 *l4;

	if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
		return 0;
	f[MZ_TAP_F_INNER_SRC] = bpf_ntohl(ip->saddr);
	f[MZ_TAP_F_INNER_DST] = bpf_ntohl(ip->daddr);
	f[MZ_TAP_F_INNER_PROTO] = ip->protocol;
	if (ip->frag_off & bpf_htons(0x1fff))
		return 1; /* a later fragment has no ports */
	l4 = (__u8 *)ip + ip->ihl * 4;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		if ((void *)(l4 + 4) > end)
			return 1;
		f[MZ_TAP_F_INNER_SPORT] = ((__u32)l4[0] << 8) | l4[1];
		f[MZ_TAP_F_INNER_DPORT] = ((__u32)l4[2] << 8) | l4[3];
		if (ip->protocol == IPPROTO_TCP && (void *)(l4 + 14) <= end)
			f[MZ_TAP_F_TCP_FLAGS] = l4[13];
	} else if (ip->protocol == IPPROTO_ICMP && (void *)(l4 + 1) <= end) {
		f[MZ_TAP_F_ICMP_TYPE] = (__u32)l4[0] + 1;
	}
	return 1;
}

/* The frame's fields: its own IPv4 packet (the outermost, and the innermost unless it is a
 * Geneve frame), then a Geneve frame's inner packet. */
static __always_inline void tap_fields(struct xdp_md *ctx, __u32 *f)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data, *inner_eth;
	struct genevehdr *geneve;
	struct iphdr *ip;
	struct udphdr *udp;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return;
	ip = (void *)(eth + 1);
	if (!tap_ip_fields(ip, end, f))
		return;
	f[MZ_TAP_F_OUTER_SRC] = f[MZ_TAP_F_INNER_SRC];
	f[MZ_TAP_F_OUTER_DST] = f[MZ_TAP_F_INNER_DST];
	f[MZ_TAP_F_OUTER_PROTO] = f[MZ_TAP_F_INNER_PROTO];
	f[MZ_TAP_F_OUTER_SPORT] = f[MZ_TAP_F_INNER_SPORT];
	f[MZ_TAP_F_OUTER_DPORT] = f[MZ_TAP_F_INNER_DPORT];
	if (f[MZ_TAP_F_OUTER_PROTO] != IPPROTO_UDP || f[MZ_TAP_F_OUTER_DPORT] != MZ_GENEVE_PORT)
		return;
	udp = (void *)ip + ip->ihl * 4;
	geneve = (void *)(udp + 1);
	if ((void *)(geneve + 1) > end || geneve->protocol != bpf_htons(MZ_ETH_P_TEB))
		return;
	f[MZ_TAP_F_GENEVE] = 1;
	if (!f[MZ_TAP_F_VNI])
		f[MZ_TAP_F_VNI] = geneve_vni(geneve);
	/* The innermost is now the tunnel's packet, if it carries IPv4. */
	f[MZ_TAP_F_INNER_SRC] = 0;
	f[MZ_TAP_F_INNER_DST] = 0;
	f[MZ_TAP_F_INNER_PROTO] = 0;
	f[MZ_TAP_F_INNER_SPORT] = 0;
	f[MZ_TAP_F_INNER_DPORT] = 0;
	inner_eth = (void *)(geneve + 1) + GENEVE_OPT_BYTES(geneve);
	if ((void *)(inner_eth + 1) > end || inner_eth->h_proto != bpf_htons(ETH_P_IP))
		return;
	tap_ip_fields((void *)(inner_eth + 1), end, f);
}

/* The frame's length, from 64-bit pointers (a 32-bit spill of a packet pointer is refused). */
static __always_inline __u32 tap_len(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	return end - data;
}

/* A Geneve frame's VNI (0 for any other frame), for the record of a filter that read no header. */
static __always_inline __u32 tap_frame_vni(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct genevehdr *geneve;
	struct iphdr *ip;
	struct udphdr *udp;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl < 5 || ip->protocol != IPPROTO_UDP)
		return 0;
	udp = (void *)ip + ip->ihl * 4;
	geneve = (void *)(udp + 1);
	if ((void *)(geneve + 1) > end || udp->dest != bpf_htons(MZ_GENEVE_PORT) ||
	    geneve->protocol != bpf_htons(MZ_ETH_P_TEB))
		return 0;
	return geneve_vni(geneve);
}

/* Runs the filter's tests over the fields: forward jumps only, so it ends within its length. */
static __always_inline int tap_accepts(const struct mz_tap_filter *filter, const __u32 *f)
{
	__u32 pc = 0, len = filter->len;

	if (len == 0)
		return 1;
	for (int i = 0; i < MZ_TAP_FILTER_TESTS; i++) {
		const struct mz_tap_test *t;
		__u32 v;

		if (pc >= len || pc >= MZ_TAP_FILTER_TESTS)
			break;
		t = &filter->tests[pc];
		v = f[t->field & (MZ_TAP_FIELDS - 1)] & t->mask;
		pc = (v >= t->lo && v <= t->hi) ? t->on_match : t->on_miss;
	}
	return pc == MZ_TAP_ACCEPT;
}

/* Records the frame at a tap point if the capture's filter accepts it. Never changes the
 * frame or its fate. Inlined, and only into the tapped copies of transit and egress (separate
 * programs that a capture attaches for its time): a bpf-to-bpf call, or the tapped copy inlined
 * beside the plain one, cost every packet of the plain program 4-8 ns (measured on transit's
 * delivery and forwarding paths). */
static __always_inline void mz_tap(struct xdp_md *ctx, const struct mz_tap_site *site)
{
	__u32 f[MZ_TAP_FIELDS] = {};
	const struct mz_tap_filter *filter;
	struct mz_tap_stats *stats;
	struct mz_tap_record *rec;
	struct mz_meta *m;
	__u32 zero = 0, len, cap;
	int parsed;

	filter = bpf_map_lookup_elem(&mz_tap_filter, &zero);
	stats = bpf_map_lookup_elem(&mz_tap_stats, &zero);
	m = mz_fn_meta();
	if (!filter || !stats || !m || !filter->active)
		return;
	f[MZ_TAP_F_VNI] = site->vni;
	f[MZ_TAP_F_VERDICT] = site->verdict;
	f[MZ_TAP_F_REASON] = site->reason;
	f[MZ_TAP_F_STAGE] = site->stage;
	f[MZ_TAP_F_FN_DROP] = site->fn_drop;
	f[MZ_TAP_F_LEN] = tap_len(ctx);
	f[MZ_TAP_F_IFINDEX] = ctx->ingress_ifindex;
	/* The headers are read only for a filter that tests them; a record's VNI is read after. */
	parsed = (filter->needs & MZ_TAP_NEEDS_FRAME) || (!site->vni && (filter->needs & MZ_TAP_NEEDS_VNI));
	if (parsed)
		tap_fields(ctx, f);
	if (!tap_accepts(filter, f)) {
		stats->filtered++;
		return;
	}
	if (!parsed && !site->vni)
		f[MZ_TAP_F_VNI] = tap_frame_vni(ctx);
	if (filter->sample_every > 1 && (stats->sample_tick++ % filter->sample_every) != 0) {
		stats->sampled_out++;
		return;
	}
	rec = bpf_ringbuf_reserve(&mz_taps, sizeof(*rec), 0);
	if (!rec) {
		stats->lost++;
		return;
	}
	len = f[MZ_TAP_F_LEN];
	cap = len < filter->snaplen ? len : filter->snaplen;
	if (cap > MZ_TAP_SNAP_MAX)
		cap = MZ_TAP_SNAP_MAX;
	rec->h.timestamp_ns = bpf_ktime_get_ns();
	rec->h.packet_id = ((__u64)bpf_get_smp_processor_id() << 48) | (m->packet_seq & 0xffffffffffffull);
	rec->h.point = site->point;
	rec->h.instance = site->instance;
	rec->h.ifindex = f[MZ_TAP_F_IFINDEX];
	rec->h.stage = site->stage;
	rec->h.verdict = site->verdict;
	rec->h.reason = site->reason;
	rec->h.fn_drop = site->fn_drop;
	rec->h.vni = f[MZ_TAP_F_VNI];
	rec->h.len = len;
	if (cap > 0 && bpf_xdp_load_bytes(ctx, 0, rec->data, cap) < 0)
		cap = 0;
	rec->h.cap_len = cap;
	bpf_ringbuf_submit(rec, 0);
	stats->records++;
}

/* A packet taken in while a capture runs gets its number (its id at every tap). */
static __always_inline void mz_tap_number_packet(void)
{
	struct mz_meta *m = mz_fn_meta();

	if (m)
		m->packet_seq++;
}

/* A tap at a program's entry or verdict, if the capture taps it (MZ_HOST_TAP_POINT). */
static __always_inline void mz_tap_point(struct xdp_md *ctx, __u32 flags, __u32 point, __u32 stage,
					 __u32 verdict, __u32 reason, __u32 vni)
{
	struct mz_tap_site site = {
		.point = point,
		.stage = stage,
		.verdict = verdict,
		.reason = reason,
		.vni = vni,
	};

	if (flags & MZ_HOST_TAP_POINT(point))
		mz_tap(ctx, &site);
}

/* A tap at a chain's exit: the verdict as the exit applied it, and the function that dropped
 * the packet if one did. */
static __always_inline void mz_tap_exit(struct xdp_md *ctx, const struct mz_meta *m, __u32 point,
					__u32 verdict, __u32 reason)
{
	struct mz_tap_site site = {
		.point = point,
		.instance = m->fn_reason ? m->fn_dropper : 0,
		.stage = m->d.stage,
		.verdict = verdict,
		.reason = reason,
		.fn_drop = m->fn_reason,
		.vni = m->d.vni,
	};

	mz_tap(ctx, &site);
}

#endif /* MZ_TAP_H */
