/* Host memory the GPU sees: the client's mirror of mapped (zero-copy) and
 * managed ranges (docs/host-memory.md has the model and its guarantees).
 *
 * A range has one address in both processes. The worker holds the copy the
 * GPU uses; the client maps a mirror at the same address, backed by a memfd
 * with a second, private view of it for gpuwire's own reads and writes, so
 * the application's view can be protected page by page while gpuwire fills
 * or reads it. Each page of the mirror is
 *   valid (read-only): equal to the worker's as of the last synchronisation,
 *   dirty (read-write): the host wrote it since; the worker's is stale,
 *   stale (no access): the device may have written it since.
 * Dirty pages go to the worker (MAPPED_WRITE) before the next request of any
 * call leaves; every page turns stale after a round trip that followed device
 * work (launches, copies: anything sent), and a stale page is fetched
 * (MAPPED_READ) on the host's first touch, from the SIGSEGV handler below.
 * Memory the program never maps costs nothing: no handler, no hooks.
 *
 * The device reports CONCURRENT_MANAGED_ACCESS 0: host and device never use
 * one managed page at once, where a mirror would let them race on their own
 * copies and lose writes. A host touch of globally attached managed memory
 * while a kernel may run (from a launch until a synchronize's or a
 * synchronous copy's reply) first waits for the context's work to end (a
 * context synchronize), so the touch comes after the kernels, one order a
 * device with concurrent access allows too; work still running after
 * GPUWIRE_MANAGED_WAIT_S seconds (default 30; 0: no wait) makes the touch a
 * fault with a message, as on a device without concurrent access (a kernel
 * waiting for the host, say). GPUWIRE_MANAGED_CONCURRENT=1: let them race. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../diag/diag.h"
#include "../diag/env.h"
#include "state.h"

enum { VALID = 0, DIRTY = 1, STALE = 2 };
enum { PAGE = 4096 };
#define MAX_RANGES 4096
#define FETCH_FIRST (64u << 10) /* a first fetch's bytes; doubled while touches run on, up to a copy chunk */

typedef struct mrange {
    uint64_t base, size; /* page-aligned */
    unsigned kind;       /* GW_MAPPED_HOST_ALLOC, _REGISTER, _MANAGED */
    unsigned flags;      /* as the application gave them */
    uint8_t *alias;      /* gpuwire's own view of the same pages */
    uint8_t *state;      /* one byte a page */
    size_t ndirty;
    int host_attached;   /* managed: attached to the host or a stream (cuStreamAttachMemAsync), not global */
    uint64_t next_fetch; /* where a run of fetches would go on; its window */
    size_t window;
    int server;          /* several servers: the one whose worker holds the copy (the context's at mapping) */
} mrange;

/* Readers in the signal handler look ranges up without a lock: slots are
 * published with release stores and emptied before a range is torn down. */
static mrange *_Atomic slots[MAX_RANGES];
static atomic_int nlive;
static atomic_size_t total_dirty;
static atomic_flag busy = ATOMIC_FLAG_INIT; /* every page-state change; async-signal-safe */
static unsigned long long epoch, invalidated_at; /* requests sent; as of the last invalidation */
static __thread int inside;                      /* this thread is in the code below: no hook */
static struct sigaction previous;
static atomic_int kernels_may_run; /* a launch left since the last synchronize's reply */
static int managed_races;          /* GPUWIRE_MANAGED_CONCURRENT=1, read at install */
static unsigned managed_wait_s = 30; /* GPUWIRE_MANAGED_WAIT_S, read at install */
static timer_t wait_timer;           /* ends a managed touch's wait that ran too long */
static int wait_timer_ok;
static int installed, atfork_set; /* under install_lock */
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

static void lock(void)
{
    while (atomic_flag_test_and_set_explicit(&busy, memory_order_acquire))
        sched_yield();
}
static void unlock(void) { atomic_flag_clear_explicit(&busy, memory_order_release); }

static mrange *find(uint64_t addr)
{
    for (int i = 0; i < MAX_RANGES; i++) {
        mrange *r = atomic_load_explicit(&slots[i], memory_order_acquire);
        if (r && addr - r->base < r->size)
            return r;
    }
    return NULL;
}

