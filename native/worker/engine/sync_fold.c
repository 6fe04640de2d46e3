/* Posted stream synchronizes that a later one in the same run of jobs makes
 * needless (issue 20: llama.cpp copies each of a token's six inputs and
 * synchronizes its stream after each, twice; the client posts those, since
 * the application does not wait, and the worker ran thirteen synchronizes a
 * token, each waiting for the copy before it: about 35 us of a 3 ms token on
 * the H100 machine before the graph could start).
 *
 * A posted synchronize of stream S only holds this worker thread until S is
 * idle. It is skipped when, in the same run (jobs of one client thread in
 * arrival order, which no other thread's job can come between), every job
 * after it up to another posted synchronize of S is work queued on S itself:
 * that later synchronize waits for everything the skipped one would have,
 * and the work between is ordered behind it on the GPU by the stream. Any
 * other job in between (another stream, a host-visible effect, anything not
 * listed here) keeps the synchronize. A skipped one reports nothing: a
 * failure it would have seen is the context's, and shows at the next call. */
#include <string.h>

#include "internal.h"

static unsigned long long folded; /* worker threads count; read at session end */

/* The stream a job's work is queued on, as the client named it (raw handle)
 * and whether 0 there means the per-thread stream; 0 if the job is not one of
 * the stream-ordered kinds recognized here. */
static int stream_of(const job *k, uint64_t *s, int *per_thread)
{
    size_t at;
    switch (k->h.op) {
    case GW_OP_cuStreamSynchronize:
    case GW_OP_cuStreamSynchronize_ptsz:
        at = 0;
        break;
    case GW_OP_cuMemcpyHtoDAsync_v2: /* u64 dst, u64 stream, bytes */
    case GW_OP_cuMemcpyHtoDAsync_v2_ptsz:
    case GW_OP_cuGraphLaunch: /* u64 exec, u64 stream */
    case GW_OP_cuGraphLaunch_ptsz:
        at = 8;
        break;
    default:
        return 0;
    }
    if (k->h.len < at + 8)
        return 0; /* malformed: its handler says so; nothing is skipped for it */
    memcpy(s, k->payload + at, 8);
    *per_thread = gw_op_per_thread(k->h.op);
    return 1;
}

static int posted_sync(const job *k)
{
    return (k->h.op == GW_OP_cuStreamSynchronize || k->h.op == GW_OP_cuStreamSynchronize_ptsz) &&
           (k->h.flags & GW_F_NOREPLY) && !(k->h.flags & GW_F_COLLECT);
}

int gw_sync_folded(const job *k)
{
    uint64_t s, s2;
    int pt, pt2;
    if (!posted_sync(k) || !stream_of(k, &s, &pt))
        return 0;
    for (const job *n = k->next; n; n = n->next) {
        if (!stream_of(n, &s2, &pt2) || s2 != s || pt2 != pt)
            return 0;
        if (posted_sync(n)) {
            __atomic_fetch_add(&folded, 1, __ATOMIC_RELAXED);
            return 1;
        }
    }
    return 0; /* the run ends first: the next job may be another thread's */
}

unsigned long long gw_syncs_folded(void) { return __atomic_load_n(&folded, __ATOMIC_RELAXED); }
