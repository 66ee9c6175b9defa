/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Endpoint egress XDP: on an endpoint's host-side veth, so it sees what the endpoint sends.
 * Answers ARP for the endpoint's network, delivers to endpoints of this host directly, and
 * encapsulates everything else in Geneve towards the destination's host when known (configured
 * or learned), else a bouncer of its network, else a divider of its VPC.
 */
#include "pipeline.h"
#include "tap.h"

/* egress_tapped.c builds this file again with MZ_TAPPED 1: mz_egress_tapped, the copy with the
 * taps, which a capture puts on the endpoints' links for its time (see MZ_TAPPED in
 * transit.c). */
#ifndef MZ_TAPPED
#define MZ_TAPPED 0
#endif
#if MZ_TAPPED
#define MZ_EGRESS_PROGRAM mz_egress_tapped
#else
#define MZ_EGRESS_PROGRAM mz_egress
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EXIT(v, r)                                                                             \
	do {                                                                                   \
		verdict = (v);                                                                 \
		reason = (r);                                                                  \
		goto out;                                                                      \
	} while (0)
#define DROP(r) EXIT(XDP_DROP, r)

/* The MAC proxy ARP answers for addresses with no endpoint here (gateway, remote endpoints):
 * locally administered and derived from the address, so every host answers alike. The receiving
 * host rewrites the inner destination MAC to the endpoint's own on delivery. */
static __always_inline void proxy_mac(__u8 *mac, __u32 ip)
{
	mac[0] = 0x02;
	mac[1] = 0x00;
	__builtin_memcpy(mac + 2, &ip, 4);
}

static __always_inline const struct mz_network *network_of(__u32 vni, __u32 ip)
{
	struct mz_network_key key = { .prefixlen = 64, .vni_be = bpf_htonl(vni), .prefix_be = ip };

	return bpf_map_lookup_elem(&mz_networks, &key);
}

static __always_inline __u32 proxy_arp(struct cursor *c, struct ethhdr *eth, const struct mz_local_iface *iface)
{
	struct arp_ipv4 *arp = CURSOR_TAKE(c, struct arp_ipv4);
	struct mz_endpoint_key key;
	struct mz_endpoint ep;
	enum mz_lookup found;
	const struct mz_network *net;
	__u8 mac[ETH_ALEN];
	__u32 target;

	if (!arp || arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != ETH_ALEN || arp->plen != 4)
		return MZ_EGRESS_DROP_MALFORMED;
	if (arp->op != bpf_htons(1) || arp->tpa == arp->spa)
		return MZ_EGRESS_DROP_ARP_NOT_REQUEST;
	target = arp->tpa;
	net = network_of(iface->endpoint.vni, target);
	/* Only within the asker's own network: the same LPM entry for both addresses. */
	if (!net || net != network_of(iface->endpoint.vni, arp->spa))
		return MZ_EGRESS_DROP_ARP_NOT_IN_NETWORK;

	key.vni = iface->endpoint.vni;
	key.ip_be = target;
	found = endpoint_lookup(&key, &ep);
	if (found == MZ_CHANGED)
		return MZ_EGRESS_DROP_ENTRY_CHANGED;
	if (found == MZ_FOUND)
		mac_copy(mac, ep.mac);
	else
		proxy_mac(mac, target);

	mac_copy(eth->h_dest, eth->h_source);
	mac_copy(eth->h_source, mac);
	arp->op = bpf_htons(2);
	mac_copy(arp->tha, arp->sha);
	arp->tpa = arp->spa;
	mac_copy(arp->sha, mac);
	arp->spa = target;
	return MZ_EGRESS_ARP_REPLY;
}

/* Outer UDP source port: entropy for ECMP and RSS from the inner addresses and L4 ports. */
static __always_inline __u16 encap_source_port(struct cursor *c, const struct iphdr *ip)
{
	__u32 ports = 0;

	if ((ip->protocol == IPPROTO_UDP || ip->protocol == IPPROTO_TCP) && !ipv4_is_fragment(ip)) {
		__u32 *l4 = (void *)ip + ip->ihl * 4;

		if ((void *)(l4 + 1) <= c->end)
			ports = *l4;
	}
	return MZ_UDP_SPORT_BASE + mz_flow_hash(ip->saddr ^ ports, ip->daddr) % MZ_UDP_SPORT_SPAN;
}

