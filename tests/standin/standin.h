/* TEST DOUBLE: gpuwire's CPU stand-in for the CUDA driver (libgpuwire_standin.so).
 * Internal header shared by the stand-in's sources. The worker dlopen()s the library and
 * calls it by the real driver's symbol names; only what is implemented is exported
 * (built with -fvisibility=hidden, SD_API marks the exports).
 *
 * Model: one fake device, or GPUWIRE_STANDIN_DEVICES of them (device.c); device memory is
 * host memory and device pointers are host
 * addresses; streams run their work at once, in order; one global (recursive) lock makes
 * every entry point thread-safe; the current context is kept per thread, as the driver does.
 * Every device address and handle that arrives is checked against live-object tables, because
 * in gpuwire it came from the network. */
#ifndef GW_STANDIN_H
#define GW_STANDIN_H

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#define SD_API __attribute__((visibility("default")))

#define SD_DEVICE_NAME "gpuwire CPU stand-in"
#define SD_TOTAL_MEM ((size_t)8 << 30) /* device 0's; others have less (device.c) */
#define SD_MAX_DEVICES 16
#define SD_MAX_PEERS 8      /* peer contexts one context may enable, as on NVLink systems */
#define SD_DRIVER_VERSION 13000
#define SD_ALLOC_ALIGN 512u     /* cuMemAlloc alignment the real driver guarantees (and more) */
#define SD_PITCH_ALIGN 512u     /* CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT-sized pitch steps */
#define SD_MAX_THREADS 1024u
#define SD_SM_COUNT 132 /* an H100 SXM */
#define SD_SHMEM_DEFAULT 49152u /* dynamic shared memory allowed without opting in */
#define SD_SHMEM_OPTIN 232448u  /* per-block opt-in maximum on cc 9.0 */
#define SD_MAX_PARAMS 16
#define SD_PARAM_BUF 4096u      /* largest parameter buffer a registered kernel needs */

/* ---- locking (core.c) ---- */
void sd_lock(void);
void sd_unlock(void);
int sd_initialized(void);

/* ---- live-object tables (core.c) ---- */
enum sd_kind { SD_CTX = 1, SD_STREAM, SD_EVENT, SD_MODULE, SD_LIBRARY, SD_FUNC, SD_KERNEL, SD_GRAPH,
               SD_GRAPH_NODE, SD_GRAPH_EXEC, SD_POOL, SD_LINK, SD_GREEN, SD_RESDESC, SD_ARRAY, SD_TEXOBJ,
               SD_SURFOBJ, SD_MIPMAP, SD_COND, SD_VMEM };
/* Every object starts with this header; handles are pointers to such objects. */
typedef struct sd_obj {
    int kind;
} sd_obj;
int sd_obj_add(void *obj);              /* 0 on success, -1 out of memory */
void sd_obj_del(void *obj);
int sd_obj_live(const void *h, int kind); /* is h a live object of this kind? */
/* Calls fn on every live object of a kind (deletion of the visited object is allowed). */
void sd_obj_each(int kind, void (*fn)(void *obj, void *arg), void *arg);
unsigned long long sd_next_id(void);

/* ---- devices (device.c) ---- */
void sd_devices_setup(void);     /* cuInit: the device count, CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER */
int sd_dev_count(void);          /* visible devices */
int sd_dev_phys(CUdevice dev);   /* the physical device (PCI order) behind a visible ordinal */
size_t sd_dev_total_mem(CUdevice dev);
void sd_phys_uuid(int phys, unsigned char out[16]);

/* ---- contexts (context.c) ---- */
typedef struct sd_ctx {
    sd_obj h;
    CUdevice dev;
    unsigned int flags;
    int primary;            /* the device's primary context */
    int retained;           /* primary: retain count (active while > 0) */
    CUresult sticky;        /* a fault that ends the context (CUDA_ERROR_ILLEGAL_ADDRESS) */
    unsigned long long id;
    size_t limits[16];      /* indexed by CUlimit (< CU_LIMIT_MAX) */
    double busy_until;      /* monotonic seconds: booked by gw_sleep launches (launch.c) */
    int sm_count;           /* execution affinity: the SMs it may use */
    void *green;            /* the green context this one stands for (green.c), or NULL */
    struct sd_ctx *peers[SD_MAX_PEERS]; /* contexts whose memory this one's kernels may reach (peer.c) */
    int npeers;
} sd_ctx;
/* The calling thread's current context, checked: live, active, not faulted. Lock held. */
CUresult sd_cur(sd_ctx **out);
/* Same, but a faulted context is still returned (for calls that work after a fault). */
CUresult sd_cur_any(sd_ctx **out);
CUresult sd_check_dev(CUdevice dev);
void sd_ctx_fault(sd_ctx *c, CUresult err);
/* Takes c off the calling thread's context stack, wherever it is. Lock held. */
void sd_ctx_forget_current(sd_ctx *c);
sd_ctx *sd_primary(void); /* device 0's primary context (NULL: out of memory). Lock held. */
sd_ctx *sd_primary_of(CUdevice dev); /* a (checked) device's primary context. Lock held. */
/* Drops every peer mapping to or from c (it is being torn down). Lock held. (peer.c) */
void sd_peer_forget(sd_ctx *c);
/* May kernels of context c reach memory of allocation owner: its own device's, or a peer
 * context's it enabled? Lock held. (peer.c) */
