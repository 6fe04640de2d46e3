/* Function and kernel attributes, answered in the client.
 *
 * A function's attributes are fixed once its module is loaded, except where
 * the application sets them, and every set goes through here. So the client
 * keeps, per code (gw_fn_identity: a kernel's handles and its functions'
 * name one code) and device, the values it has learnt: from the worker's
 * module information (small bare cubins: their attributes come with the
 * load), or from an answer the worker gave. A set that changes a value
 * updates the kept value where the driver's rule for it is known (the dynamic
 * shared memory size, the non-portable cluster flag) and otherwise forgets
 * the code's settable values, so the next question goes to the server. A
 * kernel's values and those of the functions taken from it are kept apart
 * (natively a kernel's set shows through its functions but not the reverse;
 * the client does not rely on either): a set through one forgets the other's.
 * Only that code is touched: cuDNN sets a new kernel's attributes once per
 * decoded token, which must not cost every other kernel's answers (issue 3:
 * round trips per token). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/idmap.h"
#include "state.h"

#define NATTR CU_FUNC_ATTRIBUTE_MAX

typedef struct kept {
    uint64_t code;
    int dev;
    int unmodelled;    /* a set whose effect the client cannot tell: only read-only load values apply */
    uint32_t set_mask; /* attributes set to a value the client applied: their load values no longer apply */
    uint32_t known;    /* bit a: v[a] holds the attribute's current value */
    int v[NATTR];
} kept;

static gw_idmap table;  /* mix of (code, device) -> kept */
static gw_idmap shared; /* code -> static shared bytes + 1, read from the cubin (modules.c) */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* The key of a function's values: its code, marked (a kernel's is the code). */
static uint64_t fn_level(uint64_t code) { return code ^ 0xa5a5a5a5a5a5a5a5ull; }

static uint64_t mix(uint64_t code, int dev)
{
    uint64_t k = code * 0x9e3779b97f4a7c15ull ^ (uint32_t)dev;
    return k == 0 || k == UINT64_MAX ? 1 : k; /* the map's reserved keys */
}

/* The entry of (code, dev), made if `make`; call with lock held. A different
 * code mixing alike takes the slot over (it only costs a question). */
static kept *entry(uint64_t code, int dev, int make)
{
    uint64_t k = mix(code, dev);
    kept *e = gw_idmap_get(&table, k);
    if (e && (e->code != code || e->dev != dev)) {
        if (!make)
            return NULL;
        memset(e, 0, sizeof *e);
        e->code = code;
        e->dev = dev;
    }
    if (!e && make) {
        e = calloc(1, sizeof *e);
        if (!e)
            return NULL;
        e->code = code;
        e->dev = dev;
        if (gw_idmap_put(&table, k, e)) {
            free(e);
            return NULL;
        }
    }
    return e;
}

/* Attributes 0 to 7 (thread limit, sizes, registers, versions, cache mode)
 * come from the compiled code: no set changes them (kernel_attrs on the GPU:
 * unchanged by dynamic shared size, cluster flag and carveout sets). */
#define READ_ONLY_ATTRS 0xFFu

/* As loaded, a kernel and its functions read alike. The values may arrive
 * after the application's first sets (the client reads a cubin's kernels
 * itself and does not wait for the load): an attribute set since keeps its
 * set value, and after a set the client could not judge only the read-only
 * ones are taken. Returns 1 if the static shared size differs from the one
 * read from the cubin. */
int gw_attrs_loaded(uint64_t code, int dev, uint32_t mask, const int32_t *vals)
{
    pthread_mutex_lock(&lock);
    for (int level = 0; level < 2; level++) {
        kept *e = entry(level ? fn_level(code) : code, dev, 1);
        if (!e)
            continue;
        uint32_t take = mask & ~e->set_mask & (e->unmodelled ? READ_ONLY_ATTRS : ~0u);
        for (int a = 0; a < NATTR; a++)
            if (take >> a & 1 && !(e->known >> a & 1)) {
                e->v[a] = vals[a];
                e->known |= 1u << a;
            }
    }
    void *hint = gw_idmap_get(&shared, code);
    int differs = hint && mask >> CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES & 1 &&
                  (uint64_t)(uintptr_t)hint - 1 != (uint64_t)(uint32_t)vals[CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES];
    pthread_mutex_unlock(&lock);
    return differs;
}

void gw_attrs_shared_hint(uint64_t code, uint32_t bytes)
{
    pthread_mutex_lock(&lock);
    gw_idmap_put(&shared, code, (void *)(uintptr_t)((uint64_t)bytes + 1));
    gw_idmap_put(&shared, fn_level(code), (void *)(uintptr_t)((uint64_t)bytes + 1));
    pthread_mutex_unlock(&lock);
}

