/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The ABI shared by the XDP programs and the Rust appliance: every map key and value,
 * every counter index and every constant both sides use. The Rust side is generated from
 * this file by bindgen (ebpf/build.rs), with compile-time size and offset checks, so no
 * layout is written twice.
 *
 * Byte order: fields named *_be are network order (as on the wire); everything else is host order.
 * Plain C only (no kernel headers) so that bindgen and clang -target bpf both read it.
 */
#ifndef MIZAR_ABI_H
#define MIZAR_ABI_H

#ifdef __BPF__
#include <linux/types.h>
#else
#include <stdint.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef int32_t __s32;
typedef uint64_t __u64;
#endif

#define MZ_GENEVE_PORT 6081
#define MZ_ETH_P_TEB 0x6558 /* Geneve protocol type: Ethernet payload */

/* Our Geneve option class (Mizar's) and the source-host option: the underlay address of the
 * host whose endpoint sent the packet, so the receiver learns where that endpoint lives. */
#define MZ_GENEVE_OPT_CLASS 0x0111
#define MZ_GENEVE_OPT_SOURCE_HOST 0x48
#define MZ_GENEVE_OPT_CRITICAL 0x80 /* type bit: a receiver that does not know it must drop */
#define MZ_GENEVE_MAX_OPT_WORDS 63  /* 6-bit option length field, in 4-byte words */

/* Outer headers pushed by encapsulation: Ethernet + IPv4 + UDP + Geneve + source-host option. */
#define MZ_ENCAP_OVERHEAD (14 + 20 + 8 + 8 + 8)

/* Outer UDP source port: a flow hash folded into the IANA dynamic range (RFC 8926 3.3). */
#define MZ_UDP_SPORT_BASE 49152
#define MZ_UDP_SPORT_SPAN 16384

#define MZ_MAX_BOUNCERS 16
#define MZ_MAX_DIVIDERS 16
#define MZ_MAX_HOSTS 4096
#define MZ_MAX_VPCS 4096
#define MZ_MAX_NETWORKS 16384
#define MZ_MAX_ENDPOINTS 262144
#define MZ_MAX_LEARNED 65536
#define MZ_MAX_LOCAL_IFACES 4096 /* also the number of per-endpoint counter slots */
#define MZ_MAX_VPC_MEMBERS 65536 /* (VPC, host) pairs of mz_vpc_members */

/*
 * mz_host_filter: the underlay addresses tunnel packets are accepted from, as an open-addressing
 * table in an array (array lookups are inlined; a hash lookup costs as much as the whole floor
 * program). An address lives in one of the WINDOW slots from mz_host_slot(address); empty is 0.
 */
#define MZ_HOST_FILTER_BITS 14
#define MZ_HOST_FILTER_SLOTS (1 << MZ_HOST_FILTER_BITS)
#define MZ_HOST_FILTER_WINDOW 8
#define MZ_HOST_SLOT_MULTIPLIER 0x9e3779b1u /* mz_host_slot(a) = (a * M) >> (32 - BITS) */

/* mz_learned_cache: per-CPU, direct-mapped memory of learned sources already in mz_learned, so a
 * steady flow costs no hash lookup (slot = mz_flow_hash(vni, address) & (SLOTS - 1)). */
#define MZ_LEARNED_CACHE_SLOTS 4096

/* Pipeline stages: slots of the mz_stages program array. */
enum mz_stage {
	MZ_STAGE_ON_XDP_TX = 0,
	MZ_STAGE_ON_XDP_PASS = 1,
	MZ_STAGE_ON_XDP_REDIRECT = 2,
	MZ_STAGE_ON_XDP_DROP = 3,
	MZ_STAGE_ON_XDP_SCALED_EP = 4,
	MZ_STAGE_COUNT = 5,
};

/*
 * Counters: one slot of the per-CPU array mz_counters each. Every packet a program sees ends in
 * exactly one of these (its verdict and the reason), so the slots of one program sum to its packets.
 * Append only: the indices are part of the pinned ABI.
 */
