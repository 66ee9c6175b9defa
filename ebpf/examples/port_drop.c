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
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

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
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct mz_meta *m = mz_fn_meta();
	struct iphdr *ip;
	struct udphdr *l4;
	__u32 offset;

	if (!m)
		return XDP_ABORTED;
	offset = m->d.inner_ip_offset;
	if (!offset || offset > 512)
		return mz_fn_next(ctx, m);
	ip = data + offset;
	if ((void *)(ip + 1) > end || ip->ihl < 5 || ip->frag_off & bpf_htons(0x1fff) ||
	    (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP))
		return mz_fn_next(ctx, m);
	/* UDP and TCP both start with the two ports. */
	l4 = (void *)ip + ip->ihl * 4;
	if ((void *)(l4 + 1) > end)
		return mz_fn_next(ctx, m);
	if (bpf_map_lookup_elem(&port_drop_ports, &l4->dest))
		return mz_fn_drop(ctx, m, 0);
	return mz_fn_next(ctx, m);
}
