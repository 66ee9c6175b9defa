/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What the transit and egress programs share: counting, flow hashing, the routing decision
 * (seed steps 4 and 5) and the outer-header rewrites. */
#ifndef MZ_PIPELINE_H
#define MZ_PIPELINE_H

#include "parsing.h"
#include "maps.h"
#include "lookup.h"

static __always_inline void count(__u32 slot, __u64 bytes)
{
	struct mz_counter_value *v = bpf_map_lookup_elem(&mz_counters, &slot);

	if (v) {
		v->packets++;
		v->bytes += bytes;
	}
}

#define SAME_ENDPOINT_KEY(v, k)                                                                \
	(READ_KEY_ONCE((v)->key.vni) == (k)->vni && READ_KEY_ONCE((v)->key.ip_be) == (k)->ip_be)
#define SAME_MEMBER_KEY(v, k)                                                                  \
	(READ_KEY_ONCE((v)->key.vni) == (k)->vni && READ_KEY_ONCE((v)->key.host_ip_be) == (k)->host_ip_be)
#define SAME_IFINDEX(v, k) (READ_KEY_ONCE((v)->ifindex) == *(k))
#define SAME_VNI(v, k) (READ_KEY_ONCE((v)->vni) == *(k))

static __always_inline enum mz_lookup endpoint_lookup(const struct mz_endpoint_key *key, struct mz_endpoint *out)
{
	return LOOKUP_COPY(&mz_endpoints, key, out, SAME_ENDPOINT_KEY);
}

/* The roles of host `host_ip` in VPC `vni` (0: none, or a reused entry). */
static __always_inline __u32 member_roles(__u32 vni, __u32 host_ip)
{
	struct mz_member_key key = { .vni = vni, .host_ip_be = host_ip };
	struct mz_member member;

	return LOOKUP_COPY(&mz_vpc_members, &key, &member, SAME_MEMBER_KEY) == MZ_FOUND ? member.roles : 0;
}

static __always_inline const struct mz_host_config *host_config(void)
{
	__u32 zero = 0;
	const struct mz_host_config *cfg = bpf_map_lookup_elem(&mz_config, &zero);

	return cfg && (cfg->flags & MZ_HOST_CONFIGURED) ? cfg : NULL;
}

/*
 * Symmetric flow hash of two addresses as loaded from the packet (network-order bytes read as a
 * native u32): both directions of a flow pick the same bouncer. Mirrored by
 * mizar_ebpf::flow_hash, and a kernel test checks that the two agree.
 */
static __always_inline __u32 mz_flow_hash(__u32 a, __u32 b)
{
	__u32 lo = a < b ? a : b;
	__u32 hi = a < b ? b : a;
	__u32 h = lo * 0x9e3779b1u;

	h ^= hi;
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* Whether tunnel packets from this underlay address are accepted (see mz_host_filter). */
static __always_inline int host_is_known(__u32 ip)
{
	__u32 base = (ip * MZ_HOST_SLOT_MULTIPLIER) >> (32 - MZ_HOST_FILTER_BITS);

	if (!ip)
		return 0;
#pragma unroll
	for (__u32 i = 0; i < MZ_HOST_FILTER_WINDOW; i++) {
		__u32 slot = (base + i) & (MZ_HOST_FILTER_SLOTS - 1);
		__u32 *entry = bpf_map_lookup_elem(&mz_host_filter, &slot);

		if (entry && *entry == ip)
			return 1;
	}
	return 0;
}

enum mz_route {
	MZ_ROUTE_TO_BOUNCER,      /* network known: one of its bouncers */
	MZ_ROUTE_CHANGED,         /* the VPC's entry was reused for another VPC while read */
	MZ_ROUTE_TO_DIVIDER,      /* network unknown here: one of the VPC's dividers */
	MZ_ROUTE_UNKNOWN_VPC,
	MZ_ROUTE_UNKNOWN_NETWORK, /* this host divides the VPC and has no such network */
	MZ_ROUTE_UNKNOWN_ENDPOINT, /* this host bounces the network and has no such endpoint */
	MZ_ROUTE_NO_BOUNCER,
	MZ_ROUTE_NO_DIVIDER,
};

/* Seed steps 4 and 5: where to send a packet whose endpoint's host is not known here. The VPC
 * is looked up only when the network is not found: a known network implies its VPC. The chosen
 * next hop is copied to `next` (mz_networks is an LPM trie, which frees replaced nodes only after
 * an RCU grace period; mz_vpcs is a reusable hash, checked by its key copy). */
static __always_inline enum mz_route route_by_network(__u32 vni, __u32 src, __u32 dst, __u32 self,
						      struct mz_next_hop *next)
{
	struct mz_network_key key = {
		.prefixlen = 64,
		.vni_be = bpf_htonl(vni),
		.prefix_be = dst,
	};
	const struct mz_network *net = bpf_map_lookup_elem(&mz_networks, &key);
	const struct mz_vpc *vpc;
	__u32 hash = mz_flow_hash(src, dst);
	__u32 idx, divider_count;

	if (net) {
		if (net->bouncer_count == 0)
			return MZ_ROUTE_NO_BOUNCER;
		idx = hash % net->bouncer_count;
		if (idx >= MZ_MAX_BOUNCERS)
			return MZ_ROUTE_NO_BOUNCER;
		__builtin_memcpy(next, &net->bouncers[idx], sizeof(*next));
		/* The network's bouncers know all its endpoints: if one of them is us, it does not exist. */
		return next->ip_be == self ? MZ_ROUTE_UNKNOWN_ENDPOINT : MZ_ROUTE_TO_BOUNCER;
	}
	vpc = bpf_map_lookup_elem(&mz_vpcs, &vni);
	if (!vpc)
		return MZ_ROUTE_UNKNOWN_VPC;
	if (vpc->flags & MZ_VPC_THIS_HOST_DIVIDES)
		return MZ_ROUTE_UNKNOWN_NETWORK;
	divider_count = vpc->divider_count;
	if (divider_count == 0)
		return MZ_ROUTE_NO_DIVIDER;
	idx = hash % divider_count;
	if (idx >= MZ_MAX_DIVIDERS)
		return MZ_ROUTE_NO_DIVIDER;
	__builtin_memcpy(next, &vpc->dividers[idx], sizeof(*next));
	asm volatile("" ::: "memory");
	if (READ_KEY_ONCE(vpc->vni) != vni)
		return MZ_ROUTE_CHANGED;
	return next->ip_be == self ? MZ_ROUTE_UNKNOWN_NETWORK : MZ_ROUTE_TO_DIVIDER;
}

static __always_inline struct mz_endpoint_stats *endpoint_stats(__u32 slot)
{
	return bpf_map_lookup_elem(&mz_endpoint_stats, &slot);
}

_Static_assert(sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr) +
		       sizeof(struct genevehdr) + sizeof(struct mz_source_host_opt) ==
		       MZ_ENCAP_OVERHEAD,
	       "MZ_ENCAP_OVERHEAD is stale");

#endif /* MZ_PIPELINE_H */
