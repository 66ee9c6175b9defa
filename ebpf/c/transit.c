/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Transit XDP: on the host's underlay interface, plays bouncer and divider for Geneve traffic
 * (the seed design's procedure, steps 1 to 5). Where the procedure decides to deliver or
 * forward, it either applies the decision at once or, when the stage is armed (functions sit
 * there), hands it untouched to the stage's chain (`chain:`), whose exit applies it. Passes and
 * drops leave through `out:`, which hands them to their stage's chain the same way. Either way
 * the reason is counted once.
 */
#include "pipeline.h"
#include "tap.h"

/* transit_tapped.c builds this file again with MZ_TAPPED 1: mz_transit_tapped, the copy with the
 * taps, which a capture puts on the underlay's link in place of mz_transit for its time (one
 * atomic link update each way). A constant of the preprocessor, so that the plain copy is
 * compiled from exactly the code it had before taps (a dead branch left in, a second copy in
 * one unit, or even a tested flag changed its code: 3-8 ns a packet). */
#ifndef MZ_TAPPED
#define MZ_TAPPED 0
#endif
#if MZ_TAPPED
#define MZ_TRANSIT_PROGRAM mz_transit_tapped
#else
#define MZ_TRANSIT_PROGRAM mz_transit
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EXIT(v, s, r)                                                                          \
	do {                                                                                   \
		verdict = (v);                                                                 \
		stage = (s);                                                                   \
		reason = (r);                                                                  \
		goto out;                                                                      \
	} while (0)
/* The stage has functions: the decision goes to them (m filled), not applied here. */
#define HAND_OVER(v, s, r)                                                                     \
	do {                                                                                   \
		verdict = (v);                                                                 \
		stage = (s);                                                                   \
		reason = (r);                                                                  \
		goto chain;                                                                    \
	} while (0)
#define ARMED(s) (cfg && (cfg->flags & MZ_HOST_STAGE_ARMED(s)))
#define PASS(r) EXIT(XDP_PASS, MZ_STAGE_ON_XDP_PASS, r)
#define DROP(r) EXIT(XDP_DROP, MZ_STAGE_ON_XDP_DROP, r)

/*
 * Direct path: remember which host the inner source lives on. The per-CPU cache answers for a
 * steady flow without a hash lookup; the shared map is written only when what it holds changes.
 * Only a host with endpoints in the VPC can be an endpoint's home (`roles` are the claimed
 * host's, when the caller already knows them).
 */
static __always_inline void learn_source_host(__u32 vni, __u32 src_ip, __u32 src_host, __u32 self, __u32 roles)
{
	struct mz_endpoint_key key = { .vni = vni, .ip_be = src_ip };
	struct mz_learned_host learned = { .key = key, .host_ip_be = src_host };
	__u32 slot = mz_flow_hash(vni, src_ip) & (MZ_LEARNED_CACHE_SLOTS - 1);
	struct mz_learned_cache_entry *seen;
	struct mz_learned_host known;

	if (!src_host || src_host == self)
		return;
	seen = bpf_map_lookup_elem(&mz_learned_cache, &slot);
	if (!seen || (seen->vni == vni && seen->ip_be == src_ip && seen->host_ip_be == src_host))
		return;
	if (LOOKUP_COPY(&mz_learned, &key, &known, SAME_ENDPOINT_KEY) != MZ_FOUND ||
	    known.host_ip_be != src_host) {
		if (!(roles & MZ_MEMBER_ENDPOINTS))
			return;
		bpf_map_update_elem(&mz_learned, &key, &learned, BPF_ANY);
	}
	seen->vni = vni;
	seen->ip_be = src_ip;
	seen->host_ip_be = src_host;
}

/*
 * Geneve options are TLVs: ours are read, others skipped, unknown critical ones refused. Our
 * own single option, what Mizar peers send, is read in place; anything else is walked with a
 * scalar offset and checked loads, so the verifier's work does not grow per option.
 */
static __always_inline __u32 read_options(struct xdp_md *ctx, struct cursor *c, __u32 len, __u32 *source_host)
{
	struct mz_source_host_opt *own = c->pos;
	__u32 offset = c->pos - (void *)(long)ctx->data;

	if (len == 0)
		return 0;
	if (len == sizeof(*own) && (void *)(own + 1) <= c->end &&
	    own->hdr.opt_class == bpf_htons(MZ_GENEVE_OPT_CLASS) &&
	    own->hdr.type == MZ_GENEVE_OPT_SOURCE_HOST && (own->hdr.length & 0x1f) == 1) {
		*source_host = own->host_ip;
		return 0;
	}
	for (__u32 i = 0, off = 0; i < MZ_GENEVE_MAX_OPT_WORDS && off < len; i++) {
		struct geneve_opt opt;
		__u32 data_len;

		if (off + sizeof(opt) > len || bpf_xdp_load_bytes(ctx, offset + off, &opt, sizeof(opt)))
			return MZ_DROP_MALFORMED_OPTION;
		off += sizeof(opt);
		data_len = (opt.length & 0x1f) * 4;
		if (off + data_len > len)
			return MZ_DROP_MALFORMED_OPTION;
		if (opt.opt_class == bpf_htons(MZ_GENEVE_OPT_CLASS) && opt.type == MZ_GENEVE_OPT_SOURCE_HOST &&
		    data_len == sizeof(*source_host)) {
			if (bpf_xdp_load_bytes(ctx, offset + off, source_host, sizeof(*source_host)))
				return MZ_DROP_MALFORMED_OPTION;
		} else if (opt.type & MZ_GENEVE_OPT_CRITICAL) {
			return MZ_DROP_CRITICAL_OPTION;
		}
		off += data_len;
	}
	return 0;
}

/* Bouncer and divider forwarding: re-address the outer headers to the next host (TTL checked
 * when the decision was made). */
static __always_inline void forward_to_host(struct ethhdr *eth, struct iphdr *ip, struct udphdr *udp,
					    const struct mz_host_config *cfg, __u32 next_ip, const __u8 *next_mac)
{
	__u16 old_ttl_proto = *(__u16 *)&ip->ttl;

	ip->ttl--;
	csum_replace2(&ip->check, old_ttl_proto, *(__u16 *)&ip->ttl);
	/* The outer source becomes us (what a routed underlay's reverse-path check expects); the
	 * source-host option still names the original sender. */
	csum_replace4(&ip->check, ip->saddr, cfg->host_ip_be);
	ip->saddr = cfg->host_ip_be;
	csum_replace4(&ip->check, ip->daddr, next_ip);
	ip->daddr = next_ip;
	/* The pseudo-header changed; a zero UDP checksum is valid over IPv4 (RFC 8926 3.3). */
	udp->check = 0;
	mac_copy(eth->h_source, cfg->host_mac);
	mac_copy(eth->h_dest, next_mac);
}

/*
 * The actions a decision may need, each in one place: applied where the decision is made when
 * its stage has no function, and by the chain's exit (from the offsets recorded in mz_meta)
 * after the stage's functions. Each returns the verdict, or XDP_DROP when the packet cannot be
 * rewritten (counted by the caller).
 */
static __always_inline __u32 deliver_decap(struct xdp_md *ctx, struct ethhdr *inner_eth, void *data_end,
					   const __u8 *mac, __u32 ifindex, __u32 stats_slot)
{
	struct mz_endpoint_stats *ep_stats;
	__u32 len;

	mac_copy(inner_eth->h_dest, mac);
	len = data_end - (void *)inner_eth;
	if (bpf_xdp_adjust_head(ctx, (void *)inner_eth - (void *)(long)ctx->data))
		return XDP_DROP;
	/* Counted once the delivery cannot fail any more. */
	ep_stats = endpoint_stats(stats_slot);
	if (ep_stats) {
		ep_stats->rx_packets++;
		ep_stats->rx_bytes += len;
	}
	bpf_redirect(ifindex, 0);
	return XDP_REDIRECT;
}

static __always_inline __u32 deliver_whole(__u32 ifindex, __u32 stats_slot, __u64 len)
{
	struct mz_endpoint_stats *ep_stats = endpoint_stats(stats_slot);

	if (ep_stats) {
		ep_stats->rx_packets++;
		ep_stats->rx_bytes += len;
	}
	bpf_redirect(ifindex, 0);
	return XDP_REDIRECT;
}

/* The chain's exit: the decision's action from what mz_meta recorded. */
static __always_inline __u32 apply_decision(struct xdp_md *ctx, const struct mz_host_config *cfg,
					    const struct mz_decision *d)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data, *inner_eth;
	struct iphdr *ip;
	struct udphdr *udp;

	switch (d->action) {
	case MZ_ACTION_DELIVER:
		inner_eth = data + (d->inner_offset & 0x3ff);
		if ((void *)(inner_eth + 1) > data_end)
			return XDP_DROP;
		return deliver_decap(ctx, inner_eth, data_end, d->mac, d->ifindex, d->stats_slot);
	case MZ_ACTION_DELIVER_BYPASS:
		return deliver_whole(d->ifindex, d->stats_slot, data_end - data);
	case MZ_ACTION_FORWARD:
		ip = data + sizeof(*eth);
		udp = data + (d->outer_l4_offset & 0xff);
		if ((void *)(ip + 1) > data_end || (void *)(udp + 1) > data_end)
			return XDP_DROP;
		forward_to_host(eth, ip, udp, cfg, d->next_hop_be, d->mac);
		return XDP_TX;
	default:
		return d->verdict;
	}
}

