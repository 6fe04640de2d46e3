/* Pointers to page-locked memory inside kernel arguments. On a UVA system a
 * kernel may dereference any page-locked host pointer (XLA's autotuner and
 * NVIDIA's UnifiedMemoryPerf hand kernels 4- and 8-byte page-locked flags
 * this way). Through gpuwire such memory lives only in the client until it
 * becomes a mapped range, so each launch's parameter bytes are read here,
 * before the request is begun, for words that point into page-locked
 * memory the device does not see yet; such memory is made a mapped range
 * in place (memory.c) and the kernel finds it on the server.
 *
 * What cannot be seen from here: pointers stored in device memory, or in
 * memory the kernel reads through another pointer. An integer argument that
 * happens to equal such an address maps that memory too (harmless: the
 * memory then costs a fetch round trip after copies into it). */
#include <string.h>

#include "state.h"

/* Every 8-byte aligned word inside a parameter of at least 8 bytes: pointers
 * themselves, and pointers inside structs passed by value. The common case
 * (no such memory, or values outside the span around it) is one subtraction
 * and one compare a word; a value inside the span (a device pointer often
 * is) is looked up in the list of such allocations, still without a lock. */
void gw_args_map_pinned(const gw_layout *l, const uint8_t *buf, uint32_t n)
{
    uint64_t lo, hi;
    gw_mem_pinned_span(&lo, &hi);
    if (lo == hi)
        return;
    const uint32_t *sizes = l->off + l->n;
    for (uint32_t i = 0; i < l->n; i++) {
        if (sizes[i] < 8)
            continue;
        uint64_t end = (uint64_t)l->off[i] + sizes[i];
        if (end > n)
            end = n; /* n is the layout's total as packed: kept inside it all the same */
        for (uint64_t p = ((uint64_t)l->off[i] + 7) & ~(uint64_t)7; p + 8 <= end; p += 8) {
            uint64_t v;
            memcpy(&v, buf + p, sizeof v);
            if (v - lo >= hi - lo || !gw_mem_maybe_pinned(v))
                continue;
            if (gw_mem_kernel_arg_use(v)) /* the span shrank: read it again */
                gw_mem_pinned_span(&lo, &hi);
            if (lo == hi)
                return;
        }
    }
}
