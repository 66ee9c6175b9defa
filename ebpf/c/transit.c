/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Transit XDP: on the host's underlay interface, plays bouncer and divider for Geneve traffic
 * (the seed design's procedure, steps 1 to 5). Every packet leaves through `out:`, which counts
 * the reason and the stage, then tail-calls the stage's function chain; an empty stage applies
 * the stage's default verdict.
 */
#include "pipeline.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EXIT(v, s, r)                                                                          \
	do {                                                                                   \
		verdict = (v);                                                                 \
		stage = (s);                                                                   \
		reason = (r);                                                                  \
		goto out;                                                                      \
	} while (0)
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
 * Applies a decision's action to the packet (deliver, forward; a plain verdict needs nothing),
 * from the offsets recorded with it: the same code runs inline for an empty stage and in the
 * chain's exit program. Returns the verdict, or XDP_DROP with *reason set when the packet
 * cannot be rewritten.
 */
static __always_inline __u32 apply_decision(struct xdp_md *ctx, const struct mz_host_config *cfg,
					    __u32 action, __u32 verdict, const struct mz_decision *d,
					    __u32 *reason)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct mz_endpoint_stats *ep_stats;
	struct ethhdr *eth = data, *inner_eth;
	struct iphdr *ip;
	struct udphdr *udp;
	__u32 len;

	switch (action) {
	case MZ_ACTION_DELIVER:
		inner_eth = data + (d->inner_offset & 0x3ff);
		if ((void *)(inner_eth + 1) > data_end) {
			*reason = MZ_DROP_ADJUST_FAILED;
			return XDP_DROP;
		}
		mac_copy(inner_eth->h_dest, d->mac);
		len = data_end - (void *)inner_eth;
		if (bpf_xdp_adjust_head(ctx, (void *)inner_eth - data)) {
			*reason = MZ_DROP_ADJUST_FAILED;
			return XDP_DROP;
		}
		/* Counted once the delivery cannot fail any more. */
		ep_stats = endpoint_stats(d->stats_slot);
		if (ep_stats) {
			ep_stats->rx_packets++;
			ep_stats->rx_bytes += len;
		}
		bpf_redirect(d->ifindex, 0);
		return XDP_REDIRECT;
	case MZ_ACTION_DELIVER_BYPASS:
		ep_stats = endpoint_stats(d->stats_slot);
		if (ep_stats) {
			ep_stats->rx_packets++;
			ep_stats->rx_bytes += data_end - data;
		}
		bpf_redirect(d->ifindex, 0);
		return XDP_REDIRECT;
	case MZ_ACTION_FORWARD:
		ip = data + sizeof(*eth);
		udp = data + (d->outer_l4_offset & 0xff);
		if ((void *)(ip + 1) > data_end || (void *)(udp + 1) > data_end) {
			*reason = MZ_DROP_ADJUST_FAILED;
			return XDP_DROP;
		}
		forward_to_host(eth, ip, udp, cfg, d->next_hop_be, d->mac);
		return XDP_TX;
	default:
		return verdict;
	}
}

/* The chain's entry, one per generation: copies the stage's plan of that generation into the
 * packet's metadata and starts it. */
static __always_inline int chain_entry(struct xdp_md *ctx, __u32 generation)
{
	struct mz_meta *m = mz_fn_meta();
	struct mz_chain_stats *cs;
	const struct mz_chain *plan;
	__u32 stage, index;

	if (!m)
		return XDP_DROP;
	stage = m->d.stage;
	if (stage >= MZ_STAGE_COUNT)
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
		m->clock_ns = (++m->sample_tick & (MZ_FN_SAMPLE_EVERY - 1)) ? 0 : bpf_ktime_get_ns();
		bpf_tail_call(ctx, &mz_functions, m->chain[0]);
		return mz_fn_chain_failed(ctx, m);
	}
	bpf_tail_call(ctx, &mz_stage_exit, 0);
	return mz_fn_chain_failed(ctx, m);
}

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
		verdict = apply_decision(ctx, cfg, m->d.action, verdict, &m->d, &reason);
	} else {
		verdict = XDP_DROP;
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
	return verdict;
}