/*
 * The packet's metadata for the chain of `stage`: the decision, and what a function may read of
 * the packet, parsed again here (only packets handed to a chain pay for it, and the main path
 * keeps no extra values live: BPF has four callee-saved registers). The VNI and the inner
 * addresses are as the packet carries them; at ON_XDP_DROP that may be before any check.
 */
static __always_inline struct mz_meta *chain_meta(struct xdp_md *ctx, __u32 stage, __u32 verdict,
						  __u32 reason, __u32 action)
{
	struct mz_meta *m = mz_fn_meta();
	struct ethhdr *eth, *inner_eth;
	struct iphdr *ip, *inner_ip;
	struct genevehdr *geneve;
	struct udphdr *udp;
	struct cursor c;

	if (!m)
		return NULL;
	m->d.stage = stage;
	m->d.verdict = verdict;
	m->d.reason = reason;
	m->d.action = action;
	m->fn_reason = 0;
	cursor_init(&c, ctx);
	m->d.packet_len = c.end - c.pos;
	m->d.vni = 0;
	m->d.outer_src_be = 0;
	m->d.inner_src_be = 0;
	m->d.inner_dst_be = 0;
	m->d.inner_ip_offset = 0;
	eth = CURSOR_TAKE(&c, struct ethhdr);
	if (!eth || eth->h_proto != bpf_htons(ETH_P_IP))
		return m;
	ip = CURSOR_TAKE(&c, struct iphdr);
	if (!ip || ip->ihl < 5)
		return m;
	m->d.outer_src_be = ip->saddr;
	if (ip->protocol != IPPROTO_UDP || ipv4_is_fragment(ip))
		return m;
	c.pos = (void *)ip + ip->ihl * 4;
	udp = CURSOR_TAKE(&c, struct udphdr);
	if (!udp || udp->dest != bpf_htons(MZ_GENEVE_PORT))
		return m;
	geneve = CURSOR_TAKE(&c, struct genevehdr);
	if (!geneve || geneve->protocol != bpf_htons(MZ_ETH_P_TEB))
		return m;
	m->d.vni = geneve_vni(geneve);
	c.pos += GENEVE_OPT_BYTES(geneve);
	inner_eth = CURSOR_TAKE(&c, struct ethhdr);
	if (!inner_eth || inner_eth->h_proto != bpf_htons(ETH_P_IP))
		return m;
	inner_ip = CURSOR_TAKE(&c, struct iphdr);
	if (!inner_ip)
		return m;
	m->d.inner_src_be = inner_ip->saddr;
	m->d.inner_dst_be = inner_ip->daddr;
	m->d.inner_ip_offset = (void *)inner_ip - (void *)eth;
	return m;
}

