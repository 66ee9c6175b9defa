/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* mz_egress_tapped: egress with the taps (see MZ_TAPPED in egress.c). */
#define MZ_TAPPED 1
#include "egress.c"