/* Pushes the outer headers in front of the frame. Returns 0 or a drop reason. */
static __always_inline __u32 encapsulate(struct xdp_md *ctx, const struct mz_host_config *cfg, __u32 vni,
					 __u32 dst_host, const __u8 *dst_mac, __u16 sport)
{
	/* In 32 bits: a frame near 64 KiB must not wrap past the MTU check. */
	__u32 inner_len = ctx->data_end - ctx->data;
	__u32 ip_len = inner_len + MZ_ENCAP_OVERHEAD - sizeof(struct ethhdr);
	struct mz_source_host_opt *opt;
	struct genevehdr *geneve;
	struct udphdr *udp;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct cursor c;

	if (ip_len > cfg->underlay_mtu)
		return MZ_EGRESS_DROP_MTU;
	if (bpf_xdp_adjust_head(ctx, -(int)MZ_ENCAP_OVERHEAD))
		return MZ_EGRESS_DROP_ADJUST_FAILED;
	cursor_init(&c, ctx);
	eth = CURSOR_TAKE(&c, struct ethhdr);
	ip = CURSOR_TAKE(&c, struct iphdr);
	udp = CURSOR_TAKE(&c, struct udphdr);
	geneve = CURSOR_TAKE(&c, struct genevehdr);
	opt = CURSOR_TAKE(&c, struct mz_source_host_opt);
	if (!eth || !ip || !udp || !geneve || !opt)
		return MZ_EGRESS_DROP_ADJUST_FAILED;

	mac_copy(eth->h_dest, dst_mac);
	mac_copy(eth->h_source, cfg->host_mac);
	eth->h_proto = bpf_htons(ETH_P_IP);

	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(ip_len);
	/* DF: a tunnel packet fragmented on the path would be lost (nothing reassembles it), so
	 * the path must say so instead. DF with ID 0 is a valid atomic datagram (RFC 6864 4.1),
	 * what Linux sends for unconnected DF traffic. */
	ip->id = 0;
	ip->frag_off = bpf_htons(MZ_IP_DF);
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->check = 0;
	ip->saddr = cfg->host_ip_be;
	ip->daddr = dst_host;
	ip->check = ipv4_csum_20(ip);

	udp->source = bpf_htons(sport);
	udp->dest = bpf_htons(MZ_GENEVE_PORT);
	udp->len = bpf_htons(ip_len - sizeof(struct iphdr));
	udp->check = 0; /* valid over IPv4 (RFC 8926 3.3), and what NICs expect of tunnels */

	geneve->ver_optlen = sizeof(*opt) / 4;
	geneve->flags = 0;
	geneve->protocol = bpf_htons(MZ_ETH_P_TEB);
	geneve_set_vni(geneve, vni);
	geneve->reserved = 0;

	opt->hdr.opt_class = bpf_htons(MZ_GENEVE_OPT_CLASS);
	opt->hdr.type = MZ_GENEVE_OPT_SOURCE_HOST;
	opt->hdr.length = sizeof(opt->host_ip) / 4;
	opt->host_ip = cfg->host_ip_be;
	return 0;
}

/* Where a decision at ON_EGRESS sends the frame: a host (encap) or a veth here (local). */
struct egress_target {
	__u32 addr;           /* the next host (encap), or the veth's ifindex (local) */
	__u16 stats_slot;     /* the receiving endpoint's counters (local) */
	__u8 mac[ETH_ALEN];
};

/*
 * Fills the packet's metadata for the ON_EGRESS chain: the decision and what a function may
 * read (the frame is parsed again here, so that nothing extra stays live on the way). Returns 0
 * when the metadata is ready.
 */
static __always_inline int egress_meta(struct xdp_md *ctx, __u32 reason, __u32 sender_slot, __u32 vni,
				       __u32 action, const struct egress_target *to)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct mz_meta *m = mz_fn_meta();

	if (!m || (void *)(ip + 1) > data_end)
		return -1;
	m->d.stage = MZ_CHAIN_EGRESS;
	m->d.verdict = XDP_REDIRECT;
	m->d.reason = reason;
	m->d.action = action;
	m->d.vni = vni;
	m->d.outer_src_be = 0;
	m->d.inner_src_be = ip->saddr;
	m->d.inner_dst_be = ip->daddr;
	m->d.inner_ip_offset = sizeof(struct ethhdr);
	m->d.packet_len = data_end - data;
	m->d.sender_slot = sender_slot;
	m->fn_reason = 0;
	if (action == MZ_ACTION_ENCAP) {
		m->d.next_hop_be = to->addr;
	} else {
		m->d.ifindex = to->addr;
		m->d.stats_slot = to->stats_slot;
	}
	mac_copy(m->d.mac, to->mac);
	return 0;
}