/* Appends a scoped plan to the packet's chain (the appliance keeps the sum within
 * MZ_MAX_CHAIN; what would go past it is left out). */
static __always_inline void append_plan(struct mz_meta *m, const struct mz_chain *plan)
{
	__u32 len = m->chain_len;

	if (!plan)
		return;
#pragma unroll
	for (__u32 i = 0; i < MZ_MAX_CHAIN; i++) {
		if (i >= plan->len || len >= MZ_MAX_CHAIN)
			break;
		m->chain[len & (MZ_MAX_CHAIN - 1)] = plan->slots[i];
		m->instance[len & (MZ_MAX_CHAIN - 1)] = plan->instance[i];
		len++;
	}
	m->chain_len = len;
}

/* The chain's entry, one per generation: copies the stage's plan of that generation into the
 * packet's metadata, then the plans of the packet's VPC and endpoint, and starts it. */
static __always_inline int chain_entry(struct xdp_md *ctx, __u32 generation)
{
	struct mz_meta *m = mz_fn_meta();
	const struct mz_host_config *cfg;
	struct mz_chain_stats *cs;
	const struct mz_chain *plan;
	__u32 stage, index;

	if (!m)
		return XDP_DROP;
	stage = m->d.stage;
	if (stage >= MZ_CHAIN_POINTS)
		return XDP_DROP;
	index = stage * MZ_CHAIN_GENERATIONS + generation;
	plan = bpf_map_lookup_elem(&mz_chains, &index);
	cs = bpf_map_lookup_elem(&mz_chain_stats, &stage);
	if (cs)
		cs->runs++;
	m->chain_pos = 0;
	m->chain_len = 0;
	if (plan && plan->len > 0 && plan->len <= MZ_MAX_CHAIN) {
		m->chain_len = plan->len;
		__builtin_memcpy(m->chain, plan->slots, sizeof(m->chain));
		__builtin_memcpy(m->instance, plan->instance, sizeof(m->instance));
	}
	/* Then the VPC's chain, then the endpoint's, where the VPC is known and checked and some
	 * VPC or endpoint has a chain at this point. */
	cfg = host_config();
	/* Whether a function's drop goes to the exit, for the verdict tap (mz_fn_drop). */
	m->tap_verdict = cfg && (cfg->flags & MZ_HOST_TAP_POINT(stage == MZ_CHAIN_EGRESS ? MZ_TAP_EGRESS_VERDICT
											     : MZ_TAP_TRANSIT_VERDICT));
	if (m->d.vni && cfg && cfg->flags & MZ_HOST_STAGE_SCOPED(stage) &&
	    stage != MZ_STAGE_ON_XDP_PASS && stage != MZ_STAGE_ON_XDP_DROP) {
		struct mz_scope_key key = { .point = stage, .vni = m->d.vni, .ip_be = 0 };

		append_plan(m, bpf_map_lookup_elem(&mz_scoped_chains, &key));
		key.ip_be = stage == MZ_CHAIN_EGRESS ? m->d.inner_src_be : m->d.inner_dst_be;
		if (key.ip_be)
			append_plan(m, bpf_map_lookup_elem(&mz_scoped_chains, &key));
	}
	if (m->chain_len > 0) {
		mz_fn_mark_decision(m);
		m->clock_ns = (++m->sample_tick & (MZ_FN_SAMPLE_EVERY - 1)) ? 0 : bpf_ktime_get_ns();
		mz_fn_call(ctx, m->chain[0]);
		return mz_fn_chain_failed(ctx, m);
	}
	bpf_tail_call(ctx, &mz_stage_exit, mz_fn_exit_slot(m));
	return mz_fn_chain_failed(ctx, m);
}

