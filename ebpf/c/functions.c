/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The built-in network functions, placed in chains at the pipeline's stages (see mizar_fn.h for
 * what a function is, and how it hands a packet on or drops it).
 *
 * - mz_fn_count: hands every packet on; its counters show what reached that point of the chain
 *   (a probe), and chains of it measure what the chain mechanism costs.
 * - mz_fn_ddos: a source blocklist and a per-source rate threshold, per VPC.
 * - mz_fn_ratelimit: token buckets (GCRA) per endpoint and per VPC, per direction.
 * - mz_fn_acl: ordered allow/deny rules per VPC and direction, stateful (see mizar_abi.h).
 */
#include "mizar_fn.h"
#include "lookup.h"
#include "tap.h"
#include <bpf/bpf_endian.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>

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

/* Counts one event in `key`'s window of `limit`; whether it went over. Shared by the CPUs (see
 * ddos_over_rate). */
static __always_inline int window_over(void *windows, const void *key,
				       const struct mz_ddos_limit *limit, __u64 now)
{
	struct mz_ddos_source *seen, fresh;

	seen = bpf_map_lookup_elem(windows, key);
	if (!seen || now - seen->window_start_ns >= limit->window_ns) {
		fresh.window_start_ns = now;
		fresh.packets = 1;
		bpf_map_update_elem(windows, key, &fresh, BPF_ANY);
		return 0;
	}
	return __sync_fetch_and_add(&seen->packets, 1) + 1 > limit->packets;
}

/* Whether `src` went over its VPC's threshold in the current window. The count is shared by
 * the CPUs (an atomic add: only sources of a VPC with a threshold pay it), so a source spread
 * over several receive queues gets no more; two CPUs opening a window at once may each count
 * from 1, which lets at most one packet per CPU more through. */
static __always_inline int ddos_over_rate(__u32 vni, __u32 src)
{
	struct mz_ddos_source_key key = { .vni = vni, .ip_be = src };
	const struct mz_ddos_limit *limit;
	__u32 any = 0;

	limit = bpf_map_lookup_elem(&mz_ddos_limits, &vni);
	if (!limit)
		limit = bpf_map_lookup_elem(&mz_ddos_limits, &any);
	if (!limit || !limit->packets)
		return 0;
	/* The coarse clock: a tick's precision is plenty for windows of 10 ms and more. */
	return window_over(&mz_ddos_sources, &key, limit, bpf_ktime_get_coarse_ns());
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_DDOS_LIMITS);
	__type(key, __u32); /* VNI; 0 = the default */
	__type(value, struct mz_ddos_limit); /* packets: SYNs per window, per destination */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_ddos_syn_limits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MZ_MAX_DDOS_SYN_DESTS);
	__type(key, struct mz_ddos_source_key); /* the destination */
	__type(value, struct mz_ddos_source);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_ddos_syn_dests SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MZ_MAX_DDOS_ESTABLISHED);
	__type(key, struct mz_ddos_pair_key);
	__type(value, __u64); /* when last seen (ns) */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_ddos_established SEC(".maps");

/* The TCP flags of the inner packet (FIN 1, SYN 2, RST 4, ACK 16), or -1 if it is not a
 * first fragment of TCP with its header there. */
static __always_inline int inner_tcp_flags(struct xdp_md *ctx, __u32 offset)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *ip;
	__u8 *tcp;

	if (!offset || offset > 512)
		return -1;
	ip = data + offset;
	if ((void *)(ip + 1) > end || ip->ihl < 5 || ip->protocol != IPPROTO_TCP ||
	    ip->frag_off & bpf_htons(0x1fff))
		return -1;
	tcp = (__u8 *)ip + ip->ihl * 4;
	if ((void *)(tcp + 14) > end)
		return -1;
	return tcp[13];
}

/* The SYN-flood guard: whether this packet is a SYN to drop. Remembers sources that complete
 * handshakes with a destination of a guarded VPC. */
static __always_inline int syn_flood(struct xdp_md *ctx, const struct mz_meta *m, __u32 vni,
				     __u32 src)
{
	struct mz_ddos_pair_key pair = { .vni = vni, .src_be = src, .dst_be = m->d.inner_dst_be };
	struct mz_ddos_source_key dest = { .vni = vni, .ip_be = m->d.inner_dst_be };
	const struct mz_ddos_limit *limit;
	__u32 any = 0;
	__u64 now, *known;
	int flags;

	limit = bpf_map_lookup_elem(&mz_ddos_syn_limits, &vni);
	if (!limit)
		limit = bpf_map_lookup_elem(&mz_ddos_syn_limits, &any);
	if (!limit || !limit->packets)
		return 0;
	flags = inner_tcp_flags(ctx, m->d.inner_ip_offset);
	if (flags < 0)
		return 0;
	now = bpf_ktime_get_coarse_ns();
	if ((flags & 0x12) == 0x10) {
		known = bpf_map_lookup_elem(&mz_ddos_established, &pair);
		if (!known || now - *known >= MZ_DDOS_ESTABLISHED_REFRESH_NS)
			bpf_map_update_elem(&mz_ddos_established, &pair, &now, BPF_ANY);
		return 0;
	}
	if ((flags & 0x12) != 0x02 || !window_over(&mz_ddos_syn_dests, &dest, limit, now))
		return 0;
	known = bpf_map_lookup_elem(&mz_ddos_established, &pair);
	return !known || now - *known >= MZ_DDOS_ESTABLISHED_NS;
}