/* Same host, no tunnel: the endpoint's MAC, its counters, its veth. */
static __always_inline __u32 deliver_here(struct ethhdr *eth, const __u8 *mac, __u32 ifindex,
					  __u32 slot, __u64 len)
{
	struct mz_endpoint_stats *stats = endpoint_stats(slot);

	mac_copy(eth->h_dest, mac);
	if (stats) {
		stats->rx_packets++;
		stats->rx_bytes += len;
	}
	bpf_redirect(ifindex, 0);
	return XDP_REDIRECT;
}

/* Encapsulates to `dst_host` and redirects to `ifindex`: the underlay, or (rx_slot >= 0) the
 * veth of a bypass-decap endpoint here, whose counters count it. Returns 0 or a drop reason. */
static __always_inline __u32 encap_and_send(struct xdp_md *ctx, const struct mz_host_config *cfg, __u32 vni,
					    __u32 dst_host, const __u8 *dst_mac, __u16 sport, __u32 ifindex,
					    int rx_slot)
{
	struct mz_endpoint_stats *stats;
	__u32 err = encapsulate(ctx, cfg, vni, dst_host, dst_mac, sport);

	if (err)
		return err;
	if (rx_slot >= 0 && (stats = endpoint_stats(rx_slot))) {
		stats->rx_packets++;
		stats->rx_bytes += ctx->data_end - ctx->data;
	}
	bpf_redirect(ifindex, 0);
	return 0;
}

/* Whether the frame still fits the underlay once encapsulated: checked before the chain runs,
 * so that its exit cannot fail on it (encapsulate checks it again for the plain path). */
static __always_inline int fits_underlay(struct xdp_md *ctx, const struct mz_host_config *cfg)
{
	__u32 ip_len = ctx->data_end - ctx->data + MZ_ENCAP_OVERHEAD - sizeof(struct ethhdr);

	return ip_len <= cfg->underlay_mtu;
}

/*
 * The egress procedure, compiled twice: `armed` is a constant, so the copy for a host with no
 * function at ON_EGRESS holds none of the hand-over code (kept in, even unexecuted, it cost the
 * encapsulation path 5 to 8 ns of register spills). The tapped build (MZ_TAPPED) tests `armed`
 * as it runs.
 */