enum mz_counter {
	/* transit: handed to the Linux stack (ON_XDP_PASS) */
	MZ_PASS_NOT_IPV4 = 0,       /* ARP, IPv6, VLAN-tagged, ... */
	MZ_PASS_NOT_UDP = 1,           /* IPv4 but not UDP (ICMP, TCP to this host, ...) */
	MZ_PASS_NOT_GENEVE_PORT = 2,   /* UDP to another port than 6081 */
	MZ_PASS_NOT_FOR_THIS_HOST = 3, /* outer destination is not our underlay address */
	MZ_PASS_IP_FRAGMENT = 4,       /* a non-first fragment (no UDP header to tell); the stack has no Geneve device, so no leak */
	MZ_PASS_GENEVE_VERSION = 5,    /* unused: a Geneve version other than 0 is dropped (drop_geneve_version) */
	MZ_PASS_NOT_ETHERNET = 6,      /* Geneve from a known host, protocol type other than Ethernet: no VPC carries it */
	/* transit: forwarding decisions */
	MZ_DELIVER_LOCAL = 7,        /* decapsulated and redirected to a local endpoint (ON_XDP_REDIRECT) */
	MZ_DELIVER_LOCAL_BYPASS = 8, /* whole tunnel packet redirected to a bypass-decap endpoint */
	MZ_BOUNCER_FORWARD = 9,      /* endpoint's host known: sent there (ON_XDP_TX) */
	MZ_DIVIDER_FORWARD = 10,     /* endpoint unknown, network known: sent to one of its bouncers */
	MZ_TO_DIVIDER = 11,          /* network unknown here: sent to one of the VPC's dividers */
	MZ_SCALED_ENDPOINT = 12,     /* unused: a scaled endpoint's packet is counted by the function that takes it, else as drop_no_scaled_function */
	/* transit: drops (ON_XDP_DROP) */
	MZ_DROP_MALFORMED_IPV4 = 13,   /* truncated, IHL < 5, total length past the frame */
	MZ_DROP_MALFORMED_UDP = 14,    /* truncated or UDP length inconsistent */
	MZ_DROP_MALFORMED_GENEVE = 15, /* truncated header */
	MZ_DROP_MALFORMED_OPTION = 16, /* option header or length runs past the options area */
	MZ_DROP_CRITICAL_OPTION = 17,  /* unknown option with the critical bit (RFC 8926 3.5) */
	MZ_DROP_MALFORMED_INNER = 18,  /* inner Ethernet/IPv4 truncated or bad */
	MZ_DROP_INNER_NOT_IPV4 = 19,   /* inner frame is ARP, IPv6, ...: VPCs carry IPv4 */
	MZ_DROP_UNKNOWN_SOURCE_HOST = 20, /* tunnel packet from an underlay address we do not know */
	MZ_DROP_UNKNOWN_VPC = 21,      /* no VPC with the packet's VNI here */
	MZ_DROP_UNKNOWN_NETWORK = 22,  /* this host divides the VPC and knows no such network */
	MZ_DROP_UNKNOWN_ENDPOINT = 23, /* this host is the network's bouncer and knows no such endpoint */
	MZ_DROP_NO_BOUNCER = 24,       /* the network has no bouncer */
	MZ_DROP_NO_DIVIDER = 25,       /* the VPC has no divider */
	MZ_DROP_NO_HOST_MAC = 26,      /* unused: next hops carry their MAC, so the appliance refuses this */
	MZ_DROP_TTL_EXPIRED = 27,      /* outer TTL would reach 0 on forwarding */
	MZ_PASS_NOT_CONFIGURED = 28,   /* mz_config not written yet: the underlay keeps working */
	MZ_DROP_NO_SCALED_FUNCTION = 29, /* scaled endpoint with an empty ON_XDP_SCALED_EP stage */
	MZ_DROP_ADJUST_FAILED = 30,    /* bpf_xdp_adjust_head refused (no headroom) */
	/* egress (endpoint veth) */
	MZ_EGRESS_ARP_REPLY = 31,       /* proxy ARP answered, back out of the asking veth */
	MZ_EGRESS_LOCAL = 32,           /* to an endpoint on this host, without encapsulation */
	MZ_EGRESS_LOCAL_BYPASS = 33,    /* encapsulated to a bypass-decap endpoint on this host */
	MZ_EGRESS_TO_HOST = 34,         /* encapsulated to the endpoint's known host */
	MZ_EGRESS_TO_LEARNED_HOST = 35, /* encapsulated to a host learned from a source-host option */
	MZ_EGRESS_TO_BOUNCER = 36,      /* encapsulated to a bouncer of the destination's network */
	MZ_EGRESS_TO_DIVIDER = 37,      /* encapsulated to a divider of the VPC (network unknown here) */
	MZ_EGRESS_DROP_NOT_IPV4 = 38,   /* IPv6, LLDP, ...: VPCs are IPv4; never handed to the host stack */
	MZ_EGRESS_DROP_UNKNOWN_IFACE = 39, /* program on a veth that is no configured endpoint */
	MZ_EGRESS_DROP_SPOOFED_SOURCE = 40, /* source IP is not the endpoint's own */
	MZ_EGRESS_DROP_MALFORMED = 41,  /* truncated or inconsistent Ethernet/IPv4/ARP */
	MZ_EGRESS_DROP_MTU = 42,        /* frame too big for the underlay once encapsulated */
	MZ_EGRESS_DROP_ARP_NOT_IN_NETWORK = 43, /* ARP for an address outside the asker's network */
	MZ_EGRESS_DROP_UNKNOWN_VPC = 44, /* the endpoint's VPC is not configured here */
	MZ_EGRESS_DROP_NO_ROUTE = 45,   /* no endpoint, bouncer or divider to send to */
	MZ_EGRESS_DROP_NO_HOST_MAC = 46, /* unused: a learned host without a MAC falls back to routing */
	MZ_EGRESS_DROP_ADJUST_FAILED = 47, /* no headroom to push the outer headers */
	MZ_EGRESS_DROP_NOT_CONFIGURED = 48, /* this host not configured yet */
	MZ_EGRESS_DROP_ARP_NOT_REQUEST = 49, /* ARP replies, gratuitous ARP, probes: nothing to answer */
	MZ_DROP_GENEVE_VERSION = 50,   /* Geneve version other than 0 (RFC 8926 3.4: must be dropped) */
	MZ_DROP_GENEVE_CONTROL = 51,   /* Geneve control packet (O bit): never data for an endpoint */
	MZ_DROP_OUTER_FRAGMENT = 52,   /* first fragment of a tunnel packet: tunnels are sent with DF, nothing reassembles them */
	MZ_DROP_NOT_VPC_MEMBER = 53,   /* sender has no endpoint, bouncer or divider in the packet's VPC */
	MZ_DROP_ENTRY_CHANGED = 54,    /* the endpoint entry was rewritten for another key while read (configuration churn) */
	MZ_EGRESS_DROP_ENTRY_CHANGED = 55, /* egress: an entry was rewritten for another key while read (configuration churn) */
	MZ_COUNTER_REASONS = 56,
	/* Unused: what entered each stage is the sum of its reasons (a reason belongs to one
	 * stage), so transit writes one counter per packet. Kept: the slots are pinned ABI. */
	MZ_STAGE_COUNTER_BASE = 56,
	MZ_COUNTER_SLOTS = MZ_STAGE_COUNTER_BASE + MZ_STAGE_COUNT,
};

