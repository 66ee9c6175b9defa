/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Benchmark helpers, run only through BPF_PROG_TEST_RUN.
 * - mz_floor: the cheapest useful XDP program (swap MACs, XDP_TX): the floor every path is
 *   measured against.
 * - mz_bench_resize: changes the packet's length as a path does, and nothing else: the wrapper
 *   tail-calling it costs what the wrapper costs a path that changes the length (its fix-up
 *   of the length included).
 * - mz_bench_wrap: a repeated test run does not restore the packet between repetitions, so paths
 *   that rewrite it (bouncer, divider, decapsulation, encapsulation) would measure their own
 *   output from the second repetition on. The wrapper restores the original bytes, then
 *   tail-calls the program under test. Tail-calling mz_bench_resize (resize 0), it is also the
 *   live benchmark's generator: in XDP live-frame mode a frame's page is recycled with whatever
 *   the receiving program wrote into it, so each frame is restored before it is sent.
 * - mz_bench_sink: the live benchmark's receiver, on the generator's veth: counts what comes
 *   back and drops it.
 */
#include "parsing.h"
#include "mizar_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mz_bench_packet);
} mz_bench_packet SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} mz_bench_target SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} mz_bench_sunk SEC(".maps");

SEC("xdp")
int mz_floor(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 tmp[ETH_ALEN];

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	mac_copy(tmp, eth->h_source);
	mac_copy(eth->h_source, eth->h_dest);
	mac_copy(eth->h_dest, tmp);
	return XDP_TX;
}

SEC("xdp")
int mz_bench_wrap(struct xdp_md *ctx)
{
	__u32 zero = 0, current;
	__u64 len; /* 64-bit, so the checks below bound the very register passed to the helper */
	struct mz_bench_packet *pkt = bpf_map_lookup_elem(&mz_bench_packet, &zero);

	if (!pkt)
		return XDP_ABORTED;
	len = pkt->len;
	if (len < sizeof(struct ethhdr) || len > MZ_BENCH_MAX_PACKET)
		return XDP_ABORTED;
	current = ctx->data_end - ctx->data;
	if (current != len && bpf_xdp_adjust_head(ctx, (int)current - (int)len))
		return XDP_ABORTED;
	if (bpf_xdp_store_bytes(ctx, 0, pkt->data, len))
		return XDP_ABORTED;
	bpf_tail_call(ctx, &mz_bench_target, MZ_BENCH_TARGET_SLOT);
	return XDP_ABORTED;
}

SEC("xdp")
int mz_bench_resize(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct mz_bench_packet *pkt = bpf_map_lookup_elem(&mz_bench_packet, &zero);

	if (!pkt || bpf_xdp_adjust_head(ctx, pkt->resize))
		return XDP_ABORTED;
	return XDP_TX;
}

SEC("xdp")
int mz_bench_sink(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *sunk = bpf_map_lookup_elem(&mz_bench_sunk, &zero);

	if (sunk)
		*sunk += 1;
	return XDP_DROP;
}
