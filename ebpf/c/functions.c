/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The built-in network functions, placed in chains at the pipeline's stages (see mizar_fn.h for
 * what a function is, and how it hands a packet on or drops it).
 *
 * - mz_fn_count: hands every packet on; its counters show what reached that point of the chain
 *   (a probe), and chains of it measure what the chain mechanism costs.
 */
#include "mizar_fn.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("xdp")
int mz_fn_count(struct xdp_md *ctx)
{
	struct mz_meta *m = mz_fn_meta();

	if (!m)
		return XDP_ABORTED;
	return mz_fn_next(ctx, m);
}
