/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The maps of the data plane, pinned by name so that every program and the appliance share them. */
#ifndef MZ_MAPS_H
#define MZ_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "mizar_abi.h"
#include "mizar_fn.h" /* the maps functions share: mz_meta, mz_functions, mz_stage_exit, stats */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mz_host_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_HOSTS);
	__type(key, __u32); /* underlay IPv4, network order */
	__type(value, struct mz_host);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_hosts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_VPCS);
	__type(key, __u32); /* VNI */
	__type(value, struct mz_vpc);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_vpcs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MZ_MAX_NETWORKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_network_key);
	__type(value, struct mz_network);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_networks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_ENDPOINTS);
	__type(key, struct mz_endpoint_key);
	__type(value, struct mz_endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_VPC_MEMBERS);
	__type(key, struct mz_member_key);
	__type(value, struct mz_member);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_vpc_members SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MZ_MAX_LEARNED);
	__type(key, struct mz_endpoint_key);
	__type(value, struct mz_learned_host);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_learned SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MZ_LEARNED_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct mz_learned_cache_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_learned_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MZ_HOST_FILTER_SLOTS);
	__type(key, __u32);
	__type(value, __u32); /* underlay IPv4, network order; 0 = empty */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_host_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MZ_MAX_LOCAL_IFACES);
	__type(key, __u32); /* stats_slot of the endpoint */
	__type(value, struct mz_endpoint_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_endpoint_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_LOCAL_IFACES);
	__type(key, __u32); /* ifindex of the endpoint's host-side veth */
	__type(value, struct mz_local_iface);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_local_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MZ_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, struct mz_counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, MZ_STAGE_COUNT);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_stages SEC(".maps");

/* mz_egress_stage[0]: the entry program of the ON_EGRESS chain's live generation (transit's
 * stages have theirs in mz_stages). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_egress_stage SEC(".maps");

/* mz_chains[point * 2 + generation]: the published chain plans (see mizar_abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MZ_CHAIN_PLANS);
	__type(key, __u32);
	__type(value, struct mz_chain);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_chains SEC(".maps");

/* mz_scoped_chains: the chains of VPCs and endpoints (see mizar_abi.h). Not preallocated: a
 * replaced plan is freed after a grace period, never reused under a reader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_SCOPED_CHAINS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_scope_key);
	__type(value, struct mz_chain);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mz_scoped_chains SEC(".maps");

#endif /* MZ_MAPS_H */