static void protect(mrange *r, size_t first, size_t n, int prot)
{
    mprotect((void *)(uintptr_t)(r->base + first * PAGE), n * PAGE, prot);
}

/* ---- talking to the worker (never with a wire lock held: see the hooks) ---- */

static CUresult write_back_run(mrange *r, size_t first, size_t n)
{
    size_t per = (GW_COPY_CHUNK - 64) / PAGE; /* pages a frame */
    for (size_t done = 0; done < n;) {
        size_t k = n - done < per ? n - done : per;
        gw_req *q = gw_req_begin_quiet(GW_OP_MAPPED_WRITE);
        gw_req_route(q, r->server);
        gw_put_fields(q, gw_mapped_write_req, {.addr = r->base + (first + done) * PAGE});
        gw_put_raw(q, r->alias + (first + done) * PAGE, k * PAGE);
        CUresult rc = gw_req_post(q);
        if (rc != CUDA_SUCCESS)
            return rc;
        done += k;
    }
    return CUDA_SUCCESS;
}

/* Dirty pages of r to the worker; they turn valid (read-only) first, so a
 * write racing the copy faults and makes its page dirty again. Lock held. */
static CUresult write_back(mrange *r)
{
    CUresult rc = CUDA_SUCCESS;
    size_t pages = r->size / PAGE;
    for (size_t i = 0; i < pages && r->ndirty;) {
        if (r->state[i] != DIRTY) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < pages && r->state[j] == DIRTY)
            j++;
        protect(r, i, j - i, PROT_READ);
        memset(r->state + i, VALID, j - i);
        r->ndirty -= j - i;
        atomic_fetch_sub(&total_dirty, j - i);
        if (rc == CUDA_SUCCESS)
            rc = write_back_run(r, i, j - i);
        i = j;
    }
    return rc;
}

/* Stale pages from page `first` on (as many as the window), fetched into
 * the private view, then readable. Lock held. */
static CUresult fetch(mrange *r, size_t first)
{
    size_t pages = r->size / PAGE;
    uint64_t at = r->base + first * PAGE;
    r->window = at == r->next_fetch && r->window ? r->window * 2 : FETCH_FIRST;
    if (r->window > GW_COPY_CHUNK)
        r->window = GW_COPY_CHUNK;
    size_t n = 0;
    while (first + n < pages && r->state[first + n] == STALE && (n + 1) * PAGE <= r->window)
        n++;
    gw_req *q = gw_req_begin_quiet(GW_OP_MAPPED_READ);
    gw_req_route(q, r->server);
    gw_put_fields(q, gw_mapped_read_req, {.addr = at, .n = n * PAGE});
    gw_rep *rep;
    CUresult rc = gw_req_call(q, &rep);
    if (rc == CUDA_SUCCESS && gw_get_bytes(rep, r->alias + first * PAGE, n * PAGE))
        rc = CUDA_ERROR_UNKNOWN;
    gw_rep_end(rep);
    if (rc != CUDA_SUCCESS)
        return rc;
    memset(r->state + first, VALID, n);
    protect(r, first, n, PROT_READ);
    r->next_fetch = at + n * PAGE;
    return CUDA_SUCCESS;
}

/* A valid page the host writes (or gpuwire is about to): writable, to be written back. Lock held. */
static void make_dirty(mrange *r, size_t pg)
{
    r->state[pg] = DIRTY;
    r->ndirty++;
    atomic_fetch_add(&total_dirty, 1);
    protect(r, pg, 1, PROT_READ | PROT_WRITE);
}

/* ---- the fault handler ---- */

static void chain(int sig, siginfo_t *si, void *uc)
{
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, si, uc);
        return;
    }
    if (previous.sa_handler == SIG_IGN || previous.sa_handler == SIG_DFL) {
        /* not ours: the fault happens again with the default action */
        signal(sig, SIG_DFL);
        return;
    }
    previous.sa_handler(sig);
}

static void invalidate_all(void);

