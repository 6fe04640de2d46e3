/* Page-locked buffers for the bytes of host-to-device copy pieces (issue 20
 * item 4). A piece read into ordinary memory is copied by the driver through
 * its own staging, on the job's thread, before the next piece's copy can
 * start: about 0.35 ms per 4 MiB piece on the H100 host. The pieces of one
 * copy arrive together on the lanes, so those copies add up after the last
 * byte came in; from page-locked memory the copy is queued at once and the
 * GPU reads the bytes directly.
 *
 * A buffer read by a queued copy is fenced: an event recorded behind the
 * copy on its stream, and the buffer is not handed out again before the
 * event is done. Fences are looked at, and the pool grows, on a job's
 * thread between its runs of jobs (gw_pinned_tend), where a context is
 * current; the threads that take buffers (a lane's reader) never call CUDA.
 * When none is free the caller uses ordinary memory, as without the pool.
 * GPUWIRE_PIN_CHUNKS=0 in the server's environment: no pool. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define SLOTS 12 /* a session's page-locked pieces: about 48 MiB */
#define GROW_PER_TEND 2

enum { EMPTY, GROWING, FREE, TAKEN, FENCED };

typedef struct slot {
    uint8_t *p;
    size_t n;
    int state;
    int fence_pending; /* while TAKEN: a copy reading it was queued */
    CUevent ev;        /* created on first use, in the context current then */
} slot;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static slot slots[SLOTS];
static atomic_int wanted; /* takers that found no free buffer since the last tend */
static atomic_ullong pieces_pinned, pieces_plain; /* what gw_pinned_take answered, for the session's last log line */
static int enabled = -1;

typedef CUresult (*host_alloc_fn)(void **, size_t, unsigned);
typedef CUresult (*event_create_fn)(CUevent *, unsigned);
typedef CUresult (*event_record_fn)(CUevent, CUstream);
typedef CUresult (*event_fn)(CUevent);
typedef CUresult (*sync_fn)(CUstream);

static int on(void)
{
    if (enabled < 0) {
        const char *v = getenv("GPUWIRE_PIN_CHUNKS");
        enabled = !(v && !strcmp(v, "0"));
    }
    return enabled;
}

static size_t buffer_bytes(void) { return GW_COPY_CHUNK + 4096; /* a piece, its job's header and fields */ }

void *gw_pinned_take(size_t n)
{
    if (!on() || n > buffer_bytes()) {
        atomic_fetch_add(&pieces_plain, 1);
        return NULL;
    }
    pthread_mutex_lock(&lock);
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].state == FREE) {
            slots[i].state = TAKEN;
            slots[i].fence_pending = 0;
            pthread_mutex_unlock(&lock);
            atomic_fetch_add(&pieces_pinned, 1);
            return slots[i].p;
        }
    pthread_mutex_unlock(&lock);
    atomic_fetch_add(&wanted, 1);
    atomic_fetch_add(&pieces_plain, 1);
    return NULL;
}

void gw_pinned_counts(unsigned long long *pinned, unsigned long long *plain)
{
    *pinned = atomic_load(&pieces_pinned);
    *plain = atomic_load(&pieces_plain);
}

int gw_pinned_give(void *p)
{
    if (!p || enabled != 1)
        return 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p == p && slots[i].state == TAKEN) {
            slots[i].state = slots[i].fence_pending ? FENCED : FREE;
            pthread_mutex_unlock(&lock);
            return 1;
        }
    pthread_mutex_unlock(&lock);
    return 0;
}

static slot *slot_of(const void *p)
{
    const uint8_t *b = p;
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].state == TAKEN && b >= slots[i].p && b < slots[i].p + slots[i].n)
            return &slots[i];
    return NULL;
}

/* Only the job's thread that holds the buffer calls this, so the slot stays
 * TAKEN meanwhile; its event is touched by that thread and by gw_pinned_tend,
 * which sees it only once the slot is FENCED. */
void gw_pinned_fence(const void *p, CUstream s)
{
    if (enabled != 1)
        return;
    pthread_mutex_lock(&lock);
    slot *sl = slot_of(p);
    pthread_mutex_unlock(&lock);
    if (!sl)
        return;
    event_create_fn create = (event_create_fn)gw_driver_sym(GW_OP_cuEventCreate);
    event_record_fn record = (event_record_fn)gw_driver_sym(GW_OP_cuEventRecord);
    event_fn destroy = (event_fn)gw_driver_sym(GW_OP_cuEventDestroy_v2);
    int fenced = 0;
    for (int attempt = 0; attempt < 2 && !fenced && create && record; attempt++) {
        if (!sl->ev && create(&sl->ev, CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS)
            sl->ev = NULL;
        if (sl->ev && record(sl->ev, s) == CUDA_SUCCESS)
            fenced = 1;
        else if (sl->ev && destroy) { /* made in another context: make it again in this one */
            destroy(sl->ev);
            sl->ev = NULL;
        }
    }
    if (!fenced) { /* no event: the copy is waited for, so the buffer is free when the job ends */
        sync_fn sync = (sync_fn)gw_driver_sym(GW_OP_cuStreamSynchronize);
        if (sync)
            sync(s);
    }
    pthread_mutex_lock(&lock);
    sl->fence_pending = fenced;
    pthread_mutex_unlock(&lock);
}

void gw_pinned_tend(void)
{
    if (enabled != 1)
        return;
    event_fn query = (event_fn)gw_driver_sym(GW_OP_cuEventQuery);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].state == FENCED) {
            CUresult r = query ? query(slots[i].ev) : CUDA_SUCCESS;
            if (r != CUDA_ERROR_NOT_READY) /* done, or the event's context is gone (its copies with it) */
                slots[i].state = FREE;
        }
    int grow = atomic_exchange(&wanted, 0);
    pthread_mutex_unlock(&lock);
    if (grow > GROW_PER_TEND)
        grow = GROW_PER_TEND;
    host_alloc_fn alloc = (host_alloc_fn)gw_driver_sym(GW_OP_cuMemHostAlloc);
    for (int k = 0; k < grow && alloc; k++) {
        pthread_mutex_lock(&lock);
        int i = 0;
        while (i < SLOTS && slots[i].state != EMPTY)
            i++;
        if (i < SLOTS)
            slots[i].state = GROWING; /* another thread's tend leaves it alone */
        pthread_mutex_unlock(&lock);
        if (i == SLOTS)
            return;
        void *p = NULL; /* outside the lock: page-locking 4 MiB takes a while */
        int made = alloc(&p, buffer_bytes(), CU_MEMHOSTALLOC_PORTABLE) == CUDA_SUCCESS && p;
        pthread_mutex_lock(&lock);
        if (made)
            slots[i] = (slot){.p = p, .n = buffer_bytes(), .state = FREE};
        else
            slots[i].state = EMPTY; /* no context here, or no room: ordinary memory, as before */
        pthread_mutex_unlock(&lock);
        if (!made)
            return;
    }
}