#if !MZ_TAPPED
SEC("xdp")
int mz_chain_gen0(struct xdp_md *ctx)
{
	return chain_entry(ctx, 0);
}

SEC("xdp")
int mz_chain_gen1(struct xdp_md *ctx)
{
	return chain_entry(ctx, 1);
}

/* The end of every chain: applies the decision as the functions left it. */
SEC("xdp")
int mz_chain_exit(struct xdp_md *ctx)
{
	const struct mz_host_config *cfg = host_config();
	struct mz_meta *m = mz_fn_meta();
	struct mz_chain_stats *cs;
	__u32 stage, verdict, reason;

	if (!m)
		return XDP_DROP;
	stage = m->d.stage;
	verdict = m->d.verdict;
	reason = m->d.reason;
	cs = bpf_map_lookup_elem(&mz_chain_stats, &stage);
	if (verdict == XDP_PASS || verdict == XDP_DROP) {
		/* A plain verdict, or one a function chose instead of the pipeline's. */
	} else if (cfg) {
		verdict = apply_decision(ctx, cfg, &m->d);
		if (verdict == XDP_DROP)
			reason = MZ_DROP_ADJUST_FAILED;
	} else {
		verdict = XDP_DROP;
		reason = MZ_PASS_NOT_CONFIGURED;
	}
	if (cs) {
		if (reason == m->d.reason)
			cs->applied++;
		else
			cs->failed++;
	}
	/* A scaled endpoint's reason is counted by the function that takes it, else here. */
	if (stage == MZ_STAGE_ON_XDP_SCALED_EP)
		count(m->d.reason, m->d.packet_len);
	if (cfg && cfg->flags & MZ_HOST_TAP_POINT(MZ_TAP_TRANSIT_VERDICT))
		mz_tap_exit(ctx, m, MZ_TAP_TRANSIT_VERDICT, verdict, reason);
	return verdict;
}
#endif

