/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A function the kernel's verifier refuses (it reads the packet without a bounds check): what
 * `mizar fn load` must turn away with the verifier's reason, changing nothing. Used by the
 * tests; not an example to follow.
 */
#include "mizar_fn.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("xdp")
int out_of_bounds(struct xdp_md *ctx)
{
	struct mz_meta *m = mz_fn_meta();
	__u8 *data = (void *)(long)ctx->data;

	if (!m)
		return XDP_ABORTED;
	if (data[40] == 0x11)
		return mz_fn_drop(ctx, m, 0);
	return mz_fn_next(ctx, m);
}
