/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Copy-and-check lookups, shared by the pipeline and the functions. */
#ifndef MZ_LOOKUP_H
#define MZ_LOOKUP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/*
 * Copy-and-check lookups of the maps whose elements the kernel may reuse for another key while
 * we hold them (see "Reused entries" in mizar_abi.h). The value is copied to the stack, then its
 * key copy is checked in the copy and, after a compiler barrier, in the live element: a reuse
 * that began before our copy finished has rewritten the live key copy by then.
 */
enum mz_lookup {
	MZ_FOUND = 0,
	MZ_MISSING = 1,
	MZ_CHANGED = 2, /* reused for another key while read: count and drop */
};

#define READ_KEY_ONCE(x) (*(const volatile __u32 *)&(x))

#define LOOKUP_COPY(map, key, out, same_key)                                                   \
	({                                                                                     \
		const typeof(*(out)) *__live = bpf_map_lookup_elem(map, key);                  \
		enum mz_lookup __r = MZ_MISSING;                                               \
		if (__live) {                                                                  \
			__builtin_memcpy(out, __live, sizeof(*(out)));                         \
			asm volatile("" ::: "memory");                                         \
			__r = same_key(out, key) && same_key(__live, key) ? MZ_FOUND : MZ_CHANGED;    \
		}                                                                              \
		__r;                                                                           \
	})

#endif /* MZ_LOOKUP_H */