/*
 * mz_fn_ddos: drops packets from blocked sources (reason 0), from sources over their VPC's
 * packet-rate threshold (reason 1, until their window ends), and SYNs over a destination's
 * new-connection threshold from sources without an established connection to it (reason 2).
 * Tenants are kept apart: a VPC's rules match its own VNI only, and sources and destinations
 * are tracked per VPC.
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
		return mz_fn_drop(ctx, m, MZ_DDOS_DROP_BLOCKED);
	if (ddos_over_rate(vni, src))
		return mz_fn_drop(ctx, m, MZ_DDOS_DROP_RATE);
	if (vni && syn_flood(ctx, m, vni, src))
		return mz_fn_drop(ctx, m, MZ_DDOS_DROP_SYN_FLOOD);
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
		return mz_fn_drop(ctx, m, over == 1 ? MZ_RL_DROP_ENDPOINT_PACKETS : MZ_RL_DROP_ENDPOINT_BYTES);
	key.ip_be = 0;
	over = rl_over(&key, now, m->d.packet_len);
	if (over)
		return mz_fn_drop(ctx, m, over == 1 ? MZ_RL_DROP_VPC_PACKETS : MZ_RL_DROP_VPC_BYTES);
	return mz_fn_next(ctx, m);
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_ACL_VPCS);
	/* Not preallocated: an update replaces the element and frees the old one after a grace
	 * period, so a reader never sees a half-written VPC. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32); /* VNI */
	__type(value, struct mz_acl_vpc);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_acl_vpcs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_ACL_ADDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_acl_host_key);
	__type(value, __u32); /* the address class */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_acl_hosts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MZ_MAX_ACL_ADDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_acl_addr_key);
	__type(value, __u32); /* the address class */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_acl_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MZ_MAX_ACL_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_acl_rule_key);
	__type(value, struct mz_acl_decision);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_acl_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MZ_MAX_ACL_RULES);
	__type(key, __u32); /* the rule's id; the appliance creates the entries */
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_acl_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MZ_MAX_ACL_FLOWS);
	__type(key, struct mz_acl_flow_key);
	__type(value, struct mz_acl_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_acl_flows SEC(".maps");

/* ICMP echo (linux/icmp.h pulls in libc's socket headers, which a BPF build cannot use). */
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
struct icmp_echo {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u16 id_be;
	__u16 sequence_be;
};

/* What the ACL needs of a packet: its ends and protocol, ports as the flow key has them. */
struct acl_packet {
	__u32 src_be;
	__u32 dst_be;
	__u16 sport_be;
	__u16 dport_be;  /* the port rules match (ICMP echo: 0) */
	__u16 id_be;     /* ICMP echo identifier */
	__u8 proto;
	__u8 tcp_flags;  /* FIN 1, SYN 2, RST 4, ACK 16 */
	__u8 tracked;    /* whether the packet belongs to a flow the ACL tracks */
};

/* Parses the inner IPv4 packet at `offset`. A non-first fragment has no transport header: it
 * is judged with port 0 (so a port rule does not match it) and not tracked. */
static __always_inline int acl_parse(struct xdp_md *ctx, __u32 offset, struct acl_packet *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *ip;
	void *l4;

	if (offset > 512)
		return -1;
	ip = data + offset;
	if ((void *)(ip + 1) > end || ip->ihl < 5)
		return -1;
	p->src_be = ip->saddr;
	p->dst_be = ip->daddr;
	p->proto = ip->protocol;
	p->sport_be = 0;
	p->dport_be = 0;
	p->id_be = 0;
	p->tcp_flags = 0;
	p->tracked = 0;
	if (ip->frag_off & bpf_htons(0x1fff))
		return 0;
	l4 = (void *)ip + ip->ihl * 4;
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > end)
			return -1;
		p->sport_be = tcp->source;
		p->dport_be = tcp->dest;
		p->tcp_flags = ((__u8 *)tcp)[13];
		p->tracked = 1;
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > end)
			return -1;
		p->sport_be = udp->source;
		p->dport_be = udp->dest;
		p->tracked = 1;
	} else if (p->proto == IPPROTO_ICMP) {
		struct icmp_echo *icmp = l4;

		if ((void *)(icmp + 1) > end)
			return -1;
		if (icmp->type == ICMP_ECHO || icmp->type == ICMP_ECHOREPLY) {
			p->id_be = icmp->id_be;
			p->tracked = 1;
		}
	} else {
		p->tracked = 1;
	}
	return 0;
}