static __always_inline int egress(struct xdp_md *ctx, const struct mz_host_config *cfg, const int armed)
{
	struct mz_local_iface iface;
	struct mz_endpoint ep;
	struct mz_learned_host learned;
	struct mz_next_hop hop;
	const struct mz_host *learned_host;
	struct mz_endpoint_stats *sender_stats = NULL;
	struct mz_endpoint_key key;
	struct egress_target to __attribute__((aligned(4)));
	struct mz_meta *m;
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 verdict, reason, ifindex = ctx->ingress_ifindex, vni, next_host, err;
#if MZ_TAPPED
	__u32 tapped_vni = 0; /* the VNI for the verdict tap, once known */
#endif
	enum mz_lookup found;
	__u8 next_mac[ETH_ALEN] __attribute__((aligned(2))); /* mac_copy moves 16 bits at a time */
	__u64 packet_len;
	int bypass;

	cursor_init(&c, ctx);
	packet_len = c.end - c.pos;

	if (!cfg)
		DROP(MZ_EGRESS_DROP_NOT_CONFIGURED);
	/* Which endpoint this veth speaks for, copied and checked: a veth handed to another
	 * endpoint must never send with the old one's VPC (see "Reused entries", mizar_abi.h). */
#if MZ_TAPPED
	mz_tap_number_packet();
#endif
	found = LOOKUP_COPY(&mz_local_ifaces, &ifindex, &iface, SAME_IFINDEX);
	if (found == MZ_MISSING)
		DROP(MZ_EGRESS_DROP_UNKNOWN_IFACE);
	if (found == MZ_CHANGED)
		DROP(MZ_EGRESS_DROP_ENTRY_CHANGED);
	vni = iface.endpoint.vni;
#if MZ_TAPPED
	/* The entry tap sees frames of the veths of endpoints (the others only at the verdict),
	 * with the sender's VPC, so that a capture can pick it. */
	tapped_vni = vni;
	mz_tap_point(ctx, cfg->flags, MZ_TAP_EGRESS_ENTRY, MZ_TAP_NONE, MZ_TAP_NONE, MZ_TAP_NONE, vni);
#endif

	eth = CURSOR_TAKE(&c, struct ethhdr);
	if (!eth)
		DROP(MZ_EGRESS_DROP_MALFORMED);
	if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
		reason = proxy_arp(&c, eth, &iface);
		if (reason != MZ_EGRESS_ARP_REPLY)
			DROP(reason);
		/* Back out of the veth it came in by, as a redirect: a veth wakes its peer for
		 * redirected frames, but after XDP_TX only if the peer runs an XDP program. */
		bpf_redirect(ifindex, 0);
		EXIT(XDP_REDIRECT, reason);
	}
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		DROP(MZ_EGRESS_DROP_NOT_IPV4);
	ip = CURSOR_TAKE(&c, struct iphdr);
	if (!ip || ip->version != 4 || ip->ihl < 5 || (void *)ip + bpf_ntohs(ip->tot_len) > c.end)
		DROP(MZ_EGRESS_DROP_MALFORMED);
	/* An endpoint speaks only for its own address. */
	if (ip->saddr != iface.endpoint.ip_be)
		DROP(MZ_EGRESS_DROP_SPOOFED_SOURCE);
	sender_stats = endpoint_stats(iface.stats_slot);

	key.vni = vni;
	key.ip_be = ip->daddr;
	found = endpoint_lookup(&key, &ep);
	if (found == MZ_CHANGED)
		DROP(MZ_EGRESS_DROP_ENTRY_CHANGED);
	if (found == MZ_FOUND && (ep.flags & MZ_EP_LOCAL) && ep.type != MZ_EP_SCALED) {
		/* Same host: no tunnel needed, except that a bypass-decap endpoint gets the tunnel
		 * packet, as if it had crossed the underlay. */
		bypass = ep.flags & MZ_EP_BYPASS_DECAP;
		reason = bypass ? MZ_EGRESS_LOCAL_BYPASS : MZ_EGRESS_LOCAL;
		if (armed) {
			if (bypass && !fits_underlay(ctx, cfg))
				DROP(MZ_EGRESS_DROP_MTU);
			to.addr = ep.ifindex;
			to.stats_slot = ep.stats_slot;
			mac_copy(to.mac, ep.mac);
			if (!egress_meta(ctx, reason, iface.stats_slot, vni,
					 bypass ? MZ_ACTION_ENCAP_LOCAL : MZ_ACTION_LOCAL, &to))
				goto chain;
		}
		if (!bypass) {
			verdict = deliver_here(eth, ep.mac, ep.ifindex, ep.stats_slot, packet_len);
			EXIT(verdict, reason);
		}
		err = encap_and_send(ctx, cfg, vni, cfg->host_ip_be, ep.mac, encap_source_port(&c, ip),
				     ep.ifindex, ep.stats_slot);
		if (err)
			DROP(err);
		EXIT(XDP_REDIRECT, reason);
	}

	if (found == MZ_FOUND) {
		next_host = ep.host_ip_be;
		mac_copy(next_mac, ep.host_mac);
		reason = MZ_EGRESS_TO_HOST;
	} else if (LOOKUP_COPY(&mz_learned, &key, &learned, SAME_ENDPOINT_KEY) == MZ_FOUND &&
		   (learned_host = bpf_map_lookup_elem(&mz_hosts, &learned.host_ip_be))) {
		/* A learned host that is no longer known is ignored: the bouncer still knows. */
		next_host = learned.host_ip_be;
		mac_copy(next_mac, learned_host->mac);
		reason = MZ_EGRESS_TO_LEARNED_HOST;
	} else {
		switch (route_by_network(vni, ip->saddr, ip->daddr, cfg->host_ip_be, &hop)) {
		case MZ_ROUTE_TO_BOUNCER:
			reason = MZ_EGRESS_TO_BOUNCER;
			break;
		case MZ_ROUTE_TO_DIVIDER:
			reason = MZ_EGRESS_TO_DIVIDER;
			break;
		case MZ_ROUTE_CHANGED:
			DROP(MZ_EGRESS_DROP_ENTRY_CHANGED);
		case MZ_ROUTE_UNKNOWN_VPC:
			DROP(MZ_EGRESS_DROP_UNKNOWN_VPC);
		default:
			DROP(MZ_EGRESS_DROP_NO_ROUTE);
		}
		next_host = hop.ip_be;
		mac_copy(next_mac, hop.mac);
	}
	if (next_host == cfg->host_ip_be)
		DROP(MZ_EGRESS_DROP_NO_ROUTE);
	if (armed) {
		if (!fits_underlay(ctx, cfg))
			DROP(MZ_EGRESS_DROP_MTU);
		to.addr = next_host;
		to.stats_slot = 0;
		mac_copy(to.mac, next_mac);
		if (!egress_meta(ctx, reason, iface.stats_slot, vni, MZ_ACTION_ENCAP, &to))
			goto chain;
	}
	err = encap_and_send(ctx, cfg, vni, next_host, next_mac, encap_source_port(&c, ip),
			     cfg->underlay_ifindex, -1);
	if (err)
		DROP(err);
	verdict = XDP_REDIRECT;