/* The procedure (with the taps only in the MZ_TAPPED build). */
static __always_inline int transit(struct xdp_md *ctx, const struct mz_host_config *cfg)
{
	struct mz_endpoint ep;
	struct mz_next_hop hop;
	struct mz_meta *m = NULL;
	struct mz_endpoint_key ep_key;
	struct cursor c;
	struct ethhdr *eth, *inner_eth;
	struct iphdr *ip, *inner_ip;
	struct udphdr *udp;
	struct genevehdr *geneve;
	void *options_end;
	__u32 verdict, stage, reason, vni, source_host = 0, ihl_bytes, tot_len, err, roles;
#if MZ_TAPPED
	__u32 tapped_vni = 0; /* the VNI for the verdict tap, once read */
#endif
	__u32 options_len, datagram_len, inner_len;
	enum mz_lookup found;
	__u64 packet_len;

	cursor_init(&c, ctx);
	packet_len = c.end - c.pos;

	if (!cfg)
		PASS(MZ_PASS_NOT_CONFIGURED);
#if MZ_TAPPED
	mz_tap_number_packet();
	mz_tap_point(ctx, cfg->flags, MZ_TAP_TRANSIT_ENTRY, MZ_TAP_NONE, MZ_TAP_NONE, MZ_TAP_NONE, 0);
#endif

	/* Step 1: anything but Geneve addressed to this host belongs to the Linux stack. */
	eth = CURSOR_TAKE(&c, struct ethhdr);
	if (!eth || eth->h_proto != bpf_htons(ETH_P_IP))
		PASS(MZ_PASS_NOT_IPV4);
	ip = CURSOR_TAKE(&c, struct iphdr);
	if (!ip || ip->version != 4 || ip->ihl < 5)
		DROP(MZ_DROP_MALFORMED_IPV4);
	ihl_bytes = ip->ihl * 4;
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < ihl_bytes || (void *)ip + tot_len > c.end)
		DROP(MZ_DROP_MALFORMED_IPV4);
	if (ip->protocol != IPPROTO_UDP)
		PASS(MZ_PASS_NOT_UDP);
	if (ip->daddr != cfg->host_ip_be)
		PASS(MZ_PASS_NOT_FOR_THIS_HOST);
	/* A later fragment carries no UDP header to tell Geneve by; the stack has no Geneve device. */
	if (ip->frag_off & bpf_htons(0x1fff))
		PASS(MZ_PASS_IP_FRAGMENT);
	c.pos = (void *)ip + ihl_bytes;
	udp = CURSOR_TAKE(&c, struct udphdr);
	if (!udp)
		DROP(MZ_DROP_MALFORMED_UDP);
	if (udp->dest != bpf_htons(MZ_GENEVE_PORT))
		PASS(MZ_PASS_NOT_GENEVE_PORT);

	/* Only hosts we know may send tunnel packets: checked before any other verdict on them. */
	if (!host_is_known(ip->saddr))
		DROP(MZ_DROP_UNKNOWN_SOURCE_HOST);
	if (ipv4_is_fragment(ip))
		DROP(MZ_DROP_OUTER_FRAGMENT);
	if (bpf_ntohs(udp->len) != tot_len - ihl_bytes || tot_len - ihl_bytes < sizeof(*udp))
		DROP(MZ_DROP_MALFORMED_UDP);
	/* The Geneve packet is the UDP datagram: bytes after it in the frame (Ethernet padding, or
	 * anything a sender appends) are no part of it, so every layer must end inside it. */
	datagram_len = tot_len - ihl_bytes - sizeof(*udp);
	geneve = CURSOR_TAKE(&c, struct genevehdr);
	if (!geneve || datagram_len < sizeof(*geneve))
		DROP(MZ_DROP_MALFORMED_GENEVE);
	if (GENEVE_VERSION(geneve) != 0)
		DROP(MZ_DROP_GENEVE_VERSION);
	if (geneve->flags & GENEVE_FLAG_CONTROL)
		DROP(MZ_DROP_GENEVE_CONTROL);
	if (geneve->protocol != bpf_htons(MZ_ETH_P_TEB))
		PASS(MZ_PASS_NOT_ETHERNET);

	/* A host speaks only for the VPCs it has a role in. */
	vni = geneve_vni(geneve);