int sd_peer_reaches(const sd_ctx *c, const sd_ctx *owner);
/* Waits out the context's booked GPU time, the lock let go meanwhile (lock held on entry and exit). */
void sd_wait_busy(sd_ctx *c);

/* ---- device memory (memory.c) ---- */
typedef struct sd_alloc {
    uintptr_t base;
    size_t size;      /* bytes asked for: the valid range */
    size_t mapped;    /* bytes mapped (rounded up) */
    sd_ctx *ctx;
    unsigned long long id;
    unsigned char ipc;  /* 1: exported (shared memory of its own, memory.c), 2: opened from another process,
                           3: imported from another process's pool (mempool.c: freed like its own) */
    void *pool;         /* the memory pool of a stream-ordered allocation (mempool.c), or NULL */
    uint64_t pool_off;  /* where its bytes lie in an exportable pool's memfd */
} sd_alloc;
/* The allocation holding [addr, addr+len), or NULL. len 0 asks for addr itself. Lock held. */
const sd_alloc *sd_find(uintptr_t addr, size_t len);
/* Host address for a checked device range, or NULL. */
void *sd_dev_range(CUdeviceptr addr, size_t len);
/* [a, a+len) inside page-locked memory mapped for the device (hostmem.c), or NULL. Lock held. */
void *sd_host_mapped_range(uintptr_t a, size_t len);
void sd_free_ctx_allocs(sd_ctx *c);
size_t sd_mem_used(CUdevice dev); /* bytes mapped on a device */
/* A fresh allocation of size bytes in context c, as cuMemAlloc's, belonging to pool. Lock held. */
CUresult sd_mem_alloc(sd_ctx *c, size_t size, void *pool, uintptr_t *out);
/* A shared mapping [p, p + mapped) already made (an exportable pool's memfd at off) taken as
 * an allocation of c, of pool (ipc 0: its own pool's, 3: imported); counted against the device,
 * CUDA_ERROR_OUT_OF_MEMORY (nothing changed) if it does not fit. Lock held. */
CUresult sd_mem_adopt(sd_ctx *c, uintptr_t p, size_t size, size_t mapped, void *pool, uint64_t off, int ipc);
/* What cuMemFree does to an allocation's start; CUDA_ERROR_INVALID_VALUE if it is none. Lock held. */
CUresult sd_mem_free(CUdeviceptr dptr);
/* A pool's allocation is gone (mempool.c): its bytes leave the pool's figures. Lock held. */
void sd_pool_freed(void *pool, size_t mapped, uint64_t off, int imported);
/* n more bytes counted against a device's memory (0: they do not fit), or given back. Lock held. */
int sd_mem_charge(CUdevice dev, size_t n);
void sd_mem_uncharge(CUdevice dev, size_t n);

/* ---- the virtual memory management API (vmm.c) ---- */
/* [a, a+len) inside one cuMemMap mapping that ctx's device may access (ctx NULL: any
 * device, as for a copy), or NULL. Lock held. */
void *sd_vmm_range(uintptr_t a, size_t len, const sd_ctx *ctx);

/* ---- CUDA arrays, texture and surface objects (array.c) ---- */
typedef struct sd_array {
    sd_obj h;
    CUDA_ARRAY3D_DESCRIPTOR d;
    unsigned char *data;
    size_t pitch, rows, slices; /* bytes a row; rows and slices, each at least 1 */
} sd_array;
/* The first byte of a box of w bytes, hgt rows, dep slices at (x bytes, y, z) of array h,
 * checked to lie inside it, with the array's row pitch and rows a slice. Lock held. */
CUresult sd_array_box(CUarray h, size_t x, size_t y, size_t z, size_t w, size_t hgt, size_t dep,
                      unsigned char **base, size_t *pitch, size_t *height);

/* ---- streams and events (stream_event.c) ---- */
typedef struct sd_stream {
    sd_obj h;
    sd_ctx *ctx;
    unsigned int flags;
    int priority;
    unsigned long long id;
    void *capture;          /* the graph a capture under way records into (capture.c), or NULL */
    unsigned long long capture_id;
} sd_stream;
/* Checks a stream handle (0, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD or a live stream) and the
 * current context; returns the context work on that stream belongs to. Lock held. */