static void managed_fault_message(int waited)
{
    static const char m[] = "gpuwire: the host touched managed memory while a kernel may be running; this device "
                            "reports CONCURRENT_MANAGED_ACCESS 0, where that is a fault: synchronize first, or "
                            "attach the memory to the host or a stream (docs/host-memory.md)\n";
    static const char w[] = "gpuwire: the host touched managed memory while a kernel was running, and the device's "
                            "work did not end within GPUWIRE_MANAGED_WAIT_S seconds; this device reports "
                            "CONCURRENT_MANAGED_ACCESS 0, where that is a fault: synchronize first, or attach the "
                            "memory to the host or a stream (docs/host-memory.md)\n";
    ssize_t n = waited ? write(2, w, sizeof w - 1) : write(2, m, sizeof m - 1);
    (void)n;
}

/* The wait ran past its time: the process ends as the touch would have ended it. */
static void wait_expired(union sigval v)
{
    (void)v;
    managed_fault_message(1);
    signal(SIGSEGV, SIG_DFL);
    kill(getpid(), SIGSEGV);
}

/* Waits (a context synchronize) for the kernels a managed touch came during;
 * then every page turns stale, as after any synchronize's reply (the hooks
 * stand aside inside the handler). 0: the touch is a fault (no waiting
 * allowed), reported. Lock held. */
static int wait_for_kernels(void)
{
    if (!managed_wait_s || !wait_timer_ok) {
        managed_fault_message(0);
        return 0;
    }
    struct itimerspec arm = {.it_value = {.tv_sec = managed_wait_s}}, off = {0};
    timer_settime(wait_timer, 0, &arm, NULL);
    int pushed = gw_wire_tls_push() == 0; /* the fault can come while this thread built a request */
    (void)gwf_cuCtxSynchronize(); /* a failure (a sticky error) ends the kernels too */
    if (pushed)
        gw_wire_tls_pop();
    timer_settime(wait_timer, 0, &off, NULL);
    atomic_store(&kernels_may_run, 0);
    invalidated_at = __atomic_load_n(&epoch, __ATOMIC_RELAXED);
    invalidate_all();
    return 1;
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    uint64_t addr = (uint64_t)(uintptr_t)si->si_addr;
    mrange *r = find(addr);
    if (!r) {
        chain(sig, si, uc);
        errno = saved;
        return;
    }
    inside++;
    lock();
    size_t pg = (addr - r->base) / PAGE;
    if (r->kind == GW_MAPPED_MANAGED && !r->host_attached && !managed_races &&
        atomic_load(&kernels_may_run) && r->state[pg] != DIRTY && !wait_for_kernels()) {
        signal(SIGSEGV, SIG_DFL); /* the access faults again, now for good */
        unlock();
        inside--;
        errno = saved;
        return;
    }
    if (r->state[pg] == STALE) {
        /* the fault can come while this thread was reading a reply: set it aside */
        int pushed = gw_wire_tls_push() == 0;
        CUresult rc = fetch(r, pg);
        if (pushed)
            gw_wire_tls_pop();
        if (rc != CUDA_SUCCESS) {
            static const char m[] = "gpuwire: mapped host memory: its bytes could not be fetched from the server; "
                                    "the program cannot go on\n";
            ssize_t w = write(2, m, sizeof m - 1);
            (void)w;
            signal(SIGSEGV, SIG_DFL);
            protect(r, pg, 1, PROT_NONE);
        }
    } else if (r->state[pg] == VALID) { /* a write: the page turns dirty */
        make_dirty(r, pg);
    } /* DIRTY: another thread made it writable meanwhile */
    unlock();
    inside--;
    errno = saved;
}

/* ---- coherence at calls ---- */

static int ours(unsigned op)
{
    return op == GW_OP_MAPPED_MAP || op == GW_OP_MAPPED_UNMAP || op == GW_OP_MAPPED_WRITE ||
           op == GW_OP_MAPPED_READ;
}

static void write_back_all(void)
{
    for (int i = 0; i < MAX_RANGES && atomic_load(&total_dirty); i++) {
        mrange *r = atomic_load(&slots[i]);
        if (r && r->ndirty)
            write_back(r);
    }
}

void gw_mapped_flush(void)
{
    if (!atomic_load(&nlive) || inside || !atomic_load(&total_dirty))
        return;
    inside++;
    lock();
    write_back_all();
    unlock();
    inside--;
}

static void before_request(unsigned op)
{
    if (inside || ours(op))
        return;
    if (gw_op_is_launch(op))
        atomic_store(&kernels_may_run, 1);
    __atomic_add_fetch(&epoch, 1, __ATOMIC_RELAXED);
    gw_mapped_flush();
}

