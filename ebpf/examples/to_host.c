/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * An example network function that changes the decision rather than dropping: inner UDP and
 * TCP packets to the destination ports listed in its pinned map go to this host's own stack
 * (XDP_PASS, the tunnel packet whole) instead of where the pipeline would send them; every
 * other packet is handed on unchanged. Its counters show the packets it changed ("changed").
 *
 *   clang -O2 -g -target bpf -I ebpf/include -c ebpf/examples/to_host.c -o to_host.o
 *   mizar fn load to_host.o --name to-host
 *   mizar chain add --stage redirect to-host
 *   bpftool map update pinned /sys/fs/bpf/mizar/maps/to_host_ports key 0x1e 0x61 value 1
 */
#include "mizar_fn.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);  /* destination port, network order */
	__type(value, __u8); /* unused: presence sends to the host */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} to_host_ports SEC(".maps");

SEC("xdp")
int to_host(struct xdp_md *ctx)
{
	struct mz_meta *m = mz_fn_meta();
	__u16 port;

	if (!m)
		return XDP_ABORTED;
	if (!mz_fn_inner_dport(ctx, m, &port) && bpf_map_lookup_elem(&to_host_ports, &port)) {
		/* A new decision: the exit applies it as it applies any verdict. */
		m->d.verdict = XDP_PASS;
		m->d.action = MZ_ACTION_VERDICT;
	}
	return mz_fn_next(ctx, m);
}
