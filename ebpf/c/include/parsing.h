/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Header parsing with a cursor: every read is preceded by a bounds check against data_end. */
#ifndef MZ_PARSING_H
#define MZ_PARSING_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct cursor {
	void *pos;
	void *end;
};

static __always_inline void cursor_init(struct cursor *c, struct xdp_md *ctx)
{
	c->pos = (void *)(long)ctx->data;
	c->end = (void *)(long)ctx->data_end;
}

/* Returns a pointer to the next len bytes and advances past them, or NULL if they are not there. */
#define CURSOR_TAKE(c, type)                                                                   \
	({                                                                                     \
		type *__p = (type *)(c)->pos;                                                  \
		if ((void *)(__p + 1) > (c)->end)                                              \
			__p = NULL;                                                            \
		else                                                                           \
			(c)->pos = (void *)(__p + 1);                                          \
		__p;                                                                           \
	})

struct genevehdr {
	__u8 ver_optlen;  /* version (2 bits) | option length in 4-byte words (6 bits) */
	__u8 flags;       /* O | C | reserved */
	__be16 protocol;
	__u8 vni[3];
	__u8 reserved;
};

struct geneve_opt {
	__be16 opt_class;
	__u8 type;
	__u8 length;      /* reserved (3 bits) | data length in 4-byte words (5 bits) */
};

struct mz_source_host_opt {
	struct geneve_opt hdr;
	__be32 host_ip;
};

struct arp_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__be32 spa;
	__u8 tha[ETH_ALEN];
	__be32 tpa;
} __attribute__((packed));

#define GENEVE_VERSION(g) ((g)->ver_optlen >> 6)
#define GENEVE_FLAG_CONTROL 0x80 /* O: a control message for the tunnel endpoint, not data */
#define GENEVE_OPT_BYTES(g) (((g)->ver_optlen & 0x3f) * 4)

static __always_inline __u32 geneve_vni(const struct genevehdr *g)
{
	return ((__u32)g->vni[0] << 16) | ((__u32)g->vni[1] << 8) | g->vni[2];
}

static __always_inline void geneve_set_vni(struct genevehdr *g, __u32 vni)
{
	g->vni[0] = vni >> 16;
	g->vni[1] = vni >> 8;
	g->vni[2] = vni;
}

#define MZ_IP_DF 0x4000 /* don't fragment (frag_off, host order) */

static __always_inline int ipv4_is_fragment(const struct iphdr *ip)
{
	return (ip->frag_off & bpf_htons(0x3fff)) != 0; /* MF set or offset non-zero */
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Incremental checksum update for one changed 16-bit word (RFC 1624: HC' = ~(~HC + ~m + m')). */
static __always_inline void csum_replace2(__u16 *check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~*check;
	sum += (__u16)~old;
	sum += new;
	*check = csum_fold(sum);
}

static __always_inline void csum_replace4(__u16 *check, __u32 old, __u32 new)
{
	csum_replace2(check, (__u16)(old >> 16), (__u16)(new >> 16));
	csum_replace2(check, (__u16)old, (__u16)new);
}

/* Checksum of an option-less IPv4 header whose check field is zero. */
static __always_inline __u16 ipv4_csum_20(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return csum_fold(sum);
}

/* Three 16-bit moves instead of six byte moves: Ethernet addresses in a frame, and the MAC
 * fields of our map values, are 2-byte aligned. */
static __always_inline void mac_copy(__u8 *dst, const __u8 *src)
{
	__u16 *d = (__u16 *)dst;
	const __u16 *s = (const __u16 *)src;

	d[0] = s[0];
	d[1] = s[1];
	d[2] = s[2];
}

#endif /* MZ_PARSING_H */