/* Every page turns stale: the device may have written any of them. */
static void invalidate_all(void)
{
    for (int i = 0; i < MAX_RANGES; i++) {
        mrange *r = atomic_load(&slots[i]);
        if (!r)
            continue;
        if (r->ndirty)
            write_back(r);
        protect(r, 0, r->size / PAGE, PROT_NONE);
        memset(r->state, STALE, r->size / PAGE);
        r->next_fetch = 0;
    }
}

/* A reply after which the kernels launched so far may have ended: any
 * synchronize (a stream's or an event's too) and any synchronous copy, which
 * natively follows the legacy stream's work. Other streams' kernels go
 * unseen: the check errs towards letting a program go on. */
static int ends_kernels(unsigned op)
{
    if (gw_op_is_sync(op))
        return 1;
    const char *n = gw_op_name(op);
    return !strncmp(n, "cuMemcpy", 8) && !strstr(n, "Async");
}

static void after_reply(unsigned op)
{
    if (ends_kernels(op))
        atomic_store(&kernels_may_run, 0);
    unsigned long long now = __atomic_load_n(&epoch, __ATOMIC_RELAXED);
    if (inside || ours(op) || now == invalidated_at)
        return;
    inside++;
    lock();
    invalidated_at = now;
    invalidate_all();
    unlock();
    inside--;
}

static const gw_call_hooks hooks = {before_request, after_reply};

/* A forked child starts its own session, where none of these ranges exist:
 * it forgets them (allocations are not in the child at all; registered pages
 * stay the program's memory, readable and writable again, with the bytes the
 * parent's mirror held), and its faults go where they went before gpuwire. */
static void forget_in_child(void)
{
    for (int i = 0; i < MAX_RANGES; i++) {
        mrange *r = atomic_load(&slots[i]);
        if (r && r->kind == GW_MAPPED_REGISTER)
            mprotect((void *)(uintptr_t)r->base, r->size, PROT_READ | PROT_WRITE);
        atomic_store(&slots[i], NULL); /* the records themselves are left: the child's copy of the heap */
    }
    atomic_store(&nlive, 0);
    atomic_store(&total_dirty, 0);
    wait_timer_ok = 0; /* timers are not inherited */
    atomic_flag_clear(&busy);
    gw_set_call_hooks(NULL);
    sigaction(SIGSEGV, &previous, NULL);
    pthread_mutex_init(&install_lock, NULL);
    installed = 0; /* a range the child makes installs all again */
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous);
    unsigned long long v = 0;
    managed_races = gw_env_int("GPUWIRE_MANAGED_CONCURRENT", 0, 1, "host touches of managed memory during kernels fault",
                               &v) == 1 && v;
    if (gw_env_int("GPUWIRE_MANAGED_WAIT_S", 0, 86400, "a managed touch during kernels waits 30 s", &v) == 1)
        managed_wait_s = (unsigned)v;
    if (!wait_timer_ok) {
        struct sigevent ev = {.sigev_notify = SIGEV_THREAD, .sigev_notify_function = wait_expired};
        wait_timer_ok = timer_create(CLOCK_MONOTONIC, &ev, &wait_timer) == 0;
    }
    gw_set_call_hooks(&hooks);
    if (!atfork_set)
        atfork_set = pthread_atfork(NULL, NULL, forget_in_child) == 0;
    if (gw_debug())
        gw_log("mapped host memory: page protection with a SIGSEGV handler tracks the mirror");
}


/* ---- ranges ---- */

static void drop_views(mrange *r)
{
    if (r->alias)
        munmap(r->alias, r->size);
    free(r->state);
    free(r);
}

/* A mirror at addr: the memfd's pages shared by the application's view
 * there (fixed: replace says whether it may cover what is there, i.e. the
 * program's own registered pages) and gpuwire's view. NULL if addr is taken. */