struct mz_counter_value {
	__u64 packets;
	__u64 bytes;
};

/* mz_config[0]: this host. */
struct mz_host_config {
	__u32 host_ip_be;     /* underlay IPv4 address */
	__u8 host_mac[6];     /* underlay interface MAC */
	__u16 underlay_mtu;   /* encapsulated frames above this are dropped and counted */
	__u32 underlay_ifindex;
	__u32 flags;          /* MZ_HOST_CONFIGURED */
};
#define MZ_HOST_CONFIGURED 1
/* A stage whose chain holds functions: transit hands its packets to the chain instead of
 * applying the decision at once (an empty stage costs one test of a flag already loaded). */
#define MZ_HOST_STAGE_ARMED(stage) (1u << (8 + (stage)))
/* A chain point where a VPC or an endpoint has a chain: only there does the chain's entry look
 * up their plans (a host-only chain pays no lookup of mz_scoped_chains). */
#define MZ_HOST_STAGE_SCOPED(stage) (1u << (16 + (stage)))

/* mz_hosts: underlay hosts this appliance knows (tunnel packets are accepted only from them). */
struct mz_host {
	__u8 mac[6];
	__u16 reserved;
};

/* A host to forward to: its underlay address and MAC, resolved by the appliance when it writes
 * the entry, so forwarding needs no second lookup. */
struct mz_next_hop {
	__u32 ip_be;
	__u8 mac[6];
	__u16 reserved;
};

/*
 * Reused entries. mz_vpcs, mz_endpoints, mz_local_ifaces, mz_learned and mz_vpc_members are
 * preallocated hashes: the kernel reuses an element for another key without waiting for
 * readers (kernel/bpf/hashtab.c, alloc_htab_elem), so a program holding a value pointer may find
 * another key's value under it. Their values therefore start with a copy of their key: the
 * programs copy the value to the stack right after the lookup, then check both the copy's key
 * and, after the copy, the live one (the kernel writes a reused element's value from its start).
 * Only a value that passes is used; a failed check is counted (drop_entry_changed).
 */

/* mz_vpcs: key is the VNI (host order). */
struct mz_vpc {
	__u32 vni;            /* copy of the key */
	__u32 flags;          /* MZ_VPC_THIS_HOST_DIVIDES */
	__u32 divider_count;
	struct mz_next_hop dividers[MZ_MAX_DIVIDERS];
};
#define MZ_VPC_THIS_HOST_DIVIDES 1

/* mz_networks: longest-prefix match over VNI then inner address. prefixlen = 32 + CIDR length. */
struct mz_network_key {
	__u32 prefixlen;
	__u32 vni_be;         /* VNI in network order, so prefix bits run VNI first */
	__u32 prefix_be;
};

struct mz_network {
	__u32 flags;          /* MZ_NET_THIS_HOST_BOUNCES */
	__u32 bouncer_count;
	__u32 gateway_be;
	struct mz_next_hop bouncers[MZ_MAX_BOUNCERS];
};
#define MZ_NET_THIS_HOST_BOUNCES 1

/* mz_endpoints, mz_learned, mz_endpoint_stats: an endpoint is its VPC plus its address. */
struct mz_endpoint_key {
	__u32 vni;
	__u32 ip_be;
};

struct mz_endpoint {
	struct mz_endpoint_key key; /* copy of the key */
	__u32 host_ip_be;     /* the host where the endpoint lives */
	__u32 ifindex;        /* host-side veth when hosted here (MZ_EP_LOCAL) */
	__u8 mac[6];
	__u8 type;            /* enum mz_endpoint_type */
	__u8 flags;           /* MZ_EP_LOCAL | MZ_EP_BYPASS_DECAP */
	__u8 host_mac[6];     /* underlay MAC of host_ip_be, for forwarding to a remote endpoint */
	__u16 stats_slot;     /* local endpoints: their slot in mz_endpoint_stats */
};
#define MZ_EP_LOCAL 1
#define MZ_EP_BYPASS_DECAP 2

enum mz_endpoint_type {
	MZ_EP_SIMPLE = 0,
	MZ_EP_SCALED = 1,
	MZ_EP_HOST = 2,
	MZ_EP_FUNCTION = 3,
};

/* mz_learned: where an endpoint lives, learned from the source-host option (direct path). */
struct mz_learned_host {
	struct mz_endpoint_key key; /* copy of the key */
	__u32 host_ip_be;
};

struct mz_learned_cache_entry {
	__u32 vni;
	__u32 ip_be;
	__u32 host_ip_be;
};

/* mz_endpoint_stats: per-CPU array, one slot per endpoint hosted here. */
struct mz_endpoint_stats {
	__u64 rx_packets;     /* delivered to the endpoint */
	__u64 rx_bytes;
	__u64 tx_packets;     /* sent by the endpoint */
	__u64 tx_bytes;
};

/* mz_local_ifaces: key is the ifindex of an endpoint's host-side veth. */
struct mz_local_iface {
	__u32 ifindex;        /* copy of the key */
	struct mz_endpoint_key endpoint;
	__u8 mac[6];
	__u16 stats_slot;
};

