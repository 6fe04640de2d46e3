/* Buffers for the bytes of the lanes' host-to-device copy pieces (issue 20
 * item 4). A piece read into fresh memory pays a page fault per page (costly
 * on a virtual machine), and one read into ordinary memory is copied by the
 * driver through its own staging, on the job's thread, before the next
 * piece's copy can start: about 0.35 ms per 4 MiB piece on the H100 host.
 * The pieces of one copy arrive together on the lanes, so those copies add
 * up after the last byte came in. Here a session keeps SLOTS buffers of its
 * own, faulted in by a thread of their own once its first host-to-device
 * piece arrives (no CUDA call, not in the way of that copy: ready for the
 * next ones; a session that only copies to the host makes none), or on a
 * machine of 8 or more cores once its first lane opens, and page-locked
 * with cuMemHostRegister on a job's thread, where a context is current,
 * between its runs of jobs (gw_pinned_tend): from then on a piece's copy is
 * queued at once and the GPU reads the bytes directly.
 *
 * The memory is the worker's (mmap), registered, not the driver's: a context
 * reset (cudaDeviceReset) should drop only the registration (not tried on a
 * GPU), and the buffers go on as
 * ordinary memory instead of vanishing under the lanes' readers.
 * A registered buffer read by a queued copy is fenced: an event recorded
 * behind the copy on its stream, and the buffer is not handed out again
 * before the event is done. The threads that take buffers (a lane's reader)
 * never call CUDA; when none is free they use ordinary memory, as before.
 * GPUWIRE_PIN_CHUNKS=0 in the server's environment: no such buffers. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core.h"

#define SLOTS 16 /* a session's piece buffers: about 64 MiB (a delivery of 64 MiB fits) */
#define REGISTER_PER_TEND 2

enum { EMPTY, BUSY, FREE, TAKEN, FENCED }; /* BUSY: being registered, nobody else's */

typedef struct slot {
    uint8_t *p;
    size_t n;
    int state;
    int registered;
    int fence_pending; /* while TAKEN: a copy reading it was queued */
    CUevent ev;        /* created on first use, in the context current then */
    CUstream fence_stream; /* while FENCED: the stream of the copy that reads it */
} slot;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static slot slots[SLOTS];
static atomic_int prepared;
static int register_failures; /* under lock: after a few, no more tries */
static atomic_ullong pieces_pinned, pieces_plain; /* for the session's last log line */
static atomic_ullong frames_pinned;               /* copy frames of the session's connection read into them */
static int enabled = -1;

typedef CUresult (*host_register_fn)(void *, size_t, unsigned);
typedef CUresult (*event_create_fn)(CUevent *, unsigned);
typedef CUresult (*event_record_fn)(CUevent, CUstream);
typedef CUresult (*event_fn)(CUevent);
typedef CUresult (*sync_fn)(CUstream);
typedef CUresult (*ctx_get_fn)(CUcontext *);

static int on(void)
{
    if (enabled < 0) {
        const char *v = getenv("GPUWIRE_PIN_CHUNKS");
        enabled = !(v && !strcmp(v, "0"));
    }
    return enabled;
}

static size_t buffer_bytes(void) { return GW_COPY_CHUNK + 4096; /* a piece, its job's header and fields */ }