static mrange *mirror(uint64_t addr, uint64_t size, int replace, const void *keep)
{
    mrange *r = calloc(1, sizeof *r);
    int fd = memfd_create("gpuwire-mapped", MFD_CLOEXEC);
    if (!r || fd < 0 || ftruncate(fd, (off_t)size)) {
        if (fd >= 0)
            close(fd);
        free(r);
        return NULL;
    }
    r->base = addr;
    r->size = size;
    r->state = calloc(size / PAGE, 1);
    r->alias = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (!r->state || r->alias == MAP_FAILED) {
        r->alias = r->alias == MAP_FAILED ? NULL : r->alias;
        close(fd);
        drop_views(r);
        return NULL;
    }
    if (keep)
        memcpy(r->alias, keep, size); /* the program's bytes, before its pages are replaced */
    void *want = (void *)(uintptr_t)addr;
    void *p = mmap(want, size, keep ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED | (replace ? MAP_FIXED : MAP_FIXED_NOREPLACE),
                   fd, 0);
    close(fd);
    if (p != want) {
        if (p != MAP_FAILED)
            munmap(p, size);
        drop_views(r);
        return NULL;
    }
    madvise(r->alias, size, MADV_DONTFORK);
    /* a forked child has none of an allocation, as with the driver's
     * page-locked memory; registered pages are the program's own (its heap) */
    if (!keep)
        madvise(want, size, MADV_DONTFORK);
    if (keep) {
        memset(r->state, DIRTY, size / PAGE); /* the worker's copy is fresh: all of it goes */
        r->ndirty = size / PAGE;
    }
    return r;
}

static int publish(mrange *r)
{
    pthread_mutex_lock(&install_lock);
    if (!installed) {
        install();
        installed = 1;
    }
    pthread_mutex_unlock(&install_lock);
    for (int i = 0; i < MAX_RANGES; i++) {
        mrange *expect = NULL;
        if (atomic_compare_exchange_strong(&slots[i], &expect, r)) {
            atomic_fetch_add(&nlive, 1);
            atomic_fetch_add(&total_dirty, r->ndirty);
            return 0;
        }
    }
    return -1;
}

/* server: several servers, the current context's (its worker maps the range for that context) */
static CUresult worker_map(int server, unsigned kind, unsigned flags, uint64_t addr, uint64_t size, uint64_t *got)
{
    gw_req *q = gw_req_begin_quiet(GW_OP_MAPPED_MAP);
    gw_req_route(q, server);
    gw_put_fields(q, gw_mapped_map_req, {.kind = kind, .flags = flags, .addr = addr, .size = size});
    gw_rep *rep;
    CUresult rc = gw_req_call(q, &rep);
    if (rc == CUDA_SUCCESS && gw_get_bytes(rep, got, sizeof *got))
        rc = CUDA_ERROR_UNKNOWN;
    gw_rep_end(rep);
    return rc;
}

static void worker_unmap(int server, uint64_t addr)
{
    gw_req *q = gw_req_begin_quiet(GW_OP_MAPPED_UNMAP);
    gw_req_route(q, server);
    gw_put_fields(q, gw_mapped_unmap_req, {.addr = addr});
    gw_rep *rep;
    gw_req_call(q, &rep);
    gw_rep_end(rep);
}

static uint64_t round_up(uint64_t n) { return (n + PAGE - 1) / PAGE * PAGE; }

/* A page-locked allocation whose address the client chooses: the worker's
 * own choices (small allocations come from one pool of the driver's) can all
 * fall where this process already has memory, as in a PyTorch process that
 * asks cuDNN for 4 mapped bytes. Fresh pages of this process, which the
 * worker maps at the same address and registers (as a registration: kind 2);
 * an address the worker has taken is kept aside while another is tried. */
static CUresult alloc_at_own_address(int server, unsigned flags, uint64_t size, uint64_t *out)
{
    void *aside[4];
    int naside = 0;
    CUresult rc = CUDA_ERROR_OUT_OF_MEMORY;
    for (int tries = 0; tries < 4; tries++) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            break;
        uint64_t addr = (uint64_t)(uintptr_t)p, got = 0;
        /* cuMemHostRegister's flags: PORTABLE and DEVICEMAP mean the same (WRITECOMBINED does not exist there) */
        rc = worker_map(server, GW_MAPPED_REGISTER, flags & (CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP),
                        addr, size, &got);
        if (rc == CUDA_ERROR_NOT_SUPPORTED) { /* taken in the worker */
            aside[naside++] = p;
            rc = CUDA_ERROR_OUT_OF_MEMORY;
            continue;
        }
        mrange *r = rc == CUDA_SUCCESS ? mirror(addr, size, 1, NULL) : NULL;
        if (rc == CUDA_SUCCESS && r) {
            r->kind = GW_MAPPED_HOST_ALLOC; /* freed by cuMemFreeHost, its pages go */
            r->flags = flags;
            r->server = server;
            if (publish(r) == 0) {
                *out = addr;
                break;
            }
            drop_views(r);
        }
        if (rc == CUDA_SUCCESS)
            worker_unmap(server, addr);
        munmap(p, size);
        rc = rc == CUDA_SUCCESS ? CUDA_ERROR_OUT_OF_MEMORY : rc;
        break;
    }
    for (int i = 0; i < naside; i++)
        munmap(aside[i], size);
    if (rc == CUDA_SUCCESS && gw_debug())
        gw_log("mapped host memory: %llu bytes at an address of this process's choosing",
               (unsigned long long)size);
    return rc;
}