/*
 * mz_vpc_members: which hosts may put traffic into a VPC, and in which role. A tunnel packet is
 * accepted only from a member of its VNI; its source-host option is believed only when it names
 * the sender itself, or when the sender is a bouncer or divider of the VPC forwarding for
 * another host, and only a host with endpoints in the VPC is learned as an endpoint's home.
 */
struct mz_member_key {
	__u32 vni;
	__u32 host_ip_be;
};

struct mz_member {
	struct mz_member_key key; /* copy of the key */
	__u32 roles;          /* MZ_MEMBER_* */
};
#define MZ_MEMBER_ENDPOINTS 1 /* hosts endpoints of the VPC */
#define MZ_MEMBER_BOUNCER 2   /* bounces one of its networks */
#define MZ_MEMBER_DIVIDER 4   /* divides the VPC */

/*
 * Network functions: chains of XDP programs at the stages (see mizar_fn.h for what a function
 * does). At a stage, the pipeline has decided (verdict, reason, and what applying it takes) but
 * applied nothing; the decision travels to the functions in the per-CPU scratch mz_meta, the
 * functions run on the packet as it arrived, and the exit program applies the decision as it
 * then stands. Chain points: transit's five stages, and ON_EGRESS, the endpoint-egress
 * program's single stage (before encapsulation).
 *
 * Whole generations: each point has two chain plans, mz_chains[point * 2 + g], and two entry
 * programs, mz_chain_gen0 and mz_chain_gen1, each reading its own. The live generation is the
 * entry program in mz_stages[stage] (mz_egress_stage[0] for ON_EGRESS); a change writes the
 * other generation's plan and program slots, then swaps that one slot (a single atomic
 * exchange). A packet copies its plan into mz_meta on entry, so it runs all of one generation.
 * The old generation is rewritten only after an RCU grace period, when no packet still runs it.
 *
 * Tail calls per packet: transit (or egress) -> entry -> MZ_MAX_CHAIN functions -> exit,
 * within the kernel's 33.
 */
#define MZ_CHAIN_EGRESS MZ_STAGE_COUNT  /* ON_EGRESS: the egress program's chain point */
#define MZ_CHAIN_POINTS (MZ_STAGE_COUNT + 1)
#define MZ_EXIT_TRANSIT 0               /* slots of mz_stage_exit */
#define MZ_EXIT_EGRESS 1
#define MZ_MAX_CHAIN 16
#define MZ_CHAIN_GENERATIONS 2
#define MZ_CHAIN_PLANS (MZ_CHAIN_POINTS * MZ_CHAIN_GENERATIONS)
/* mz_functions: the program of chain position p of plan n sits in slot n * MZ_MAX_CHAIN + p. */
#define MZ_FN_PROG_SLOTS (MZ_CHAIN_PLANS * MZ_MAX_CHAIN)
/* mz_fn_stats: one slot per function placed in a chain (its instance number; 0 is unused). */
#define MZ_MAX_FN_INSTANCES 1024
#define MZ_FN_DROP_REASONS 8     /* reasons a function may drop with: 0 .. 7, named by the function */
#define MZ_FN_SAMPLE_EVERY 64    /* 1 packet in this many, per CPU, has its functions timed */

/*
 * Chains of VPCs and endpoints: mz_scoped_chains, keyed by (point, VNI, endpoint address; 0:
 * the VPC's own), holds plans whose slots are in mz_fn_programs (flagged MZ_FN_SHARED_SLOT):
 * one slot per function program, shared by every scoped chain. At a chain's entry the packet's
 * plan is the host's, then its VPC's, then its endpoint's (the destination's at transit's
 * stages, the sender's at ON_EGRESS): MZ_MAX_CHAIN functions at most in all (the appliance
 * refuses more). A scoped plan is replaced as a whole (one update of a map whose elements are
 * freed after a grace period), and the packet copies it on entry: it runs one version.
 * Points where the VNI is not known or checked yet (ON_XDP_PASS, ON_XDP_DROP) run the host's
 * chain only.
 */
#define MZ_MAX_SCOPED_CHAINS 16384
#define MZ_FN_PROGRAMS 64
#define MZ_FN_SHARED_SLOT 0x8000

struct mz_scope_key {
	__u32 point;          /* enum mz_stage, or MZ_CHAIN_EGRESS */
	__u32 vni;
	__u32 ip_be;          /* the endpoint; 0: the VPC */
};

/* What applying the decision takes (besides returning the verdict). */
enum mz_action {
	MZ_ACTION_VERDICT = 0,        /* nothing: XDP_PASS or XDP_DROP as it stands */
	MZ_ACTION_DELIVER = 1,        /* decapsulate, set the inner destination MAC, redirect */
	MZ_ACTION_DELIVER_BYPASS = 2, /* redirect the tunnel packet whole (bypass-decap endpoint) */
	MZ_ACTION_FORWARD = 3,        /* re-address the outer headers to the next hop, XDP_TX */
	/* egress */
	MZ_ACTION_ENCAP = 4,          /* encapsulate to next_hop (mac), redirect to the underlay */
	MZ_ACTION_LOCAL = 5,          /* set the destination MAC (mac), redirect to ifindex */
	MZ_ACTION_ENCAP_LOCAL = 6,    /* encapsulate to this host, redirect to ifindex (bypass-decap) */
};

