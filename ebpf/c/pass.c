/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * mz_pass: hands every frame to the stack. It does nothing else, and exists for what its mere
 * presence does on a veth.
 *
 * A frame that XDP redirects into a veth is received by the peer only when the peer has GRO on
 * or runs an XDP program; a frame XDP_TX'ed out of a veth is received only when the peer runs an
 * XDP program: veth queues XDP_TX frames on the peer's ring but wakes the peer's NAPI only if the
 * peer has XDP (drivers/net/veth.c, veth_xdp_flush). Otherwise both sit unseen, showing only as
 * drops on the sending side. Transit XDP_TXes bounced packets out of the underlay veth, and
 * egress XDP_TXes proxy-ARP replies to the endpoint, so in a lab (`mizar demo`, the tests) the
 * switch-side peer of every underlay veth and the endpoint end of every endpoint veth run this,
 * as a NIC's wire and a container's stack would simply receive.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("xdp")
int mz_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