static __always_inline __u32 acl_class(__u32 tag, __u32 ip_be)
{
	struct mz_acl_host_key host = { .tag_be = bpf_htonl(tag), .ip_be = ip_be };
	struct mz_acl_addr_key key = { .prefixlen = 64, .tag_be = bpf_htonl(tag), .ip_be = ip_be };
	__u32 *class = bpf_map_lookup_elem(&mz_acl_hosts, &host);

	if (class)
		return *class;
	class = bpf_map_lookup_elem(&mz_acl_addrs, &key);
	return class ? *class : 0;
}

/* The first matching rule's decision for src -> dst (proto, dport) in `direction`, or the
 * VPC's default (rule 0). */
static __always_inline struct mz_acl_decision acl_judge(__u32 vni, const struct mz_acl_vpc *vpc,
							__u32 direction, __u32 src_be, __u32 dst_be,
							__u8 proto, __u16 dport_be)
{
	__u32 tag = MZ_ACL_TAG(vni, vpc->generation & 1, direction & 1, 0);
	struct mz_acl_decision *hit, out;
	struct mz_acl_rule_key key = {
		.prefixlen = 120,
		.tag_be = bpf_htonl(tag),
		.src_class_be = bpf_htonl(acl_class(tag, src_be)),
		.dst_class_be = bpf_htonl(acl_class(tag | 1, dst_be)),
		.proto = proto,
	};

	__builtin_memcpy(key.port_be, &dport_be, 2);
	hit = bpf_map_lookup_elem(&mz_acl_rules, &key);
	if (!hit && key.dst_class_be) {
		key.dst_class_be = 0;
		hit = bpf_map_lookup_elem(&mz_acl_rules, &key);
	}
	if (!hit && key.src_class_be) {
		key.src_class_be = 0;
		hit = bpf_map_lookup_elem(&mz_acl_rules, &key);
	}
	if (hit) {
		out = *hit;
	} else {
		out.action = direction ? vpc->default_action[1] : vpc->default_action[0];
		out.rule = 0;
	}
	return out;
}

static __always_inline void acl_count_hit(__u32 rule)
{
	__u64 *hits;

	if (!rule)
		return;
	hits = bpf_map_lookup_elem(&mz_acl_hits, &rule);
	if (hits)
		*hits += 1;
}

static __always_inline __u64 acl_flow_timeout(__u8 proto, __u8 seen)
{
	if (proto != IPPROTO_TCP)
		return MZ_ACL_OTHER_NS;
	if (seen & MZ_ACL_SEEN_RST || (seen & (MZ_ACL_SEEN_FIN_A | MZ_ACL_SEEN_FIN_B)) ==
					     (MZ_ACL_SEEN_FIN_A | MZ_ACL_SEEN_FIN_B))
		return MZ_ACL_TCP_CLOSED_NS;
	return seen & MZ_ACL_SEEN_REPLY ? MZ_ACL_TCP_OPEN_NS : MZ_ACL_TCP_SYN_NS;
}

/* What this packet tells of the flow (from_b: it was sent by end b). */
static __always_inline __u8 acl_seen(const struct acl_packet *p, int from_b, __u8 origin)
{
	__u8 seen = 0;

	if (from_b != origin)
		seen |= MZ_ACL_SEEN_REPLY;
	if (p->tcp_flags & 1)
		seen |= from_b ? MZ_ACL_SEEN_FIN_B : MZ_ACL_SEEN_FIN_A;
	if (p->tcp_flags & 4)
		seen |= MZ_ACL_SEEN_RST;
	return seen;
}

/*
 * mz_fn_acl: a packet of a tracked flow passes; otherwise the rules of its VPC and direction
 * judge it: denied, it is dropped (reason 0: by a rule, 1: by the default); allowed, it opens a
 * flow. Tenants are kept apart: rules, classes and flows are all keyed with the VNI.
 */