/* The pipeline's decision at a stage, and what a function may read of the packet's context. */
struct mz_decision {
	__u32 stage;          /* enum mz_stage, or MZ_CHAIN_EGRESS */
	__u32 verdict;        /* XDP_PASS, XDP_DROP, XDP_TX, XDP_REDIRECT */
	__u32 reason;         /* enum mz_counter */
	__u32 action;         /* enum mz_action */
	__u32 vni;            /* 0 where the stage is reached before the VNI is known */
	__u32 outer_src_be;   /* outer IPv4 source (0 if not IPv4) */
	__u32 inner_src_be;   /* inner IPv4 addresses (0 if not reached) */
	__u32 inner_dst_be;
	__u32 ifindex;        /* deliver: the endpoint's veth */
	__u32 next_hop_be;    /* forward: the next host's underlay address */
	__u8 mac[6];          /* deliver: the endpoint's MAC; forward: the next host's */
	__u16 stats_slot;     /* deliver: the endpoint's counter slot; egress: the sender's */
	__u16 inner_offset;   /* bytes before the inner Ethernet header (deliver) */
	__u16 outer_l4_offset; /* bytes before the outer UDP header (forward) */
	__u32 packet_len;     /* bytes as the packet arrived */
	__u16 sender_slot;    /* egress: the sending endpoint's counter slot */
	__u16 inner_ip_offset; /* bytes before the inner IPv4 header (0: none reached) */
};

/* mz_meta[0], per CPU: the packet at a stage. Functions must not move the packet's start or end
 * (the offsets above would go stale); they may rewrite bytes in place. */
struct mz_meta {
	struct mz_decision d;
	__u32 chain_pos;      /* the running function's position in chain[] */
	__u32 chain_len;
	__u64 clock_ns;       /* timed packets: when the running function began; 0 otherwise */
	__u32 sample_tick;    /* per CPU: picks the packets that are timed */
	__u32 fn_reason;      /* a function's drop reason + 1 (0: none; for taps) */
	__u32 fn_dropper;     /* the instance of the function that dropped it */
	__u32 tap_verdict;    /* a capture taps the verdict: a function's drop goes to the exit */
	__u64 packet_seq;     /* per CPU: packets numbered while a capture runs (MZ_HOST_TAPPING) */
	/* The decision as the running function received it: mz_fn_next counts a change of it. */
	__u32 seen_verdict;
	__u32 seen_action;
	__u32 seen_ifindex;
	__u32 seen_next_hop_be;
	__u16 chain[MZ_MAX_CHAIN];    /* slots of mz_functions, in order */
	__u16 instance[MZ_MAX_CHAIN]; /* their instances: slots of mz_fn_stats */
};

/* mz_chains[stage * 2 + generation]: a chain as published. */
struct mz_chain {
	__u32 len;
	__u32 seq;            /* publication number: status shows it, tests follow swaps with it */
	__u16 slots[MZ_MAX_CHAIN];
	__u16 instance[MZ_MAX_CHAIN];
};

/* mz_fn_stats[instance], per CPU. Packets a function took = passed + the drops. */
struct mz_fn_stats {
	__u64 passed;
	__u64 dropped[MZ_FN_DROP_REASONS];
	__u64 timed;          /* packets whose time in the function was measured */
	__u64 ns;             /* their total time (the tail call to the next one included) */
	__u64 changed;        /* packets it passed on with another decision than it received
			       * (verdict, action, target interface or next host); drops are counted
			       * under their reasons */
};

/* mz_chain_stats[stage], per CPU. */
struct mz_chain_stats {
	__u64 runs;           /* packets handed to the stage's chain */
	__u64 applied;        /* decisions applied by the exit program */
	__u64 failed;         /* a tail call failed (empty slot, budget): the decision was applied
			       * without the rest of the chain, or the packet dropped if it could not be */
};

/*
 * The ddos function (functions.c): sources to drop, per VPC or for every VPC (VNI 0), and a
 * per-source packet-rate threshold per VPC (VNI 0: the default for the others). The source is
 * the inner source of a tunnel packet, else the outer one.
 */
#define MZ_MAX_DDOS_BLOCKS 65536
#define MZ_MAX_DDOS_LIMITS 4097     /* one per VPC, and the default */
#define MZ_MAX_DDOS_SOURCES 65536   /* sources whose rate is tracked (LRU) */
#define MZ_DDOS_DROP_BLOCKED 0      /* the function's drop reasons */
#define MZ_DDOS_DROP_RATE 1
#define MZ_DDOS_DROP_SYN_FLOOD 2

/*
 * The SYN-flood guard (same function): mz_ddos_syn_limits, keyed by VNI (0: the default), allows
 * each destination (VNI, address) at most `syns` new TCP connections (SYN without ACK) per
 * window (counted in mz_ddos_syn_dests, LRU); above it, a SYN is dropped unless its source has
 * an established connection to that destination: it sent the destination a segment with ACK
 * and without SYN (a handshake's last step) in the last MZ_DDOS_ESTABLISHED_NS, remembered in
 * mz_ddos_established (LRU, only for VPCs with a guard).
 */
#define MZ_MAX_DDOS_SYN_DESTS 65536
#define MZ_MAX_DDOS_ESTABLISHED 131072
#define MZ_DDOS_ESTABLISHED_NS 600000000000ULL   /* 10 minutes */
#define MZ_DDOS_ESTABLISHED_REFRESH_NS 1000000000ULL /* a known pair is rewritten once a second */