SEC("xdp")
int mz_transit(struct xdp_md *ctx)
{
	const struct mz_host_config *cfg = host_config();
	struct mz_endpoint ep;
	struct mz_next_hop hop;
	struct mz_decision d = {}; /* what the action needs: filled on the paths that deliver or forward */
	struct mz_meta *m;
	struct mz_endpoint_key ep_key;
	struct cursor c;
	struct ethhdr *eth, *inner_eth;
	struct iphdr *ip, *inner_ip;
	struct udphdr *udp;
	struct genevehdr *geneve;
	void *options_end;
	__u32 verdict, stage, reason, vni = 0, source_host = 0, ihl_bytes, tot_len, err, roles;
	__u32 action = MZ_ACTION_VERDICT, outer_src = 0, inner_src = 0, inner_dst = 0;
	__u32 options_len, datagram_len, inner_len;
	enum mz_lookup found;
	__u64 packet_len;

	cursor_init(&c, ctx);
	packet_len = c.end - c.pos;

	if (!cfg)
		PASS(MZ_PASS_NOT_CONFIGURED);

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
	outer_src = ip->saddr;
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

	inner_src = inner_ip->saddr;
	inner_dst = inner_ip->daddr;
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
		d.ifindex = ep.ifindex;
		d.stats_slot = ep.stats_slot;
		if (ep.flags & MZ_EP_BYPASS_DECAP) {
			action = MZ_ACTION_DELIVER_BYPASS;
			EXIT(XDP_REDIRECT, MZ_STAGE_ON_XDP_REDIRECT, MZ_DELIVER_LOCAL_BYPASS);
		}
		mac_copy(d.mac, ep.mac);
		d.inner_offset = (void *)inner_eth - (void *)eth;
		action = MZ_ACTION_DELIVER;
		EXIT(XDP_REDIRECT, MZ_STAGE_ON_XDP_REDIRECT, MZ_DELIVER_LOCAL);
	}

	if (found == MZ_FOUND) {
		/* Step 3: bouncer. */
		if (ep.host_ip_be == cfg->host_ip_be)
			DROP(MZ_DROP_UNKNOWN_ENDPOINT); /* ours, but not attached here */
		if (ip->ttl <= 1)
			DROP(MZ_DROP_TTL_EXPIRED);
		d.next_hop_be = ep.host_ip_be;
		mac_copy(d.mac, ep.host_mac);
		d.outer_l4_offset = (void *)udp - (void *)eth;
		action = MZ_ACTION_FORWARD;
		EXIT(XDP_TX, MZ_STAGE_ON_XDP_TX, MZ_BOUNCER_FORWARD);
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
	if (ip->ttl <= 1)
		DROP(MZ_DROP_TTL_EXPIRED);
	d.next_hop_be = hop.ip_be;
	mac_copy(d.mac, hop.mac);
	d.outer_l4_offset = (void *)udp - (void *)eth;
	action = MZ_ACTION_FORWARD;
	EXIT(XDP_TX, MZ_STAGE_ON_XDP_TX, reason);

out:
	if (cfg && (cfg->flags & MZ_HOST_STAGE_ARMED(stage))) {
		/* Functions at this stage: they get the decision, the chain's exit applies it. */
		m = mz_fn_meta();
		if (m) {
			count(MZ_STAGE_COUNTER_BASE + stage, packet_len);
			if (stage != MZ_STAGE_ON_XDP_SCALED_EP)
				count(reason, packet_len);
			m->d.stage = stage;
			m->d.verdict = verdict;
			m->d.reason = reason;
			m->d.action = action;
			m->d.vni = vni;
			m->d.outer_src_be = outer_src;
			m->d.inner_src_be = inner_src;
			m->d.inner_dst_be = inner_dst;
			m->d.packet_len = packet_len;
			m->fn_reason = 0;
			if (action == MZ_ACTION_DELIVER || action == MZ_ACTION_DELIVER_BYPASS) {
				m->d.ifindex = d.ifindex;
				m->d.stats_slot = d.stats_slot;
				m->d.inner_offset = action == MZ_ACTION_DELIVER ? d.inner_offset : 0;
				if (action == MZ_ACTION_DELIVER)
					mac_copy(m->d.mac, d.mac);
			} else if (action == MZ_ACTION_FORWARD) {
				m->d.next_hop_be = d.next_hop_be;
				m->d.outer_l4_offset = d.outer_l4_offset;
				mac_copy(m->d.mac, d.mac);
			}
			bpf_tail_call(ctx, &mz_stages, stage);
			/* The stage's entry is missing: apply the decision here (counted as failed). */
			m->d.action = action;
			return mz_fn_chain_failed(ctx, m);
		}
	}
	/* No function at this stage: the decision applies at once. */
	if (cfg && action != MZ_ACTION_VERDICT) {
		verdict = apply_decision(ctx, cfg, action, verdict, &d, &reason);
		if (verdict == XDP_DROP)
			stage = MZ_STAGE_ON_XDP_DROP;
	}
	count(MZ_STAGE_COUNTER_BASE + stage, packet_len);
	/* One reason per packet: a scaled endpoint's is counted by the function that takes it. */
	count(reason, packet_len);
	return verdict;
}