#if MZ_TAPPED
	tapped_vni = vni;
#endif
	roles = member_roles(vni, ip->saddr);
	if (!roles) {
		/* Only on the drop path: tell an unknown VPC from a stranger to it. */
		if (!bpf_map_lookup_elem(&mz_vpcs, &vni))
			DROP(MZ_DROP_UNKNOWN_VPC);
		DROP(MZ_DROP_NOT_VPC_MEMBER);
	}

	options_len = GENEVE_OPT_BYTES(geneve);
	options_end = c.pos + options_len;
	if (options_end > c.end || sizeof(*geneve) + options_len > datagram_len)
		DROP(MZ_DROP_MALFORMED_OPTION);
	err = read_options(ctx, &c, options_len, &source_host);
	if (err)
		DROP(err);
	c.pos = options_end;

	inner_eth = CURSOR_TAKE(&c, struct ethhdr);
	if (!inner_eth || sizeof(*geneve) + options_len + sizeof(*inner_eth) > datagram_len)
		DROP(MZ_DROP_MALFORMED_INNER);
	if (inner_eth->h_proto != bpf_htons(ETH_P_IP))
		DROP(MZ_DROP_INNER_NOT_IPV4);
	inner_ip = CURSOR_TAKE(&c, struct iphdr);
	if (!inner_ip || inner_ip->version != 4 || inner_ip->ihl < 5)
		DROP(MZ_DROP_MALFORMED_INNER);
	/* The whole inner packet, as its total length says, must be in the datagram: an endpoint is
	 * never handed a truncated packet, nor a bouncer made to forward one. */
	inner_len = bpf_ntohs(inner_ip->tot_len);
	if (inner_len < inner_ip->ihl * 4 ||
	    sizeof(*geneve) + options_len + sizeof(*inner_eth) + inner_len > datagram_len)
		DROP(MZ_DROP_MALFORMED_INNER);

	ep_key.vni = vni;
	ep_key.ip_be = inner_ip->daddr;
	found = endpoint_lookup(&ep_key, &ep);
	if (found == MZ_CHANGED)
		DROP(MZ_DROP_ENTRY_CHANGED);
	if (found == MZ_FOUND && ep.type == MZ_EP_SCALED)
		EXIT(XDP_DROP, MZ_STAGE_ON_XDP_SCALED_EP, MZ_DROP_NO_SCALED_FUNCTION);

	/* Step 2: an endpoint of this host. */
	if (found == MZ_FOUND && (ep.flags & MZ_EP_LOCAL)) {
		/* The option names the sender's host when the sender is that host; a bouncer or a
		 * divider forwards for others, and only then may it name another. */
		if (source_host == ip->saddr)
			learn_source_host(vni, inner_ip->saddr, source_host, cfg->host_ip_be, roles);
		else if (source_host && (roles & (MZ_MEMBER_BOUNCER | MZ_MEMBER_DIVIDER)))
			learn_source_host(vni, inner_ip->saddr, source_host, cfg->host_ip_be,
					  member_roles(vni, source_host));
		if (ep.flags & MZ_EP_BYPASS_DECAP) {
			if (ARMED(MZ_STAGE_ON_XDP_REDIRECT)) {
				m = chain_meta(ctx, MZ_STAGE_ON_XDP_REDIRECT, XDP_REDIRECT, MZ_DELIVER_LOCAL_BYPASS,
					       MZ_ACTION_DELIVER_BYPASS);
				if (m) {
					m->d.ifindex = ep.ifindex;
					m->d.stats_slot = ep.stats_slot;
					HAND_OVER(XDP_REDIRECT, MZ_STAGE_ON_XDP_REDIRECT, MZ_DELIVER_LOCAL_BYPASS);
				}
			}
			verdict = deliver_whole(ep.ifindex, ep.stats_slot, packet_len);
			EXIT(verdict, MZ_STAGE_ON_XDP_REDIRECT, MZ_DELIVER_LOCAL_BYPASS);
		}
		if (ARMED(MZ_STAGE_ON_XDP_REDIRECT)) {
			m = chain_meta(ctx, MZ_STAGE_ON_XDP_REDIRECT, XDP_REDIRECT, MZ_DELIVER_LOCAL,
				       MZ_ACTION_DELIVER);
			if (m) {
				m->d.ifindex = ep.ifindex;
				m->d.stats_slot = ep.stats_slot;
				m->d.inner_offset = (void *)inner_eth - (void *)eth;
				mac_copy(m->d.mac, ep.mac);
				HAND_OVER(XDP_REDIRECT, MZ_STAGE_ON_XDP_REDIRECT, MZ_DELIVER_LOCAL);
			}
		}
		if (deliver_decap(ctx, inner_eth, c.end, ep.mac, ep.ifindex, ep.stats_slot) != XDP_REDIRECT)
			DROP(MZ_DROP_ADJUST_FAILED);
		EXIT(XDP_REDIRECT, MZ_STAGE_ON_XDP_REDIRECT, MZ_DELIVER_LOCAL);
	}

	if (found == MZ_FOUND) {
		/* Step 3: bouncer. */
		if (ep.host_ip_be == cfg->host_ip_be)
			DROP(MZ_DROP_UNKNOWN_ENDPOINT); /* ours, but not attached here */
		hop.ip_be = ep.host_ip_be;
		mac_copy(hop.mac, ep.host_mac);
		reason = MZ_BOUNCER_FORWARD;
		goto forward;
	}

	/* Steps 4 and 5: divider, or on to a divider. */
	switch (route_by_network(vni, inner_ip->saddr, inner_ip->daddr, cfg->host_ip_be, &hop)) {
	case MZ_ROUTE_TO_BOUNCER:
		reason = MZ_DIVIDER_FORWARD;
		break;
	case MZ_ROUTE_TO_DIVIDER:
		reason = MZ_TO_DIVIDER;
		break;
	case MZ_ROUTE_CHANGED:
		DROP(MZ_DROP_ENTRY_CHANGED);
	case MZ_ROUTE_UNKNOWN_VPC:
		DROP(MZ_DROP_UNKNOWN_VPC);
	case MZ_ROUTE_UNKNOWN_NETWORK:
		DROP(MZ_DROP_UNKNOWN_NETWORK);
	case MZ_ROUTE_UNKNOWN_ENDPOINT:
		DROP(MZ_DROP_UNKNOWN_ENDPOINT);
	case MZ_ROUTE_NO_BOUNCER:
		DROP(MZ_DROP_NO_BOUNCER);
	default:
		DROP(MZ_DROP_NO_DIVIDER);
	}