struct mz_ddos_pair_key {
	__u32 vni;
	__u32 src_be;
	__u32 dst_be;
};

/* mz_ddos_blocks: longest-prefix match over VNI then source (prefixlen = 32 + CIDR length). */
struct mz_ddos_block_key {
	__u32 prefixlen;
	__u32 vni_be;         /* 0: every VPC */
	__u32 prefix_be;
};

/* mz_ddos_limits: key is the VNI (0: the default). At most `packets` per `window_ns` from one
 * source; the excess is dropped until the window ends. */
struct mz_ddos_limit {
	__u64 window_ns;
	__u64 packets;
};

/* mz_ddos_sources: one source's current window. */
struct mz_ddos_source_key {
	__u32 vni;
	__u32 ip_be;
};

struct mz_ddos_source {
	__u64 window_start_ns;
	__u64 packets;
};

/*
 * The ratelimit function (functions.c): per endpoint and per VPC, per direction (ingress: the
 * function at ON_XDP_REDIRECT, the endpoint receiving; egress: at ON_EGRESS, the endpoint
 * sending), at most so many packets and bytes per second with a burst. Each rule is a GCRA
 * (the virtual-scheduling form of a token bucket): one theoretical arrival time per measure,
 * advanced by compare-and-swap, so CPUs share a bucket without a lock. Rules are found by key
 * (copied and checked), their state lives in an array slot the appliance assigns, so a state is
 * never another rule's.
 */
#define MZ_MAX_RATE_LIMITS 4096
#define MZ_RL_INGRESS 0
#define MZ_RL_EGRESS 1
#define MZ_RL_DROP_ENDPOINT_PACKETS 0   /* the function's drop reasons */
#define MZ_RL_DROP_ENDPOINT_BYTES 1
#define MZ_RL_DROP_VPC_PACKETS 2
#define MZ_RL_DROP_VPC_BYTES 3

struct mz_rl_key {
	__u32 vni;
	__u32 ip_be;          /* the endpoint; 0: the VPC as a whole */
	__u32 direction;      /* MZ_RL_INGRESS or MZ_RL_EGRESS */
};

struct mz_rl_rule {
	struct mz_rl_key key; /* copy of the key */
	__u32 slot;           /* its state: mz_rl_state[slot] */
	__u64 ns_per_packet;  /* 0: no packet rate */
	__u64 packet_tolerance_ns; /* the burst: (burst - 1) * ns_per_packet */
	__u64 ps_per_byte;    /* 0: no byte rate */
	__u64 byte_tolerance_ns;
};

struct mz_rl_state {
	__u64 packets_tat;    /* theoretical arrival time of the next packet (ns, monotonic) */
	__u64 bytes_tat;
};

/*
 * The acl function (functions.c): ordered allow/deny rules per VPC and direction (ingress: the
 * function at a transit stage, the destination receiving; egress: at ON_EGRESS, the source
 * sending), first match wins, else the VPC's default for that direction. A VPC without an
 * mz_acl_vpcs entry has no ACL: its packets pass. The appliance compiles the rules into
 * lookups whose number does not grow with the rules:
 *   1. mz_acl_addrs (LPM): the source, then the destination, to its address class: which of
 *      the rules' address matchers (CIDRs, label groups) of that side it falls in; 0: none;
 *   2. mz_acl_rules (LPM): (classes, protocol, destination port) to the first matching rule's
 *      verdict, port ranges split into prefixes. A pair of classes whose rules are those of
 *      (source class, 0) has no entries of its own, nor a (source class, 0) whose rules are
 *      those of (0, 0): a miss tries (source class, 0), then (0, 0), then the default.
 * Stateful: a packet allowed by the rules opens a flow in mz_acl_flows (LRU, keyed with the
 * VNI, the two ends in a fixed order); later packets of either way pass on it without the
 * rules, until it expires (TCP: 60 s until the other end answers, 6 h open, 10 s once closed
 * by RST or FIN both ways; other protocols 60 s). ICMP echo is tracked by its identifier;
 * other ICMP messages are judged by the rules every time. A change made with "cut" raises
 * the VPC's epoch: flows opened before it are judged again on their next packet.
 * Generations: a VPC's entries carry a generation bit in their tag; the appliance writes the
 * other generation, flips mz_acl_vpcs[vni] (one update), waits an RCU grace period, then
 * removes the old one: a packet uses one whole rule set.
 */
#define MZ_MAX_ACL_VPCS 4096
#define MZ_MAX_ACL_ADDRS 262144     /* address prefixes of all VPCs' rules */
#define MZ_MAX_ACL_ENTRIES 1048576  /* compiled (classes, protocol, port) entries */
#define MZ_MAX_ACL_RULES 65536      /* rules of all VPCs (their hit counters) */
#define MZ_MAX_ACL_FLOWS 131072     /* tracked flows (LRU) */
#define MZ_ACL_INGRESS 0
#define MZ_ACL_EGRESS 1
#define MZ_ACL_DENY 0
#define MZ_ACL_ALLOW 1
#define MZ_ACL_DROP_RULE 0          /* the function's drop reasons */
#define MZ_ACL_DROP_DEFAULT 1
#define MZ_ACL_DROP_CUT 2           /* a flow opened before a "cut" change, denied by the new rules */
#define MZ_ACL_DROP_MALFORMED 3     /* inner IPv4 or transport header truncated */
#define MZ_ACL_TCP_SYN_NS 60000000000ULL
#define MZ_ACL_TCP_OPEN_NS 21600000000000ULL
#define MZ_ACL_TCP_CLOSED_NS 10000000000ULL
#define MZ_ACL_OTHER_NS 60000000000ULL