out:
	count(reason, packet_len);
	if (sender_stats && verdict == XDP_REDIRECT) {
		sender_stats->tx_packets++;
		sender_stats->tx_bytes += packet_len;
	}
#if MZ_TAPPED
	if (cfg)
		mz_tap_point(ctx, cfg->flags, MZ_TAP_EGRESS_VERDICT, MZ_CHAIN_EGRESS, verdict, reason,
			     tapped_vni);
#endif
	return verdict;

chain:
	/* Functions at ON_EGRESS see the frame as the endpoint sent it; the exit applies the
	 * decision (and counts the sender's tx when it does). */
	count(reason, packet_len);
	/* A constant index: the JIT patches a direct jump. */
	bpf_tail_call(ctx, &mz_egress_stage, 0);
	/* The entry is missing: counted, and the exit applies the decision, as in transit. */
	m = mz_fn_meta();
	return m ? mz_fn_chain_failed(ctx, m) : XDP_DROP;
}

/* mz_egress, or mz_egress_tapped in the tapped build. */
SEC("xdp")
int MZ_EGRESS_PROGRAM(struct xdp_md *ctx)
{
	const struct mz_host_config *cfg = host_config();

	if (cfg && (cfg->flags & MZ_HOST_STAGE_ARMED(MZ_CHAIN_EGRESS)))
		return egress(ctx, cfg, 1);
	return egress(ctx, cfg, 0);
}

#if !MZ_TAPPED
/* The end of the ON_EGRESS chain: applies the decision as the functions left it. */
static __always_inline __u32 egress_exit(struct xdp_md *ctx, const struct mz_host_config *cfg,
					 struct mz_meta *m)
{
	struct mz_endpoint_stats *stats;
	struct mz_chain_stats *cs;
	__u32 stage = MZ_CHAIN_EGRESS, verdict = XDP_DROP;
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u64 len;

	cs = bpf_map_lookup_elem(&mz_chain_stats, &stage);
	if (m->d.verdict != XDP_REDIRECT || !cfg)
		return m->d.verdict == XDP_PASS ? XDP_PASS : XDP_DROP;
	cursor_init(&c, ctx);
	len = c.end - c.pos;
	eth = CURSOR_TAKE(&c, struct ethhdr);
	ip = CURSOR_TAKE(&c, struct iphdr);
	if (!eth || !ip || ip->ihl < 5)
		goto failed;
	switch (m->d.action) {
	case MZ_ACTION_LOCAL:
		verdict = deliver_here(eth, m->d.mac, m->d.ifindex, m->d.stats_slot, len);
		break;
	case MZ_ACTION_ENCAP_LOCAL:
		if (encap_and_send(ctx, cfg, m->d.vni, cfg->host_ip_be, m->d.mac, encap_source_port(&c, ip),
				   m->d.ifindex, m->d.stats_slot))
			goto failed;
		verdict = XDP_REDIRECT;
		break;
	case MZ_ACTION_ENCAP:
		if (encap_and_send(ctx, cfg, m->d.vni, m->d.next_hop_be, m->d.mac, encap_source_port(&c, ip),
				   cfg->underlay_ifindex, -1))
			goto failed;
		verdict = XDP_REDIRECT;
		break;
	default:
		goto failed;
	}
	stats = endpoint_stats(m->d.sender_slot);
	if (stats) {
		stats->tx_packets++;
		stats->tx_bytes += len;
	}
	if (cs)
		cs->applied++;
	return verdict;
failed:
	if (cs)
		cs->failed++;
	return XDP_DROP;
}

SEC("xdp")
int mz_chain_exit_egress(struct xdp_md *ctx)
{
	const struct mz_host_config *cfg = host_config();
	struct mz_meta *m = mz_fn_meta();
	__u32 verdict;

	if (!m)
		return XDP_DROP;
	verdict = egress_exit(ctx, cfg, m);
	if (cfg && cfg->flags & MZ_HOST_TAP_POINT(MZ_TAP_EGRESS_VERDICT))
		mz_tap_exit(ctx, m, MZ_TAP_EGRESS_VERDICT, verdict,
			    verdict == m->d.verdict ? m->d.reason : MZ_EGRESS_DROP_ADJUST_FAILED);
	return verdict;
}
#endif