CUresult sd_stream_check(CUstream s, sd_ctx **ctx);
/* The device of an fd a stand-in exported, its memfd named PREFIX<device> (vmm.c), or -1. */
int sd_memfd_device(int fd, const char *prefix);
void sd_free_ctx_streams_events(sd_ctx *c);
/* A new stream of context c (flags and priority already checked). Lock held. */
CUresult sd_stream_new(sd_ctx *c, unsigned int flags, int priority, CUstream *ph);
/* cuCtxRecordEvent/cuCtxWaitEvent on context c; `also` is a second context whose events
 * may be recorded (a green context's primary), or NULL. Lock held. */
CUresult sd_ctx_event(sd_ctx *c, CUevent h, int record, const sd_ctx *also);

/* ---- graphs built by calls (graph.c) ---- */
/* Frees the nodes of graph g (before g itself goes). Lock held. */
void sd_graph_drop_nodes(void *g);

/* ---- JIT options the driver writes (link.c): logs, their sizes, the wall time ---- */
typedef struct sd_jit_out {
    char *info, *err;                 /* the caller's log buffers (NULL: none) */
    size_t info_cap, err_cap;
    void **info_size, **err_size, **wall; /* the caller's option slots written back (NULL: not given) */
} sd_jit_out;

/* Reads JIT options: CUDA_ERROR_INVALID_VALUE for an option cuda.h does not have. */
CUresult sd_jit_scan(unsigned n, CUjit_option *opts, void **vals, sd_jit_out *o);
/* Appends a line to the info (error = 0) or error log, cut to the buffer. */
void sd_jit_log(const sd_jit_out *o, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Writes back the bytes each log fills (with its NUL) and the wall time, as the driver does. */
void sd_jit_done(const sd_jit_out *o, float ms);

/* ---- modules, functions, kernels (module.c) ---- */
typedef struct sd_param {
    uint16_t offset, size;
} sd_param;

typedef struct sd_kernel_desc sd_kernel_desc;

/* What a host-implemented kernel sees while it runs one thread. */
typedef struct sd_exec {
    const sd_kernel_desc *desc;
    unsigned int grid[3], block[3]; /* gridDim, blockDim */
    unsigned int bid[3], tid[3];    /* blockIdx, threadIdx */
    const unsigned char *params;    /* the packed parameter buffer */
    const struct sd_ctx *ctx;       /* the context it runs in: what memory it may reach (peer.c) */
    int fault;                      /* set by sd_at on a bad address: the launch stops */
} sd_exec;

struct sd_kernel_desc {
    const char *name;               /* mangled, as in the fatbin */
    unsigned int nparams;
    sd_param params[SD_MAX_PARAMS];
    void (*thread)(sd_exec *x);     /* runs one thread of the kernel */
};

typedef struct sd_func {
    sd_obj h;                       /* SD_FUNC or SD_KERNEL */
    const sd_kernel_desc *desc;
    void *owner;                    /* sd_module for a function, sd_library for a kernel */
    int max_dyn_shmem;
    int carveout;
    int non_portable; /* CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED as set */
    int cache_config;
    int resolved; /* a kernel looked up by name (GPUWIRE_STANDIN_LAZY: its parameter info is known only then) */
    int unloaded; /* GPUWIRE_STANDIN_LAZY: first handed out by cuModuleEnumerateFunctions, not yet loaded */
} sd_func;

/* Checks a CUfunction (or a CUkernel passed as one, as cudart does). Lock held. */
sd_func *sd_func_check(CUfunction f);
/* Blocks of f one SM holds at this block size and dynamic shared memory (module.c). */
int sd_blocks_per_sm(const sd_func *f, int block, size_t shmem);
void sd_free_ctx_modules(sd_ctx *c);

/* ---- the kernel registry (registry.c, kernels_*.c) ---- */
const sd_kernel_desc *sd_registry_find(const char *name);
size_t sd_registry_count(void);
const sd_kernel_desc *sd_registry_at(size_t i);
size_t sd_params_size(const sd_kernel_desc *d);

/* Kernel-side helpers (kernels_*.c). */
/* A host pointer for len bytes at device address a, or NULL after marking the fault (also for
 * memory of another device whose context the running one has not enabled peer access to). */
void *sd_at(sd_exec *x, uint64_t a, size_t len);
/* Parameter i of the running kernel, copied out (sizes come from the descriptor). */
void sd_arg(const sd_exec *x, unsigned int i, void *out, size_t len);
static inline unsigned int sd_gx(const sd_exec *x) { return x->bid[0] * x->block[0] + x->tid[0]; }

/* Kernel tables each kernels_*.c file provides. */
extern const sd_kernel_desc sd_kernels_programs[];
extern const size_t sd_kernels_programs_n;
extern const sd_kernel_desc sd_kernels_multi_module[];
extern const size_t sd_kernels_multi_module_n;
extern const sd_kernel_desc sd_kernels_driver_api[];
extern const size_t sd_kernels_driver_api_n;

#endif