/* The tag that starts every compiled key: VNI, generation, direction, side (0: source). */
#define MZ_ACL_TAG(vni, generation, direction, side)                                           \
	(((vni) << 3) | ((generation) << 2) | ((direction) << 1) | (side))

struct mz_acl_vpc {
	__u32 generation;     /* which generation of entries is live (0 or 1) */
	__u32 epoch;          /* flows opened under another epoch are judged again */
	__u8 default_action[2]; /* per direction: MZ_ACL_ALLOW or MZ_ACL_DENY */
	__u8 pad[2];
	__u32 reserved;
	__u64 digest;         /* the appliance's hash of what it compiled, to skip unchanged VPCs */
};

/* mz_acl_hosts: the /32 addresses of mz_acl_addrs' classes, found by one hash lookup whatever
 * their number (a /32 is always an address's longest match); mz_acl_addrs keeps the shorter
 * prefixes. */
struct mz_acl_host_key {
	__u32 tag_be;
	__u32 ip_be;
};

/* mz_acl_addrs: prefixlen = 32 + CIDR length. */
struct mz_acl_addr_key {
	__u32 prefixlen;
	__u32 tag_be;         /* MZ_ACL_TAG(vni, generation, direction, side) */
	__u32 ip_be;
};

/* mz_acl_rules: prefixlen = 96 (any protocol), 104 (one protocol), 104 + n (n port bits). */
struct mz_acl_rule_key {
	__u32 prefixlen;
	__u32 tag_be;         /* MZ_ACL_TAG(vni, generation, direction, 0) */
	__u32 src_class_be;
	__u32 dst_class_be;
	__u8 proto;
	__u8 port_be[2];      /* destination port (ICMP echo: 0) */
	__u8 pad;
};

struct mz_acl_decision {
	__u32 action;         /* MZ_ACL_ALLOW or MZ_ACL_DENY */
	__u32 rule;           /* the rule's id (its hit counter in mz_acl_hits) */
};

/* mz_acl_flows: the end with the lower (address, port) is a. */
struct mz_acl_flow_key {
	__u32 vni;
	__u32 a_ip_be;
	__u32 b_ip_be;
	__u16 a_port_be;
	__u16 b_port_be;
	__u8 proto;
	__u8 pad[3];
};

struct mz_acl_flow {
	__u64 last_seen_ns;
	__u32 epoch;
	__u8 origin;          /* 0: a opened the flow; 1: b */
	__u8 direction;       /* the direction its first packet was judged in */
	__u8 seen;            /* MZ_ACL_SEEN_* */
	__u8 pad;
};
#define MZ_ACL_SEEN_REPLY 1   /* the answering end has sent */
#define MZ_ACL_SEEN_FIN_A 2
#define MZ_ACL_SEEN_FIN_B 4
#define MZ_ACL_SEEN_RST 8

/*
 * Taps (`mizar capture`). Tap points: the entry and the verdict of transit and of egress
 * (flags of mz_config, MZ_HOST_TAP_POINT), and places in the chains: the tap function
 * (functions.c, mz_fn_tap), which a capture places there outside the store (instances from
 * MZ_CAPTURE_INSTANCE_BASE, which the store never gives) and takes out at the end. A tap copies
 * the packet, with the decision as it stands where it sits, into the ring buffer mz_taps when
 * the capture's filter (mz_tap_filter[0]) accepts it: evaluated before anything is copied. A
 * full ring loses records (counted), never packets. The entry and verdict taps are in copies of
 * transit and egress built with them (transit_tapped.c, egress_tapped.c), which a capture
 * attaches in place of the plain programs for its time; they number the packets they take in
 * (mz_meta.packet_seq, per CPU): a packet carries the same id at every point. The plain
 * programs hold no tap code at all. MZ_HOST_TAPPING says a capture runs.
 */
#define MZ_TAP_SNAP_MAX 2048         /* bytes of a packet a record holds at most */
#define MZ_TAP_RING_BYTES (8 << 20)
#define MZ_CAPTURE_INSTANCE_BASE 1000 /* instances 1000 .. MZ_MAX_FN_INSTANCES - 1 */

/* mz_tap_header.point */
enum mz_tap_point {
	MZ_TAP_CHAIN = 0,             /* a tap function in a chain: `instance` says which */
	MZ_TAP_TRANSIT_ENTRY = 1,     /* the frame as it reaches transit */
	MZ_TAP_TRANSIT_VERDICT = 2,   /* as transit lets it go (decapsulated, re-addressed), or drops it */
	MZ_TAP_EGRESS_ENTRY = 3,      /* the frame as an endpoint sent it */
	MZ_TAP_EGRESS_VERDICT = 4,    /* as egress lets it go (encapsulated), or drops it */
	MZ_TAP_POINTS = 5,
};
/* mz_config flags: a capture runs; it taps a point outside the chains. */
#define MZ_HOST_TAPPING (1u << 1)
#define MZ_HOST_TAP_POINT(point) (1u << (1 + (point)))   /* bits 2 .. 5 */
#define MZ_HOST_TAP_FLAGS (MZ_HOST_TAPPING | 0x3cu)
/* A tap before any decision: no verdict, no reason yet. */
#define MZ_TAP_NONE 0xffffffffu