SEC("xdp")
int mz_fn_acl(struct xdp_md *ctx)
{
	struct mz_meta *m = mz_fn_meta();
	struct mz_acl_flow_key fk = {};
	struct mz_acl_decision decision;
	struct mz_acl_flow *flow, fresh;
	struct mz_acl_vpc *live, vpc;
	struct acl_packet p;
	__u32 vni, direction;
	int from_b;
	__u64 now;

	if (!m)
		return XDP_ABORTED;
	vni = m->d.vni;
	if (!vni || !m->d.inner_ip_offset)
		return mz_fn_next(ctx, m);
	live = bpf_map_lookup_elem(&mz_acl_vpcs, &vni);
	if (!live)
		return mz_fn_next(ctx, m);
	vpc = *live;
	if (acl_parse(ctx, m->d.inner_ip_offset, &p))
		return mz_fn_drop(ctx, m, MZ_ACL_DROP_MALFORMED);
	direction = m->d.stage == MZ_CHAIN_EGRESS ? MZ_ACL_EGRESS : MZ_ACL_INGRESS;
	if (!p.tracked) {
		decision = acl_judge(vni, &vpc, direction, p.src_be, p.dst_be, p.proto, 0);
		acl_count_hit(decision.rule);
		if (decision.action != MZ_ACL_ALLOW)
			return mz_fn_drop(ctx, m, decision.rule ? MZ_ACL_DROP_RULE : MZ_ACL_DROP_DEFAULT);
		return mz_fn_next(ctx, m);
	}

	/* The flow's key: ends in a fixed order, so both ways find the same entry. */
	__u16 sport = p.proto == IPPROTO_ICMP ? p.id_be : p.sport_be;
	__u16 dport = p.proto == IPPROTO_ICMP ? p.id_be : p.dport_be;
	__u64 src_end = ((__u64)bpf_ntohl(p.src_be) << 16) | bpf_ntohs(sport);
	__u64 dst_end = ((__u64)bpf_ntohl(p.dst_be) << 16) | bpf_ntohs(dport);

	from_b = src_end > dst_end;
	fk.vni = vni;
	fk.proto = p.proto;
	fk.a_ip_be = from_b ? p.dst_be : p.src_be;
	fk.b_ip_be = from_b ? p.src_be : p.dst_be;
	fk.a_port_be = from_b ? dport : sport;
	fk.b_port_be = from_b ? sport : dport;
	now = bpf_ktime_get_coarse_ns();
	flow = bpf_map_lookup_elem(&mz_acl_flows, &fk);
	if (flow && now - flow->last_seen_ns <= acl_flow_timeout(p.proto, flow->seen)) {
		if (flow->epoch != vpc.epoch) {
			/* Opened before a cut: judged again as its first packet was. */
			__u8 origin = flow->origin;
			__u16 first_dport = origin ? fk.a_port_be : fk.b_port_be;

			decision = acl_judge(vni, &vpc, flow->direction, origin ? fk.b_ip_be : fk.a_ip_be,
					     origin ? fk.a_ip_be : fk.b_ip_be, p.proto,
					     p.proto == IPPROTO_ICMP ? 0 : first_dport);
			if (decision.action != MZ_ACL_ALLOW) {
				bpf_map_delete_elem(&mz_acl_flows, &fk);
				return mz_fn_drop(ctx, m, MZ_ACL_DROP_CUT);
			}
			flow->epoch = vpc.epoch;
		}
		flow->last_seen_ns = now;
		flow->seen |= acl_seen(&p, from_b, flow->origin);
		return mz_fn_next(ctx, m);
	}

	decision = acl_judge(vni, &vpc, direction, p.src_be, p.dst_be, p.proto,
			     p.proto == IPPROTO_ICMP ? 0 : p.dport_be);
	acl_count_hit(decision.rule);
	if (decision.action != MZ_ACL_ALLOW)
		return mz_fn_drop(ctx, m, decision.rule ? MZ_ACL_DROP_RULE : MZ_ACL_DROP_DEFAULT);
	fresh.last_seen_ns = now;
	fresh.epoch = vpc.epoch;
	fresh.origin = from_b;
	fresh.direction = direction;
	fresh.pad = 0;
	fresh.seen = acl_seen(&p, from_b, from_b);
	bpf_map_update_elem(&mz_acl_flows, &fk, &fresh, BPF_ANY);
	return mz_fn_next(ctx, m);
}

/*
 * mz_fn_tap: records the packet, with the decision as it stands here, when the capture's filter
 * accepts it (tap.h), then hands it on.
 */
SEC("xdp")
int mz_fn_tap(struct xdp_md *ctx)
{
	struct mz_meta *m = mz_fn_meta();
	struct mz_tap_site site = {};
	__u32 pos;

	if (!m)
		return XDP_ABORTED;
	pos = m->chain_pos;
	site.point = MZ_TAP_CHAIN;
	site.instance = pos < MZ_MAX_CHAIN ? m->instance[pos & (MZ_MAX_CHAIN - 1)] : 0;
	site.stage = m->d.stage;
	site.verdict = m->d.verdict;
	site.reason = m->d.reason;
	site.fn_drop = m->fn_reason;
	site.vni = m->d.vni;
	mz_tap(ctx, &site);
	return mz_fn_next(ctx, m);
}
