/* What the engine's files share among themselves (native/worker/engine/):
 * the reader (reader.c) turns frames into jobs and hands them to the
 * scheduler (scheduler.c), whose threads run each job through the dispatcher
 * (dispatch.c). Not for the layers below. */
#ifndef GW_WORKER_ENGINE_INTERNAL_H
#define GW_WORKER_ENGINE_INTERNAL_H

#include <stdint.h>

#include "../../generated/wire_props.h" /* per-op properties: copy direction, only-waits, control ops */
#include "../handlers/handlers.h"

#define MAX_THREADS 256 /* client thread tags a session may use */
#define BATCH 64        /* jobs handed over, or taken, at once */

/* One request, read and waiting to run (or running) on its thread. */
typedef struct job {
    struct job *next;
    uint64_t order; /* arrival number */
    uint32_t cap;   /* payload bytes allocated */
    gw_hdr h;
    uint8_t payload[];
} job;

typedef struct tthread tthread; /* the worker thread of one client thread tag */

/* ---- scheduler.c ---- */
job *gw_htod_job_alloc(uint32_t len); /* a copy frame's: a page-locked buffer if large and one is free (reader only) */
job *gw_job_alloc(uint32_t len);  /* room for len payload bytes; NULL if out of memory (reader only) */
size_t gw_job_cost(const job *j); /* what a queued job counts against the session's backlog */
/* The worker thread of a client thread, started at its first request; NULL past MAX_THREADS. */
tthread *gw_sched_thread(uint32_t tid);
/* Queues the list head..tail (linked by next) on t, in order, waiting while
 * t's or the session's backlog is over its limit (cost: the list's
 * gw_job_cost); -1 if the session broke meanwhile (the list is then the
 * caller's to free). */
int gw_sched_enqueue(tthread *t, job *head, job *tail, size_t bytes, size_t cost);
/* Ends the session's threads. With drain, queued work runs first (an orderly
 * goodbye). 0, or -1 if a thread is stuck in the driver: the caller must then
 * end the process rather than serve again (the thread still uses its state). */
int gw_sched_stop(int drain);
int gw_sched_broken(void); /* a job was malformed or a write stalled: the session ends */
void gw_sched_stalled(void); /* a write to the client stalled: the session ends (gw_io_on_stall) */

/* ---- sync_fold.c ---- */
/* Which posted stream synchronizes of a run of jobs need not run. A run's
 * state starts empty ({0}); gw_fold_skip is asked for each job in order,
 * returns 1 for one to skip and otherwise notes what the job does (it runs). */
#define GW_FOLD_STREAMS 8
typedef struct gw_fold {
    int n;
    uint64_t idle[GW_FOLD_STREAMS]; /* streams known idle */
} gw_fold;
int gw_fold_skip(gw_fold *f, const job *k);
unsigned long long gw_syncs_skipped(void); /* how many so far */

/* ---- dispatch.c ---- */
void gw_dispatch_run(gw_call *c); /* the handler of c's op (a valid one: the reader checked) */
int gw_nvml_valid_op(unsigned op); /* an NVML op with a handler */

#endif