CUresult gw_mapped_alloc(unsigned kind, unsigned flags, size_t bytes, uint64_t *out)
{
    if (!gw_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!bytes)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t size = round_up(bytes), taken[4];
    int ntaken = 0, server = gw_route_now();
    CUresult rc = CUDA_ERROR_OUT_OF_MEMORY;
    static int own = -1; /* GPUWIRE_MAPPED_OWN_ADDRESS=1: always the client's choice (tests) */
    if (own < 0) {
        unsigned long long v = 0;
        own = gw_env_int("GPUWIRE_MAPPED_OWN_ADDRESS", 0, 1, "the worker chooses", &v) == 1 && v;
    }
    if (own && kind == GW_MAPPED_HOST_ALLOC)
        return alloc_at_own_address(server, flags, size, out);
    /* the worker chooses the address; one this process already uses is kept
     * aside (so the worker cannot give it again) and freed after */
    for (int tries = 0; tries < 4; tries++) {
        uint64_t addr = 0;
        rc = worker_map(server, kind, flags, 0, size, &addr);
        if (rc != CUDA_SUCCESS)
            break;
        mrange *r = mirror(addr, size, 0, NULL);
        if (r) {
            r->kind = kind;
            r->flags = flags;
            r->host_attached = kind == GW_MAPPED_MANAGED && (flags & CU_MEM_ATTACH_HOST);
            r->server = server;
            if (publish(r) == 0) {
                *out = addr;
                break;
            }
            munmap((void *)(uintptr_t)addr, size);
            drop_views(r);
            worker_unmap(server, addr);
            rc = CUDA_ERROR_OUT_OF_MEMORY;
            break;
        }
        taken[ntaken++] = addr;
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    }
    for (int i = 0; i < ntaken; i++)
        worker_unmap(server, taken[i]);
    if (rc == CUDA_ERROR_OUT_OF_MEMORY && ntaken == 4 && kind == GW_MAPPED_HOST_ALLOC)
        rc = alloc_at_own_address(server, flags, size, out);
    if (rc == CUDA_ERROR_OUT_OF_MEMORY && ntaken)
        gw_log("mapped host memory: %zu bytes: the addresses the server offered are taken in this process", bytes);
    return rc;
}

