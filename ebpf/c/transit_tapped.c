/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* mz_transit_tapped: transit with the taps (see MZ_TAPPED in transit.c). */
#define MZ_TAPPED 1
#include "transit.c"