/*
 * The filter: a program of tests over the packet's fields, as a tcpdump expression compiles to
 * (see appliance/src/capture/filter.rs). Test i takes field `field`, masks it, and jumps to
 * `on_match` when lo <= value <= hi, else to `on_miss`: the index of a later test, or
 * MZ_TAP_ACCEPT / MZ_TAP_REJECT. Jumps go forward only, so a filter ends within its length.
 * Addresses, ports and lengths are in host order; a field the packet does not have is 0.
 */
#define MZ_TAP_FILTER_TESTS 32
#define MZ_TAP_ACCEPT 0xfe
#define MZ_TAP_REJECT 0xff
enum mz_tap_field {
	MZ_TAP_F_VNI = 0,             /* the decision's VNI, else the frame's Geneve VNI */
	MZ_TAP_F_VERDICT = 1,         /* XDP action; MZ_TAP_NONE at an entry */
	MZ_TAP_F_REASON = 2,          /* enum mz_counter; MZ_TAP_NONE at an entry */
	MZ_TAP_F_STAGE = 3,           /* enum mz_stage or MZ_CHAIN_EGRESS; MZ_TAP_NONE at an entry */
	MZ_TAP_F_FN_DROP = 4,         /* a function's drop reason + 1; 0: no function dropped it */
	MZ_TAP_F_LEN = 5,             /* the frame's length */
	MZ_TAP_F_GENEVE = 6,          /* 1: the frame is a Geneve packet (UDP 6081, Ethernet inside) */
	MZ_TAP_F_IFINDEX = 7,         /* the interface the frame came in by */
	/* The outermost IPv4 header of the frame and its TCP/UDP ports. */
	MZ_TAP_F_OUTER_SRC = 8,
	MZ_TAP_F_OUTER_DST = 9,
	MZ_TAP_F_OUTER_PROTO = 10,
	MZ_TAP_F_OUTER_SPORT = 11,
	MZ_TAP_F_OUTER_DPORT = 12,
	/* The innermost: the Geneve frame's inner IPv4 packet, else the frame's own. */
	MZ_TAP_F_INNER_SRC = 13,
	MZ_TAP_F_INNER_DST = 14,
	MZ_TAP_F_INNER_PROTO = 15,
	MZ_TAP_F_INNER_SPORT = 16,
	MZ_TAP_F_INNER_DPORT = 17,
	MZ_TAP_F_ICMP_TYPE = 18,      /* the innermost packet's ICMP type + 1; 0: not ICMP */
	MZ_TAP_F_TCP_FLAGS = 19,      /* the innermost packet's TCP flags octet */
	MZ_TAP_FIELDS = 32,           /* the fields array's size (a power of two) */
};

struct mz_tap_test {
	__u8 field;           /* enum mz_tap_field */
	__u8 on_match;
	__u8 on_miss;
	__u8 pad;
	__u32 mask;
	__u32 lo;
	__u32 hi;
};

/* mz_tap_filter.needs: what the tests read beyond what the tap point knows, so that a filter
 * on the decision alone (drop, reason, stage, a VPC where the point knows the VNI) reads no
 * header. */
#define MZ_TAP_NEEDS_FRAME 1  /* addresses, ports, protocols, Geneve, ICMP type, TCP flags */
#define MZ_TAP_NEEDS_VNI 2    /* the VNI: read from the frame where the point does not know it */

/* mz_tap_filter[0]: the running capture's. */
struct mz_tap_filter {
	__u32 active;         /* 0: no capture (taps left by a dead one copy nothing) */
	__u32 snaplen;
	__u32 sample_every;   /* record one matching packet in N per CPU (0 and 1: every one) */
	__u32 len;            /* tests in use; 0: every packet matches */
	__u32 needs;          /* MZ_TAP_NEEDS_* */
	struct mz_tap_test tests[MZ_TAP_FILTER_TESTS];
};

struct mz_tap_header {
	__u64 timestamp_ns;   /* CLOCK_MONOTONIC */
	__u64 packet_id;      /* CPU << 48 | its packet number */
	__u32 point;          /* enum mz_tap_point */
	__u32 instance;       /* MZ_TAP_CHAIN: the tap's instance; a verdict a function chose: its
			       * instance; else 0 */
	__u32 ifindex;        /* the interface the frame came in by */
	__u32 stage;          /* MZ_TAP_NONE at an entry */
	__u32 verdict;        /* the decision as it stands at the tap; MZ_TAP_NONE at an entry */
	__u32 reason;         /* enum mz_counter; MZ_TAP_NONE at an entry */
	__u32 fn_drop;        /* a function's drop reason + 1 (0: none) */
	__u32 vni;
	__u32 len;            /* the frame's length */
	__u32 cap_len;        /* bytes copied after the header */
};

struct mz_tap_stats {
	__u64 records;        /* copied to the ring */
	__u64 filtered;       /* seen, not matching the filter */
	__u64 lost;           /* matching, but the ring was full */
	__u64 sampled_out;    /* matching, skipped by the sampling rate */
	__u64 sample_tick;    /* matching packets seen (picks the sampled ones) */
};

/* mz_bench_packet[0]: the bytes the benchmark wrapper restores before every repetition. */
#define MZ_BENCH_MAX_PACKET 256
struct mz_bench_packet {
	__u32 len;
	__s32 resize;         /* mz_bench_resize: bytes to strip from the head (negative: push) */
	__u8 data[MZ_BENCH_MAX_PACKET];
};

/* Slots of mz_bench_target: the program the benchmark wrapper tail-calls. */
#define MZ_BENCH_TARGET_SLOT 0

#endif /* MIZAR_ABI_H */
