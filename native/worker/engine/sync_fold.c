/* Posted stream synchronizes the worker need not run (issue 20). llama.cpp
 * copies each of a token's inputs on the per-thread stream and synchronizes
 * it, then synchronizes its compute stream, which has nothing queued: twelve
 * to fourteen synchronizes a token that the client posts (the application
 * does not wait for them), each run by the worker: with the six input
 * copies between them, about 60 us of a 3 ms token on the H100 machine
 * before the graph could start (a worker timeline, bench/results.md).
 *
 * A posted synchronize of stream S only holds this worker thread until S is
 * idle. Within one run of jobs (one client thread's, in arrival order: no
 * other thread's job comes between) it is skipped when
 *  - S is known idle: a synchronize of S ran earlier in the run and nothing
 *    since was queued on S (a job this file does not know might have, so it
 *    forgets every stream); or
 *  - a later posted synchronize of S in the run covers it: every job between
 *    is work queued on S itself (ordered behind it by the stream) or a
 *    synchronize of a stream known idle, so the later one waits for
 *    everything this one would have before anything else can start.
 * The legacy default stream is never skipped (work on other streams waits
 * for it and it for them). A skipped synchronize reports nothing: a failure
 * it would have seen is the context's, and shows at the next call. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static unsigned long long skipped; /* by every worker thread; read at session end */

enum { OTHER, SYNC, WORK };
#define PER_THREAD_KEY 2 /* CU_STREAM_PER_THREAD: the per-thread stream however named */

/* What a job does to which stream: SYNC (a posted synchronize) or WORK
 * (queued on it), *key the stream as one value; OTHER: anything else, or the
 * legacy stream (handle 0 or CU_STREAM_LEGACY without the per-thread variant). */
static int classify(const job *k, uint64_t *key)
{
    size_t at;
    int kind;
    switch (k->h.op) {
    case GW_OP_cuStreamSynchronize:
    case GW_OP_cuStreamSynchronize_ptsz:
        if (!(k->h.flags & GW_F_NOREPLY) || (k->h.flags & GW_F_COLLECT))
            return OTHER; /* the client waits for it, or for what it reports */
        at = 0, kind = SYNC;
        break;
    case GW_OP_cuMemcpyHtoDAsync_v2: /* u64 dst, u64 stream, bytes */
    case GW_OP_cuMemcpyHtoDAsync_v2_ptsz:
    case GW_OP_cuGraphLaunch: /* u64 exec, u64 stream */
    case GW_OP_cuGraphLaunch_ptsz:
        at = 8, kind = WORK;
        break;
    default:
        return OTHER;
    }
    uint64_t s;
    if (k->h.len < at + 8)
        return OTHER; /* malformed: its handler says so */
    memcpy(&s, k->payload + at, 8);
    if (s == 0 && gw_op_per_thread(k->h.op))
        s = PER_THREAD_KEY;
    if (s == 0 || s == 1)
        return OTHER; /* the legacy stream */
    *key = s;
    return kind;
}

static int is_idle(const gw_fold *f, uint64_t s)
{
    for (int i = 0; i < f->n; i++)
        if (f->idle[i] == s)
            return 1;
    return 0;
}

static void forget(gw_fold *f, uint64_t s)
{
    for (int i = 0; i < f->n; i++)
        if (f->idle[i] == s) {
            f->idle[i] = f->idle[--f->n];
            return;
        }
}

static void note_idle(gw_fold *f, uint64_t s)
{
    if (is_idle(f, s))
        return;
    if (f->n == GW_FOLD_STREAMS)
        f->n--; /* the last one noted gives way */
    f->idle[f->n++] = s;
}

/* A later posted synchronize of s covers k's: only work on s or synchronizes
 * of idle streams between (which leave the idle set as it is). */
static int covered(const gw_fold *f, const job *k, uint64_t s)
{
    for (const job *n = k->next; n; n = n->next) {
        uint64_t s2;
        int kind = classify(n, &s2);
        if (kind == SYNC && s2 == s)
            return 1;
        if (!(kind == WORK && s2 == s) && !(kind == SYNC && is_idle(f, s2)))
            return 0;
    }
    return 0; /* the run ends first: the next job may be another thread's */
}

/* GPUWIRE_SYNC_SKIP=0 in the server's environment: every posted synchronize
 * runs (an A/B switch) */
static int enabled(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("GPUWIRE_SYNC_SKIP");
        v = !(e && !strcmp(e, "0"));
    }
    return v;
}

int gw_fold_skip(gw_fold *f, const job *k)
{
    if (!enabled())
        return 0;
    uint64_t s;
    int kind = classify(k, &s);
    if (kind == SYNC) {
        if (is_idle(f, s) || covered(f, k, s)) {
            __atomic_fetch_add(&skipped, 1, __ATOMIC_RELAXED);
            return 1;
        }
        note_idle(f, s); /* it runs: s is idle after it */
    } else if (kind == WORK) {
        forget(f, s);
    } else {
        f->n = 0; /* it may queue work on any stream */
    }
    return 0;
}

unsigned long long gw_syncs_skipped(void) { return __atomic_load_n(&skipped, __ATOMIC_RELAXED); }