static int known_value(uint64_t code, int dev, int attrib, int *value)
{
    int hit = 0;
    pthread_mutex_lock(&lock);
    kept *e = attrib >= 0 && attrib < NATTR ? entry(code, dev, 0) : NULL;
    if (e && e->known >> attrib & 1) {
        *value = e->v[attrib];
        hit = 1;
    }
    pthread_mutex_unlock(&lock);
    return hit;
}

static void remember_answer(uint64_t code, int dev, int attrib, int value)
{
    pthread_mutex_lock(&lock);
    kept *e = entry(code, dev, 1);
    if (e) {
        e->v[attrib] = value;
        e->known |= 1u << attrib;
    }
    pthread_mutex_unlock(&lock);
}

/* The occupancy answers kept by the transport depend on the attributes. */
static void occupancy_changed(void)
{
    static const unsigned ops[] = {GW_OP_cuOccupancyMaxActiveBlocksPerMultiprocessor,
                                   GW_OP_cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags,
                                   GW_OP_cuOccupancyAvailableDynamicSMemPerBlock, GW_OP_cuOccupancyMaxActiveClusters,
                                   GW_OP_cuOccupancyMaxPotentialClusterSize};
    gw_cache_forget(ops, sizeof ops / sizeof ops[0]);
}

static int compute_major(int dev)
{
    int major = 0;
    return cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev) == CUDA_SUCCESS ? major
                                                                                                          : 0;
}

/* The code's static shared memory size, -1 if unknown; call with lock held. */
static long static_shared(uint64_t code, const kept *e)
{
    if (e && e->known >> CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES & 1)
        return e->v[CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES];
    void *hint = gw_idmap_get(&shared, code);
    return hint ? (long)((uintptr_t)hint - 1) : -1;
}

static int optin_shared(int dev)
{
    const int *lim = dev >= 0 ? gw_device_launch_limits(dev) : NULL;
    return lim ? lim[7] : -1;
}

/* A dynamic shared memory size the driver refuses at once (cuFuncSetAttribute:
 * it and the static size may not pass the opt-in maximum): refused here at
 * once too, as the set itself is posted. */
static int refused(uint64_t code, int dev, int attrib, int value)
{
    if (attrib != CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)
        return 0;
    if (value < 0)
        return 1;
    int optin = optin_shared(dev);
    pthread_mutex_lock(&lock);
    long stat = dev >= 0 ? static_shared(code, entry(code, dev, 0)) : -1;
    pthread_mutex_unlock(&lock);
    return stat >= 0 && optin >= 0 && (long)value + stat > optin;
}

/* A set that changes a value. Where the driver's rule for the attribute is
 * known and the value passes it, the set will succeed and the value is what
 * a get returns; otherwise the code's values are forgotten (asked again). */
static void attribute_set(uint64_t code, uint64_t other_level, int dev, int attrib, int value)
{
    int optin = optin_shared(dev);
    int modelled = 0;
    int major = attrib == CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED ? compute_major(dev) : 0;
    pthread_mutex_lock(&lock);
    kept *e = dev >= 0 ? entry(code, dev, 1) : NULL;
    if (e) {
        if (attrib == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) {
            long stat = static_shared(code, e);
            modelled = value >= 0 && stat >= 0 && optin >= 0 && (long)value + stat <= optin;
        } else if (attrib == CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED) {
            modelled = (value == 0 || value == 1) && major >= 9; /* clusters: compute capability 9.0 on */
        }
        if (modelled) {
            e->v[attrib] = value;
            e->known |= 1u << attrib;
            e->set_mask |= 1u << attrib;
        } else {
            e->unmodelled = 1;
            e->known &= READ_ONLY_ATTRS;
        }
    }
    /* natively a kernel's set shows through its functions, not the reverse
     * (kernel_attrs on the GPU); the client asks rather than relies on it */
    kept *other = dev >= 0 ? entry(other_level, dev, 1) : NULL;
    if (other) {
        other->unmodelled = 1;
        other->known &= READ_ONLY_ATTRS;
    }
    pthread_mutex_unlock(&lock);
    occupancy_changed();
}

/* Libraries set an attribute before every launch (cuBLAS, PyTorch: the dynamic
 * shared memory size), nearly always to the value it already has. Such a set
 * changes nothing. Values are remembered per code, attribute and device. */
typedef struct attr_set {
    uint64_t code;
    int attrib, dev, value;
} attr_set;

static gw_idmap attr_sets; /* mix of (code, attribute, device) -> attr_set */

/* Records the value; 1 if the same code, attribute and device already had it.
 * Two keys that mix alike only cost a needless forgetting. */
static int same_as_before(uint64_t code, int attrib, int dev, int value)
{
    uint64_t key = code * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uint32_t)attrib << 32 ^ (uint32_t)dev;
    if (key == 0 || key == UINT64_MAX)
        key = 1;
    int same = 0;
    pthread_mutex_lock(&lock);
    attr_set *s = gw_idmap_get(&attr_sets, key);
    if (s && s->code == code && s->attrib == attrib && s->dev == dev) {
        same = s->value == value;
        s->value = value;
    } else if (!s && (s = malloc(sizeof *s)) && gw_idmap_put(&attr_sets, key, s)) {
        free(s);
        s = NULL;
    }
    if (s && !same)
        *s = (attr_set){code, attrib, dev, value};
    pthread_mutex_unlock(&lock);
    return same;
}

