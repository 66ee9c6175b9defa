/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * An example network function, built outside the appliance against ebpf/include only:
 * drops the inner UDP and TCP packets to the destination ports listed in its own pinned map,
 * under its reason 0, and hands every other packet on.
 *
 *   clang -O2 -g -target bpf -I ebpf/include -c ebpf/examples/port_drop.c -o port_drop.o
 *   mizar fn load port_drop.o --name port-drop --reasons blocked_port
 *   mizar chain add --stage redirect port-drop
 *   bpftool map update pinned /sys/fs/bpf/mizar/maps/port_drop_ports \
 *       key 0x1f 0x90 value 1        # port 8080, network order
 *
 * Its map is pinned by name beside the pipeline's (mizar's pin directory), so it survives the
 * function's reloads; tenants are told apart by m->d.vni if a function needs to.
 */
#include "mizar_fn.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);  /* destination port, network order */
	__type(value, __u8); /* unused: presence drops */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} port_drop_ports SEC(".maps");

SEC("xdp")
int port_drop(struct xdp_md *ctx)
{
	struct mz_meta *m = mz_fn_meta();
	__u16 port;

	if (!m)
		return XDP_ABORTED;
	if (!mz_fn_inner_dport(ctx, m, &port) && bpf_map_lookup_elem(&port_drop_ports, &port))
		return mz_fn_drop(ctx, m, 0);
	return mz_fn_next(ctx, m);
}