CUresult gw_mapped_register(void *p, size_t bytes, unsigned flags, uint64_t *base_out)
{
    uint64_t base = (uint64_t)(uintptr_t)p / PAGE * PAGE;
    uint64_t size = round_up((uint64_t)(uintptr_t)p + bytes - base);
    for (uint64_t a = base; a < base + size; a += PAGE)
        if (find(a))
            return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
    uint64_t got = 0;
    int server = gw_route_now();
    CUresult rc = worker_map(server, GW_MAPPED_REGISTER, flags, base, size, &got);
    if (rc != CUDA_SUCCESS)
        return rc;
    mrange *r = mirror(base, size, 1, (const void *)(uintptr_t)base);
    if (!r) {
        worker_unmap(server, base);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    r->kind = GW_MAPPED_REGISTER;
    r->flags = flags;
    r->server = server;
    if (publish(r)) {
        worker_unmap(server, base);
        drop_views(r); /* the pages stay mapped from the memfd: the program's bytes are there */
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *base_out = base;
    return CUDA_SUCCESS;
}

/* The range that starts at addr taken out of use: the worker frees its copy.
 * A registration leaves the program its pages, as they are now (made
 * current first); an allocation's pages go. */
CUresult gw_mapped_release(uint64_t addr, unsigned kind)
{
    mrange *r = NULL;
    int slot = -1;
    for (int i = 0; i < MAX_RANGES && slot < 0; i++) {
        mrange *c = atomic_load(&slots[i]);
        if (c && c->base == addr && c->kind == kind)
            r = c, slot = i;
    }
    if (!r)
        return CUDA_ERROR_INVALID_VALUE;
    inside++;
    lock();
    if (kind == GW_MAPPED_REGISTER) { /* the program keeps current bytes */
        size_t pages = r->size / PAGE;
        for (size_t i = 0; i < pages; i++)
            if (r->state[i] == STALE && fetch(r, i) != CUDA_SUCCESS)
                break;
        protect(r, 0, pages, PROT_READ | PROT_WRITE);
    }
    atomic_fetch_sub(&total_dirty, r->ndirty);
    atomic_store(&slots[slot], NULL);
    atomic_fetch_sub(&nlive, 1);
    unlock();
    inside--;
    worker_unmap(r->server, addr);
    if (kind != GW_MAPPED_REGISTER)
        munmap((void *)(uintptr_t)addr, r->size);
    drop_views(r);
    return CUDA_SUCCESS;
}

int gw_mapped_lookup(uint64_t addr, uint64_t n, uint64_t *base, unsigned *kind, unsigned *flags)
{
    if (!atomic_load(&nlive))
        return 0;
    mrange *r = find(addr);
    if (!r || n > r->size - (addr - r->base))
        return 0;
    if (base)
        *base = r->base;
    if (kind)
        *kind = r->kind;
    if (flags)
        *flags = r->flags;
    return 1;
}

int gw_mapped_live(void) { return atomic_load(&nlive) > 0; }

int gw_mapped_overlaps(uint64_t addr, uint64_t n)
{
    if (!atomic_load(&nlive) || !n)
        return 0;
    for (uint64_t a = addr / PAGE * PAGE; a < addr + n; a += PAGE)
        if (find(a))
            return 1;
    return 0;
}

/* fn on every page of [addr, addr+n) that lies in a range, under the lock. */
static void each_page(uint64_t addr, uint64_t n, void (*fn)(mrange *r, size_t pg, int arg), int arg)
{
    if (!gw_mapped_overlaps(addr, n))
        return;
    inside++;
    lock();
    for (uint64_t a = addr / PAGE * PAGE; a < addr + n; a += PAGE) {
        mrange *r = find(a);
        if (r)
            fn(r, (a - r->base) / PAGE, arg);
    }
    unlock();
    inside--;
}

static void make_current(mrange *r, size_t pg, int for_write)
{
    if (r->state[pg] == STALE && fetch(r, pg) != CUDA_SUCCESS)
        return;
    if (for_write && r->state[pg] == VALID)
        make_dirty(r, pg);
}

/* Bytes gpuwire itself is about to read (for_write 0) or write (1) in the
 * application's view: stale pages fetched now, outside any wire lock, and
 * pages to be written made dirty, so no fault happens inside gpuwire. */
void gw_mapped_prepare(uint64_t addr, uint64_t n, int for_write) { each_page(addr, n, make_current, for_write); }

static void make_stale(mrange *r, size_t pg, int unused)
{
    (void)unused;
    if (r->state[pg] == DIRTY) { /* written by the host while the copy was on its way: a race, the copy wins */
        r->ndirty--;
        atomic_fetch_sub(&total_dirty, 1);
    }
    r->state[pg] = STALE;
    protect(r, pg, 1, PROT_NONE);
}

/* After a copy the client posted into mapped memory (no round trip follows
 * it): its pages turn stale, to be fetched after the copy on first touch. */
void gw_mapped_written_remotely(uint64_t addr, uint64_t n) { each_page(addr, n, make_stale, 0); }

/* cuStreamAttachMemAsync: memory attached to the host or one stream may be
 * touched by the host while other work runs; attached globally, not. */
void gw_mapped_set_attach(uint64_t addr, unsigned flags)
{
    mrange *r = find(addr);
    if (r && r->kind == GW_MAPPED_MANAGED)
        r->host_attached = !(flags & CU_MEM_ATTACH_GLOBAL);
}