/* A destroyed or reset context takes its functions' attributes with it: a
 * library's kernels come back with their defaults in the next one. */
void gw_attributes_reset(void)
{
    pthread_mutex_lock(&lock);
    gw_idmap_clear(&attr_sets, free);
    gw_idmap_clear(&table, free);
    pthread_mutex_unlock(&lock);
    occupancy_changed();
}

static CUresult get(unsigned op, int *pi, int attrib, uint64_t handle, int dev, int is_fn,
                    CUresult (*ask)(int *, int, uint64_t, int))
{
    uint64_t code = gw_fn_identity(handle);
    if (is_fn)
        code = fn_level(code);
    int v;
    if (pi && handle && dev >= 0 && known_value(code, dev, attrib, &v)) {
        gw_stat_call(op);
        *pi = v;
        return CUDA_SUCCESS;
    }
    CUresult rc = ask(pi, attrib, handle, dev);
    if (rc == CUDA_SUCCESS && pi && handle && dev >= 0 && attrib >= 0 && attrib < NATTR)
        remember_answer(code, dev, attrib, *pi);
    return rc;
}

static CUresult ask_func(int *pi, int attrib, uint64_t h, int dev)
{
    return gwf_cuFuncGetAttribute(pi, (CUfunction_attribute)attrib, (CUfunction)(uintptr_t)h);
}

static CUresult ask_kernel(int *pi, int attrib, uint64_t h, int dev)
{
    return gwf_cuKernelGetAttribute(pi, (CUfunction_attribute)attrib, (CUkernel)(uintptr_t)h, dev);
}

/* a function belongs to the current context's device */
CUresult CUDAAPI cuFuncGetAttribute(int *pi, CUfunction_attribute attrib, CUfunction hfunc)
{
    return get(GW_OP_cuFuncGetAttribute, pi, attrib, (uint64_t)(uintptr_t)hfunc, gw_current_device(), 1, ask_func);
}

CUresult CUDAAPI cuKernelGetAttribute(int *pi, CUfunction_attribute attrib, CUkernel kernel, CUdevice dev)
{
    return get(GW_OP_cuKernelGetAttribute, pi, attrib, (uint64_t)(uintptr_t)kernel, dev, 0, ask_kernel);
}

CUresult CUDAAPI cuFuncSetAttribute(CUfunction hfunc, CUfunction_attribute attrib, int value)
{
    uint64_t code = gw_fn_identity((uint64_t)(uintptr_t)hfunc);
    int dev = gw_current_device();
    if (refused(fn_level(code), dev, attrib, value)) {
        gw_stat_call(GW_OP_cuFuncSetAttribute);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (!same_as_before(fn_level(code), attrib, dev, value))
        attribute_set(fn_level(code), code, dev, attrib, value);
    return gwf_cuFuncSetAttribute(hfunc, attrib, value);
}

CUresult CUDAAPI cuKernelSetAttribute(CUfunction_attribute attrib, int val, CUkernel kernel, CUdevice dev)
{
    uint64_t code = gw_fn_identity((uint64_t)(uintptr_t)kernel);
    if (refused(code, dev, attrib, val)) {
        gw_stat_call(GW_OP_cuKernelSetAttribute);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (!same_as_before(code, attrib, dev, val))
        attribute_set(code, fn_level(code), dev, attrib, val);
    return gwf_cuKernelSetAttribute(attrib, val, kernel, dev);
}

/* The cache preference changes occupancy, and may change the carveout a get
 * reads: the code's values are asked again. */
static void forget(uint64_t code, int dev)
{
    pthread_mutex_lock(&lock);
    for (int level = 0; level < 2; level++) {
        kept *e = dev >= 0 ? entry(level ? fn_level(code) : code, dev, 1) : NULL;
        if (e) {
            e->unmodelled = 1;
            e->known &= READ_ONLY_ATTRS;
        }
    }
    pthread_mutex_unlock(&lock);
    occupancy_changed();
}

CUresult CUDAAPI cuFuncSetCacheConfig(CUfunction hfunc, CUfunc_cache config)
{
    forget(gw_fn_identity((uint64_t)(uintptr_t)hfunc), gw_current_device());
    return gwf_cuFuncSetCacheConfig(hfunc, config);
}

CUresult CUDAAPI cuKernelSetCacheConfig(CUkernel kernel, CUfunc_cache config, CUdevice dev)
{
    forget(gw_fn_identity((uint64_t)(uintptr_t)kernel), dev);
    return gwf_cuKernelSetCacheConfig(kernel, config, dev);
}