static void *fault_in(void *arg)
{
    (void)arg;
    /* at the lowest priority: on a small machine the session's own threads
     * (and the client's) go first; the buffers are for later copies */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
    for (int i = 0; i < SLOTS; i++) {
        void *p = mmap(NULL, buffer_bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED)
            return NULL; /* no room: the pieces use ordinary memory */
        pthread_mutex_lock(&lock);
        slots[i] = (slot){.p = p, .n = buffer_bytes(), .state = FREE};
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

void gw_pinned_prepare(void)
{
    if (atomic_load(&prepared) || !on() || atomic_exchange(&prepared, 1))
        return; /* a load first: every piece passes here */
    pthread_t t;
    if (pthread_create(&t, NULL, fault_in, NULL) == 0)
        pthread_detach(t);
}

/* A lane opened: the client is about to copy in bulk. A machine with cores to
 * spare makes the buffers now, so the program's first copy lands in them too
 * (asyncAPI's and simpleMultiCopy's first copies are the ones they time); a
 * small one (CI's 2 cores) waits for the first piece, where the fault-in runs
 * beside the copies instead of beside everything else the session starts. */
#define EARLY_MIN_CPUS 8
void gw_pinned_lane_opened(void)
{
    if (sysconf(_SC_NPROCESSORS_ONLN) >= EARLY_MIN_CPUS)
        gw_pinned_prepare();
}

void *gw_pinned_take(size_t n, int lane)
{
    if (lane)
        gw_pinned_prepare(); /* the session's first host-to-device piece: the buffers are made for the next ones */
    if (enabled == 1 && n <= buffer_bytes()) {
        pthread_mutex_lock(&lock);
        int best = -1; /* a registered one first; a frame of the session's connection takes only those */
        for (int i = 0; i < SLOTS; i++)
            if (slots[i].state == FREE && (lane || slots[i].registered) &&
                (best < 0 || (slots[i].registered && !slots[best].registered)))
                best = i;
        if (best >= 0) {
            slots[best].state = TAKEN;
            slots[best].fence_pending = 0;
            int reg = slots[best].registered;
            pthread_mutex_unlock(&lock);
            atomic_fetch_add(lane ? (reg ? &pieces_pinned : &pieces_plain) : &frames_pinned, 1);
            return slots[best].p;
        }
        pthread_mutex_unlock(&lock);
    }
    if (lane)
        atomic_fetch_add(&pieces_plain, 1);
    return NULL;
}

/* A page-locked one for a delivery's piece (deliveries.c), on a job's thread:
 * fences found done are let go first (CUDA may be called here). NULL when
 * none is free: the delivery stages in memory of its own, as before. The
 * bytes leave it once its copy's event is done; gw_pinned_give returns it.
 * One still fenced by a copy on the delivery's own stream s will do as well:
 * the stream runs that copy (which reads it) before the delivery's (which
 * writes it). asyncAPI copies 64 MiB each way on one stream, back to back:
 * the copy back found every buffer fenced by the copy there. */
void *gw_pinned_take_locked_chunk(CUstream s)
{
    if (enabled != 1 || !atomic_load(&prepared))
        return NULL;
    event_fn query = (event_fn)gw_driver_sym(GW_OP_cuEventQuery);
    pthread_mutex_lock(&lock);
    int best = -1;
    for (int i = 0; i < SLOTS && best < 0; i++) {
        if (slots[i].state == FENCED && slots[i].registered && query && query(slots[i].ev) != CUDA_ERROR_NOT_READY)
            slots[i].state = FREE;
        if (slots[i].state == FREE && slots[i].registered)
            best = i;
    }
    /* (not the per-thread stream: two job threads' are two streams) */
    for (int i = 0; i < SLOTS && best < 0 && s != CU_STREAM_PER_THREAD; i++)
        if (slots[i].state == FENCED && slots[i].registered && slots[i].fence_stream == s)
            best = i;
    if (best >= 0) {
        slots[best].state = TAKEN;
        slots[best].fence_pending = 0;
    }
    pthread_mutex_unlock(&lock);
    return best >= 0 ? slots[best].p : NULL;
}

void gw_pinned_counts(unsigned long long *pinned, unsigned long long *plain, unsigned long long *frames)
{
    *pinned = atomic_load(&pieces_pinned);
    *plain = atomic_load(&pieces_plain);
    *frames = atomic_load(&frames_pinned);
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

/* Only the job's thread that holds the buffer calls this, so the slot stays
 * TAKEN meanwhile; its event is touched by that thread and by gw_pinned_tend,
 * which sees it only once the slot is FENCED. Ordinary memory needs no fence:
 * the driver has staged its bytes when the copy call returns. */
void gw_pinned_fence(const void *p, CUstream s)
{
    if (enabled != 1)
        return;
    const uint8_t *b = p;
    slot *sl = NULL;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < SLOTS && !sl; i++)
        if (slots[i].state == TAKEN && slots[i].registered && b >= slots[i].p && b < slots[i].p + slots[i].n)
            sl = &slots[i];
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
    sl->fence_stream = s;
    pthread_mutex_unlock(&lock);
}

void gw_pinned_tend(void)
{
    if (enabled != 1 || !atomic_load(&prepared))
        return;
    event_fn query = (event_fn)gw_driver_sym(GW_OP_cuEventQuery);
    host_register_fn reg = (host_register_fn)gw_driver_sym(GW_OP_cuMemHostRegister_v2);
    ctx_get_fn current = (ctx_get_fn)gw_driver_sym(GW_OP_cuCtxGetCurrent);
    CUcontext ctx = NULL;
    if (!current || current(&ctx) != CUDA_SUCCESS || !ctx)
        reg = NULL; /* no context on this thread yet: registering waits for a later tend */
    int todo[REGISTER_PER_TEND], ntodo = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].state == FENCED) {
            CUresult r = query ? query(slots[i].ev) : CUDA_SUCCESS;
            if (r != CUDA_ERROR_NOT_READY) /* done, or the event's context is gone (its copies with it) */
                slots[i].state = FREE;
        }
        if (slots[i].state == FREE && !slots[i].registered && ntodo < REGISTER_PER_TEND && register_failures < 3 && reg) {
            slots[i].state = BUSY;
            todo[ntodo++] = i;
        }
    }
    pthread_mutex_unlock(&lock);
    for (int k = 0; k < ntodo; k++) { /* outside the lock: page-locking 4 MiB takes a while */
        slot *sl = &slots[todo[k]];
        CUresult r = reg(sl->p, sl->n, CU_MEMHOSTREGISTER_PORTABLE);
        pthread_mutex_lock(&lock);
        if (r == CUDA_SUCCESS || r == CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED)
            sl->registered = 1;
        else
            register_failures++; /* no context here, or no room: ordinary memory, as before */
        sl->state = FREE;
        pthread_mutex_unlock(&lock);
    }
}