forward:
	if (ip->ttl <= 1)
		DROP(MZ_DROP_TTL_EXPIRED);
	if (ARMED(MZ_STAGE_ON_XDP_TX)) {
		m = chain_meta(ctx, MZ_STAGE_ON_XDP_TX, XDP_TX, reason, MZ_ACTION_FORWARD);
		if (m) {
			m->d.next_hop_be = hop.ip_be;
			mac_copy(m->d.mac, hop.mac);
			m->d.outer_l4_offset = (void *)udp - (void *)eth;
			HAND_OVER(XDP_TX, MZ_STAGE_ON_XDP_TX, reason);
		}
	}
	forward_to_host(eth, ip, udp, cfg, hop.ip_be, hop.mac);
	EXIT(XDP_TX, MZ_STAGE_ON_XDP_TX, reason);

out:
	/* A pass or a drop (an action is applied, or handed over, where it is decided): functions
	 * at its stage see it first. */
	if (verdict != XDP_REDIRECT && verdict != XDP_TX && ARMED(stage)) {
		m = chain_meta(ctx, stage, verdict, reason, MZ_ACTION_VERDICT);
		if (m)
			goto chain;
	}
	/* One reason per packet, and a reason belongs to one stage: the stage's count is the sum
	 * of its reasons (the appliance adds them up), so no second counter is written. */
	count(reason, packet_len);
#if MZ_TAPPED
	if (cfg)
		mz_tap_point(ctx, cfg->flags, MZ_TAP_TRANSIT_VERDICT, stage, verdict, reason, tapped_vni);
#endif
	return verdict;

chain:
	/* A scaled endpoint's reason is counted by the function that takes it, else by the exit. */
	if (stage != MZ_STAGE_ON_XDP_SCALED_EP)
		count(reason, packet_len);
	bpf_tail_call(ctx, &mz_stages, stage);
	/* The stage's entry is missing: the exit applies the decision (counted as failed). */
	return mz_fn_chain_failed(ctx, m);
}

/* mz_transit, or mz_transit_tapped in the tapped build. */
SEC("xdp")
int MZ_TRANSIT_PROGRAM(struct xdp_md *ctx)
{
	return transit(ctx, host_config());
}
