/* TEST DOUBLE: gpuwire CPU stand-in driver. Modules and libraries accept any image (fatbin,
 * cubin or PTX) and resolve kernels by name from the registry of host implementations of
 * this project's test kernels; a bare cubin (ELF) holds only the registered kernels whose
 * names its string tables carry, as a real one would (other images: every kernel); a fat binary of
 * none of them (a library's own code, cuFFT's) has the kernels and globals it declares (foreign.c),
 * which cannot run here. Also function/kernel attributes, parameter layout and occupancy. */
#define _GNU_SOURCE /* memmem */
#include "standin.h"
#include "foreign.h"

#include <stdlib.h>
#include <string.h>

/* A module (SD_MODULE) or library (SD_LIBRARY): one handle per registered kernel, made on
 * first lookup so the same name always gives the same handle. */
typedef struct sd_image {
    sd_obj h;
    sd_ctx *ctx;          /* module: the context it was loaded in; library: NULL */
    struct sd_image *mod; /* library: its module (for cuLibraryGetModule / cuKernelGetFunction) */
    sd_func **funcs;      /* indexed like the registry */
    unsigned char *holds; /* indexed like the registry: the image has that kernel; NULL: all */
    sd_foreign *foreign;  /* a fat binary of none of the registered kernels: its own (foreign.c) */
    sd_func **ffuncs;     /* indexed like foreign->funcs */
} sd_image;

/* The extent of a 64-bit ELF from its header (its section headers come last), 0 if none. */
static size_t elf_extent(const unsigned char *p)
{
    if (memcmp(p, "\x7f" "ELF", 4) || p[4] != 2)
        return 0;
    uint64_t shoff;
    uint16_t shentsize, shnum;
    memcpy(&shoff, p + 0x28, 8);
    memcpy(&shentsize, p + 0x3A, 2);
    memcpy(&shnum, p + 0x3C, 2);
    return shoff + (size_t)shentsize * shnum;
}

/* Marks in holds the registered kernels a cubin of size bytes holds: their
 * names stand NUL-terminated after a NUL in it (a string table). */
static void mark_held(const unsigned char *image, size_t size, unsigned char *holds)
{
    for (size_t i = 0; i < sd_registry_count(); i++) {
        const char *name = sd_registry_at(i)->name;
        size_t len = strlen(name) + 1;
        const unsigned char *p = image, *end = p + size;
        while (!holds[i] && (p = memmem(p, (size_t)(end - p), name, len)) != NULL) {
            holds[i] = p > image && p[-1] == 0;
            p++;
        }
    }
}

/* A fatbin's cubins (the real driver loads one of them, whose kernels the
 * library then holds): marks what they hold. */
typedef struct held_scan {
    unsigned char *holds;
    int cubins;
} held_scan;

static int mark_elf(int kind, const uint8_t *body, size_t len, void *arg)
{
    held_scan *h = arg;
    if (kind == 2 && elf_extent(body) && elf_extent(body) <= len) {
        mark_held(body, len, h->holds);
        h->cubins++;
    }
    return 0;
}

static int fatbin_held(const void *image, unsigned char *holds)
{
    held_scan h = {holds, 0};
    return sd_fatbin_each(image, mark_elf, &h) == 0 && h.cubins;
}

/* Which registered kernels a bare cubin, or a fatbin's cubins, hold.
 * NULL for any other image (it is taken to hold them all). */
static unsigned char *kernels_held(const void *image)
{
    size_t size = image ? elf_extent(image) : 0;
    size_t n = sd_registry_count();
    unsigned char *holds = image ? calloc(n ? n : 1, 1) : NULL;
    if (holds && size)
        mark_held(image, size, holds);
    else if (holds && !fatbin_held(image, holds)) {
        free(holds);
        holds = NULL;
    }
    return holds;
}

static int image_holds(const sd_image *m, size_t i) { return !m->foreign && (!m->holds || m->holds[i]); }

static sd_image *image_new(int kind, sd_ctx *ctx, const void *image)
{
    sd_image *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->holds = kernels_held(image);
    m->funcs = calloc(sd_registry_count() ? sd_registry_count() : 1, sizeof *m->funcs);
    if (!m->holds && (m->foreign = sd_foreign_parse(image)) != NULL) {
        int known = 0;
        for (size_t i = 0; i < m->foreign->nfuncs; i++)
            known |= sd_registry_find(m->foreign->funcs[i].name) != NULL;
        if (known) { /* the project's own kernels: served as before */
            sd_foreign_free(m->foreign);
            m->foreign = NULL;
        } else {
            m->ffuncs = calloc(m->foreign->nfuncs, sizeof *m->ffuncs);
        }
    }
    if (!m->funcs || (m->foreign && !m->ffuncs) || sd_obj_add(m) != 0) {
        free(m->funcs);
        free(m->ffuncs);
        sd_foreign_free(m->foreign);
        free(m->holds);
        free(m);
        return NULL;
    }
    m->h.kind = kind;
    m->ctx = ctx;
    return m;
}

static void image_free(sd_image *m)
{
    for (size_t i = 0; i < sd_registry_count(); i++) {
        if (m->funcs[i]) {
            sd_obj_del(m->funcs[i]);
            free(m->funcs[i]);
        }
    }
    for (size_t i = 0; m->foreign && i < m->foreign->nfuncs; i++) {
        if (m->ffuncs[i]) {
            sd_obj_del(m->ffuncs[i]);
            free(m->ffuncs[i]);
        }
    }
    /* a library's globals live in the context that asked first and go with it */
    for (size_t i = 0; m->foreign && m->ctx && i < m->foreign->nglobals; i++)
        if (m->foreign->globals[i].addr)
            sd_mem_free(m->foreign->globals[i].addr);
    sd_obj_del(m);
    free(m->funcs);
    free(m->ffuncs);
    sd_foreign_free(m->foreign);
    free(m->holds);
    free(m);
}

/* GPUWIRE_STANDIN_LAZY=1: the lazy driver (below) */
static int lazy(void);

/* The handle for foreign kernel i of image m. */
static sd_func *foreign_func(sd_image *m, size_t i, int kind)
{
    if (!m->ffuncs[i]) {
        sd_func *f = calloc(1, sizeof *f);
        if (!f || sd_obj_add(f) != 0) {
            free(f);
            return NULL;
        }
        f->h.kind = kind;
        f->desc = &m->foreign->funcs[i];
        f->owner = m;
        f->max_dyn_shmem = SD_SHMEM_DEFAULT;
        f->carveout = -1;
        f->unloaded = kind == SD_FUNC && lazy(); /* until looked up by name, loaded or launched */
        m->ffuncs[i] = f;
    }
    return m->ffuncs[i];
}

static long foreign_index(const sd_image *m, const char *name)
{
    for (size_t i = 0; m->foreign && i < m->foreign->nfuncs; i++)
        if (!strcmp(m->foreign->funcs[i].name, name))
            return (long)i;
    return -1;
}

/* The handle for registry entry i in image m (kind SD_FUNC or SD_KERNEL). */
static sd_func *image_func(sd_image *m, size_t i, int kind)
{
    if (!m->funcs[i]) {
        sd_func *f = calloc(1, sizeof *f);
        if (!f || sd_obj_add(f) != 0) {
            free(f);
            return NULL;
        }
        f->h.kind = kind;
        f->desc = sd_registry_at(i);
        f->owner = m;
        f->max_dyn_shmem = SD_SHMEM_DEFAULT;
        f->carveout = -1;
        f->unloaded = kind == SD_FUNC && lazy(); /* until looked up by name, loaded or launched */
        m->funcs[i] = f;
    }
    return m->funcs[i];
}

static size_t held_count(const sd_image *m)
{
    if (m->foreign)
        return m->foreign->nfuncs;
    size_t n = 0;
    for (size_t i = 0; i < sd_registry_count(); i++)
        n += image_holds(m, i);
    return n;
}

static long registry_index(const char *name)
{
    const sd_kernel_desc *d = sd_registry_find(name);
    if (!d)
        return -1;
    for (size_t i = 0; i < sd_registry_count(); i++)
        if (sd_registry_at(i) == d)
            return (long)i;
    return -1;
}

static void drop_module_of(void *obj, void *arg)
{
    sd_image *m = obj;
    if (m->ctx == arg)
        image_free(m);
}

void sd_free_ctx_modules(sd_ctx *c) { sd_obj_each(SD_MODULE, drop_module_of, c); }

sd_func *sd_func_check(CUfunction f)
{
    if (sd_obj_live(f, SD_FUNC) || sd_obj_live(f, SD_KERNEL))
        return (sd_func *)f;
    return NULL;
}

/* ---- modules ---- */

static CUresult module_load(CUmodule *pm, const void *image)
{
    if (!pm || !image)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    sd_image *m = NULL;
    if (r == CUDA_SUCCESS && !(m = image_new(SD_MODULE, c, image)))
        r = CUDA_ERROR_OUT_OF_MEMORY;
    if (r == CUDA_SUCCESS)
        *pm = (CUmodule)m;
    sd_unlock();
    return r;
}

SD_API CUresult cuModuleLoadData(CUmodule *pm, const void *image) { return module_load(pm, image); }
SD_API CUresult cuModuleLoadFatBinary(CUmodule *pm, const void *fatbin) { return module_load(pm, fatbin); }

/* JIT loads compile nothing; an image shaped like PTX (text opening with a
 * comment or a directive) must carry a .version directive, else it is
 * refused with an error log, so the logs can be checked: one info line per
 * load, 1.25 ms of wall time. Other images load as before. */
#define SD_LOAD_WALL_MS 1.25f

static CUresult jit_check(const void *image, const sd_jit_out *o, const char *what)
{
    const unsigned char *p = image;
    int ptx = (p[0] == '/' && p[1] == '/') || (p[0] == '.' && p[1] >= 'a' && p[1] <= 'z');
    CUresult r = CUDA_SUCCESS;
    if (ptx && !strstr(image, ".version")) {
        sd_jit_log(o, 1, "stand-in JIT: %s: PTX without a .version directive\n", what);
        r = CUDA_ERROR_INVALID_PTX;
    } else {
        sd_jit_log(o, 0, "stand-in JIT: %s loaded from %s\n", what, ptx ? "PTX" : "a binary image");
    }
    sd_jit_done(o, SD_LOAD_WALL_MS);
    return r;
}

SD_API CUresult cuModuleLoadDataEx(CUmodule *pm, const void *image, unsigned int n, CUjit_option *opts, void **vals)
{
    if (!pm || !image)
        return CUDA_ERROR_INVALID_VALUE;
    sd_jit_out o;
    CUresult r = sd_jit_scan(n, opts, vals, &o);
    if (r == CUDA_SUCCESS)
        r = jit_check(image, &o, "module");
    return r == CUDA_SUCCESS ? module_load(pm, image) : r;
}

SD_API CUresult cuModuleUnload(CUmodule hm)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur_any(&c);
    if (r == CUDA_SUCCESS && !sd_obj_live(hm, SD_MODULE))
        r = CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS && ((sd_image *)hm)->ctx == NULL)
        r = CUDA_ERROR_INVALID_HANDLE; /* a library's module goes with its library */
    if (r == CUDA_SUCCESS)
        image_free((sd_image *)hm);
    sd_unlock();
    return r;
}

SD_API CUresult cuModuleGetFunction(CUfunction *pf, CUmodule hm, const char *name)
{
    if (!pf || !name)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS && !sd_obj_live(hm, SD_MODULE))
        r = CUDA_ERROR_INVALID_HANDLE;
    long fi = r == CUDA_SUCCESS ? foreign_index((sd_image *)hm, name) : -1;
    long i = r == CUDA_SUCCESS ? registry_index(name) : -1;
    if (r == CUDA_SUCCESS && fi < 0 && (i < 0 || !image_holds((sd_image *)hm, (size_t)i)))
        r = CUDA_ERROR_NOT_FOUND;
    if (r == CUDA_SUCCESS) {
        sd_func *f = fi >= 0 ? foreign_func((sd_image *)hm, (size_t)fi, SD_FUNC)
                             : image_func((sd_image *)hm, (size_t)i, SD_FUNC);
        if (!f)
            r = CUDA_ERROR_OUT_OF_MEMORY;
        else {
            f->unloaded = 0; /* a lookup by name loads it */
            *pf = (CUfunction)f;
        }
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuModuleGetFunctionCount(unsigned int *count, CUmodule hm)
{
    if (!count)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS && !sd_obj_live(hm, SD_MODULE))
        r = CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        *count = (unsigned int)held_count((sd_image *)hm);
    sd_unlock();
    return r;
}

SD_API CUresult cuModuleEnumerateFunctions(CUfunction *fns, unsigned int n, CUmodule hm)
{
    if (!fns)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS && !sd_obj_live(hm, SD_MODULE))
        r = CUDA_ERROR_INVALID_HANDLE;
    sd_image *fm = r == CUDA_SUCCESS ? (sd_image *)hm : NULL;
    for (size_t i = 0; fm && fm->foreign && r == CUDA_SUCCESS && i < n && i < fm->foreign->nfuncs; i++) {
        sd_func *f = foreign_func(fm, i, SD_FUNC);
        if (!f)
            r = CUDA_ERROR_OUT_OF_MEMORY;
        else
            fns[i] = (CUfunction)f;
    }
    for (size_t i = 0, o = 0; r == CUDA_SUCCESS && o < n && i < sd_registry_count(); i++) {
        if (!image_holds((sd_image *)hm, i))
            continue;
        sd_func *f = image_func((sd_image *)hm, i, SD_FUNC);
        if (!f)
            r = CUDA_ERROR_OUT_OF_MEMORY;
        else
            fns[o++] = (CUfunction)f;
    }
    sd_unlock();
    return r;
}

/* A foreign image's global, in device memory of c given at the first lookup (zeroed, as a
 * loaded module's uninitialised globals); the test programs have no __device__ variables. */
static CUresult foreign_global(sd_image *m, sd_ctx *c, const char *name, CUdeviceptr *dptr, size_t *bytes)
{
    for (size_t i = 0; m->foreign && i < m->foreign->nglobals; i++) {
        sd_foreign_global *g = &m->foreign->globals[i];
        if (strcmp(g->name, name))
            continue;
        if (!g->addr) {
            CUresult r = sd_mem_alloc(c, g->size, NULL, &g->addr);
            if (r != CUDA_SUCCESS)
                return r;
            memset((void *)g->addr, 0, g->size);
        }
        if (dptr)
            *dptr = (CUdeviceptr)g->addr;
        if (bytes)
            *bytes = g->size;
        return CUDA_SUCCESS;
    }
    return CUDA_ERROR_NOT_FOUND;
}

SD_API CUresult cuModuleGetGlobal_v2(CUdeviceptr *dptr, size_t *bytes, CUmodule hm, const char *name)
{
    (void)dptr;
    (void)bytes;
    if (!name)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS && !sd_obj_live(hm, SD_MODULE))
        r = CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        r = foreign_global((sd_image *)hm, c, name, dptr, bytes);
    sd_unlock();
    return r;
}

/* GPUWIRE_STANDIN_LAZY=1: a library's kernels as the real driver loads them
 * lazily: enumerated, they tell no parameter information until looked up by
 * name (tests of what the client reads from images itself). */
static int lazy(void)
{
    const char *v = getenv("GPUWIRE_STANDIN_LAZY");
    return v && !strcmp(v, "1");
}

SD_API CUresult cuModuleGetLoadingMode(CUmoduleLoadingMode *mode)
{
    if (!mode)
        return CUDA_ERROR_INVALID_VALUE;
    *mode = lazy() ? CU_MODULE_LAZY_LOADING : CU_MODULE_EAGER_LOADING;
    return CUDA_SUCCESS;
}

/* ---- libraries (context-independent) ---- */

SD_API CUresult cuLibraryLoadData(CUlibrary *plib, const void *code, CUjit_option *jopts, void **jvals,
                                  unsigned int nj, CUlibraryOption *lopts, void **lvals, unsigned int nl)
{
    if (!plib || !code || (nj && (!jopts || !jvals)) || (nl && (!lopts || !lvals)))
        return CUDA_ERROR_INVALID_VALUE;
    sd_jit_out o;
    CUresult jr = sd_jit_scan(nj, jopts, jvals, &o);
    if (jr == CUDA_SUCCESS)
        jr = jit_check(code, &o, "library");
    if (jr != CUDA_SUCCESS)
        return jr;
    sd_lock();
    CUresult r = sd_initialized() ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
    sd_image *lib = NULL;
    if (r == CUDA_SUCCESS) {
        lib = image_new(SD_LIBRARY, NULL, code);
        sd_image *mod = lib ? image_new(SD_MODULE, NULL, code) : NULL;
        if (!mod) {
            if (lib)
                image_free(lib);
            r = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            lib->mod = mod;
        }
    }
    if (r == CUDA_SUCCESS)
        *plib = (CUlibrary)lib;
    sd_unlock();
    return r;
}

SD_API CUresult cuLibraryUnload(CUlibrary hl)
{
    sd_lock();
    CUresult r = sd_obj_live(hl, SD_LIBRARY) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS) {
        sd_image *lib = (sd_image *)hl;
        image_free(lib->mod);
        image_free(lib);
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuLibraryGetKernel(CUkernel *pk, CUlibrary hl, const char *name)
{
    if (!pk || !name)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(hl, SD_LIBRARY) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    long fi = r == CUDA_SUCCESS ? foreign_index((sd_image *)hl, name) : -1;
    long i = r == CUDA_SUCCESS ? registry_index(name) : -1;
    if (r == CUDA_SUCCESS && fi < 0 && (i < 0 || !image_holds((sd_image *)hl, (size_t)i)))
        r = CUDA_ERROR_NOT_FOUND;
    if (r == CUDA_SUCCESS) {
        sd_func *k = fi >= 0 ? foreign_func((sd_image *)hl, (size_t)fi, SD_KERNEL)
                             : image_func((sd_image *)hl, (size_t)i, SD_KERNEL);
        if (!k) {
            r = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            k->resolved = 1;
            *pk = (CUkernel)k;
        }
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuLibraryGetKernelCount(unsigned int *count, CUlibrary hl)
{
    if (!count)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(hl, SD_LIBRARY) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        *count = (unsigned int)held_count((sd_image *)hl);
    sd_unlock();
    return r;
}

SD_API CUresult cuLibraryEnumerateKernels(CUkernel *ks, unsigned int n, CUlibrary hl)
{
    if (!ks)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(hl, SD_LIBRARY) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    sd_image *fl = r == CUDA_SUCCESS ? (sd_image *)hl : NULL;
    for (size_t i = 0; fl && fl->foreign && r == CUDA_SUCCESS && i < n && i < fl->foreign->nfuncs; i++) {
        sd_func *k = foreign_func(fl, i, SD_KERNEL);
        if (!k)
            r = CUDA_ERROR_OUT_OF_MEMORY;
        else
            ks[i] = (CUkernel)k;
    }
    for (size_t i = 0, o = 0; r == CUDA_SUCCESS && o < n && i < sd_registry_count(); i++) {
        if (!image_holds((sd_image *)hl, i))
            continue;
        sd_func *k = image_func((sd_image *)hl, i, SD_KERNEL);
        if (!k)
            r = CUDA_ERROR_OUT_OF_MEMORY;
        else
            ks[o++] = (CUkernel)k;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuLibraryGetModule(CUmodule *pm, CUlibrary hl)
{
    if (!pm)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS && !sd_obj_live(hl, SD_LIBRARY))
        r = CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        *pm = (CUmodule)((sd_image *)hl)->mod;
    sd_unlock();
    return r;
}

SD_API CUresult cuLibraryGetGlobal(CUdeviceptr *dptr, size_t *bytes, CUlibrary hl, const char *name)
{
    (void)dptr;
    (void)bytes;
    if (!name)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(hl, SD_LIBRARY) ? CUDA_ERROR_NOT_FOUND : CUDA_ERROR_INVALID_HANDLE;
    sd_unlock();
    return r;
}

SD_API CUresult cuKernelGetFunction(CUfunction *pf, CUkernel k)
{
    if (!pf)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS && !sd_obj_live(k, SD_KERNEL))
        r = CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS) {
        sd_func *kk = (sd_func *)k;
        sd_image *mod = ((sd_image *)kk->owner)->mod;
        long fi = foreign_index(mod, kk->desc->name);
        long i = fi < 0 ? registry_index(kk->desc->name) : -1;
        sd_func *f = fi >= 0 ? foreign_func(mod, (size_t)fi, SD_FUNC) : i >= 0 ? image_func(mod, (size_t)i, SD_FUNC) : NULL;
        if (!f)
            r = CUDA_ERROR_OUT_OF_MEMORY;
        else
            *pf = (CUfunction)f;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuKernelGetLibrary(CUlibrary *pl, CUkernel k)
{
    if (!pl)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(k, SD_KERNEL) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        *pl = (CUlibrary)((sd_func *)k)->owner;
    sd_unlock();
    return r;
}

/* ---- functions and kernels: names, modules, parameters ---- */

SD_API CUresult cuFuncGetModule(CUmodule *pm, CUfunction f)
{
    if (!pm)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(f, SD_FUNC) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        *pm = (CUmodule)((sd_func *)f)->owner;
    sd_unlock();
    return r;
}

static CUresult get_name(const char **name, const void *h, int kind)
{
    if (!name)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(h, kind) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        *name = ((const sd_func *)h)->desc->name; /* static storage: valid for the process */
    sd_unlock();
    return r;
}

SD_API CUresult cuFuncGetName(const char **name, CUfunction f) { return get_name(name, f, SD_FUNC); }
SD_API CUresult cuKernelGetName(const char **name, CUkernel k) { return get_name(name, k, SD_KERNEL); }

static CUresult param_info(const void *h, int kind, size_t i, size_t *off, size_t *size)
{
    if (!off && !size)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(h, kind) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS) {
        const sd_kernel_desc *d = ((const sd_func *)h)->desc;
        if (kind == SD_KERNEL && lazy() && !((const sd_func *)h)->resolved) {
            r = CUDA_ERROR_NOT_FOUND;
        } else if (i >= d->nparams) {
            r = CUDA_ERROR_INVALID_VALUE;
        } else {
            if (off)
                *off = d->params[i].offset;
            if (size)
                *size = d->params[i].size;
        }
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuFuncGetParamInfo(CUfunction f, size_t i, size_t *off, size_t *size)
{
    return param_info(f, SD_FUNC, i, off, size);
}

SD_API CUresult cuKernelGetParamInfo(CUkernel k, size_t i, size_t *off, size_t *size)
{
    return param_info(k, SD_KERNEL, i, off, size);
}

SD_API CUresult cuFuncIsLoaded(CUfunctionLoadingState *state, CUfunction f)
{
    if (!state)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_func *fn = sd_func_check(f);
    CUresult r = fn ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        *state = fn->unloaded ? CU_FUNCTION_LOADING_STATE_UNLOADED : CU_FUNCTION_LOADING_STATE_LOADED;
    sd_unlock();
    return r;
}

SD_API CUresult cuFuncLoad(CUfunction f)
{
    sd_lock();
    sd_func *fn = sd_func_check(f);
    CUresult r = fn ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (fn)
        fn->unloaded = 0;
    sd_unlock();
    return r;
}

/* ---- attributes ---- */

static CUresult func_attr(const sd_func *f, CUfunction_attribute a, int *pi)
{
    switch (a) {
    case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *pi = (int)SD_MAX_THREADS; break;
    case CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: *pi = 0; break;
    case CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES: *pi = 0; break;
    case CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES: *pi = 0; break;
    case CU_FUNC_ATTRIBUTE_NUM_REGS: *pi = 16; break;
    case CU_FUNC_ATTRIBUTE_PTX_VERSION: *pi = 90; break;
    case CU_FUNC_ATTRIBUTE_BINARY_VERSION: *pi = 90; break;
    case CU_FUNC_ATTRIBUTE_CACHE_MODE_CA: *pi = 0; break;
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: *pi = f->max_dyn_shmem; break;
    case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT: *pi = f->carveout; break;
    case CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED: *pi = f->non_portable; break;
    case CU_FUNC_ATTRIBUTE_CLUSTER_SIZE_MUST_BE_SET:
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_WIDTH:
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_HEIGHT:
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_DEPTH:
    case CU_FUNC_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE: *pi = 0; break;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

static CUresult func_set_attr(sd_func *f, CUfunction_attribute a, int v)
{
    switch (a) {
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES:
        if (v < 0 || (unsigned)v > SD_SHMEM_OPTIN)
            return CUDA_ERROR_INVALID_VALUE;
        f->max_dyn_shmem = v;
        return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT:
        if (v < -1 || v > 100)
            return CUDA_ERROR_INVALID_VALUE;
        f->carveout = v;
        return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED:
        if (v != 0 && v != 1)
            return CUDA_ERROR_INVALID_VALUE;
        f->non_portable = v;
        return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_WIDTH:
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_HEIGHT:
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_DEPTH:
    case CU_FUNC_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE:
        return CUDA_SUCCESS; /* accepted; clusters change nothing on a CPU */
    default:
        return CUDA_ERROR_INVALID_VALUE;
    }
}

SD_API CUresult cuFuncGetAttribute(int *pi, CUfunction_attribute a, CUfunction f)
{
    if (!pi)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_func *fn = sd_func_check(f);
    /* the attributes cuda.h says need a loaded function: refused, nothing written */
    int needs_load = a == CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK || a == CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES ||
                     a == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
    CUresult r = !fn ? CUDA_ERROR_INVALID_HANDLE
               : fn->unloaded && needs_load ? CUDA_ERROR_FUNCTION_NOT_LOADED
               : func_attr(fn, a, pi);
    sd_unlock();
    return r;
}

SD_API CUresult cuFuncSetAttribute(CUfunction f, CUfunction_attribute a, int v)
{
    sd_lock();
    sd_func *fn = sd_func_check(f);
    CUresult r = fn ? func_set_attr(fn, a, v) : CUDA_ERROR_INVALID_HANDLE;
    sd_unlock();
    return r;
}

SD_API CUresult cuKernelGetAttribute(int *pi, CUfunction_attribute a, CUkernel k, CUdevice dev)
{
    if (!pi)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_check_dev(dev);
    if (r == CUDA_SUCCESS)
        r = sd_obj_live(k, SD_KERNEL) ? func_attr((sd_func *)k, a, pi) : CUDA_ERROR_INVALID_HANDLE;
    sd_unlock();
    return r;
}

SD_API CUresult cuKernelSetAttribute(CUfunction_attribute a, int v, CUkernel k, CUdevice dev)
{
    sd_lock();
    CUresult r = sd_check_dev(dev);
    if (r == CUDA_SUCCESS)
        r = sd_obj_live(k, SD_KERNEL) ? func_set_attr((sd_func *)k, a, v) : CUDA_ERROR_INVALID_HANDLE;
    sd_unlock();
    return r;
}

SD_API CUresult cuFuncSetCacheConfig(CUfunction f, CUfunc_cache config)
{
    if ((unsigned)config > (unsigned)CU_FUNC_CACHE_PREFER_EQUAL)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_func *fn = sd_func_check(f);
    if (fn)
        fn->cache_config = (int)config;
    sd_unlock();
    return fn ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

SD_API CUresult cuKernelSetCacheConfig(CUkernel k, CUfunc_cache config, CUdevice dev)
{
    if ((unsigned)config > (unsigned)CU_FUNC_CACHE_PREFER_EQUAL)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_check_dev(dev);
    if (r == CUDA_SUCCESS && !sd_obj_live(k, SD_KERNEL))
        r = CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        ((sd_func *)k)->cache_config = (int)config;
    sd_unlock();
    return r;
}

/* ---- occupancy: an H100 SM holds 2048 threads, 32 blocks, 228 KiB of shared memory ---- */

int sd_blocks_per_sm(const sd_func *f, int block, size_t shmem)
{
    if (block <= 0 || block > (int)SD_MAX_THREADS || shmem > (size_t)f->max_dyn_shmem)
        return 0;
    int by_threads = 2048 / block, n = by_threads < 32 ? by_threads : 32;
    if (shmem > 0) {
        int by_smem = (int)(233472 / (shmem + 1024));
        if (by_smem < n)
            n = by_smem;
    }
    return n;
}

SD_API CUresult cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *n, CUfunction f, int block, size_t shmem,
                                                                     unsigned int flags)
{
    if (!n || (flags & ~(unsigned)CU_OCCUPANCY_DISABLE_CACHING_OVERRIDE))
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_func *fn = sd_func_check(f);
    if (fn)
        *n = sd_blocks_per_sm(fn, block, shmem);
    sd_unlock();
    return fn ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

SD_API CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *n, CUfunction f, int block, size_t shmem)
{
    return cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(n, f, block, shmem, 0);
}

/* The search CUDA describes (cuda_occupancy.h, cudaOccupancyMaxPotentialBlockSize
 * in cuda_runtime.h) and the driver follows: the limit (0: none) lowered to the
 * device's and the function's maximum threads per block, tried first, then every
 * multiple of the warp size below it; each size's dynamic shared memory is the
 * callback's answer for it if there is a callback (called once per size tried,
 * on the calling thread), else shmem. The size with the most resident threads
 * per SM wins (the larger on a tie: it came first); the search ends early once a
 * size fills the SM. */
SD_API CUresult cuOccupancyMaxPotentialBlockSizeWithFlags(int *min_grid, int *block, CUfunction f,
                                                          CUoccupancyB2DSize cb, size_t shmem, int limit,
                                                          unsigned int flags)
{
    if (!min_grid || !block || (flags & ~(unsigned)CU_OCCUPANCY_DISABLE_CACHING_OVERRIDE))
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_func *fn = sd_func_check(f);
    sd_func copy;
    if (fn)
        copy = *fn; /* the callback runs without the lock held */
    sd_unlock();
    if (!fn)
        return CUDA_ERROR_INVALID_HANDLE;
    const int warp = 32, sm_threads = 2048, func_max = (int)SD_MAX_THREADS;
    if (limit == 0 || limit > (int)SD_MAX_THREADS)
        limit = (int)SD_MAX_THREADS;
    if (limit > func_max)
        limit = func_max;
    int best_block = 0, best_blocks = 0, best_threads = 0;
    for (int aligned = (limit + warp - 1) / warp * warp; aligned > 0; aligned -= warp) {
        int b = limit < aligned ? limit : aligned;
        size_t dyn = cb ? cb(b) : shmem;
        int per_sm = sd_blocks_per_sm(&copy, b, dyn);
        if (b * per_sm > best_threads) {
            best_block = b;
            best_blocks = per_sm;
            best_threads = b * per_sm;
        }
        if (best_threads == sm_threads)
            break;
    }
    *min_grid = best_blocks * SD_SM_COUNT;
    *block = best_block;
    return CUDA_SUCCESS;
}

SD_API CUresult cuOccupancyMaxPotentialBlockSize(int *min_grid, int *block, CUfunction f, CUoccupancyB2DSize cb,
                                                 size_t shmem, int limit)
{
    return cuOccupancyMaxPotentialBlockSizeWithFlags(min_grid, block, f, cb, shmem, limit, 0);
}

/* Clusters of the launch configuration's cluster dimension (1 when it names
 * none; at most 8 blocks, the portable size): as many as the SMs' resident
 * blocks hold. */
static CUresult cluster_blocks(const CUlaunchConfig *c, unsigned *size)
{
    *size = 1;
    if (!c || (c->numAttrs && !c->attrs))
        return CUDA_ERROR_INVALID_VALUE;
    for (unsigned i = 0; i < c->numAttrs; i++)
        if (c->attrs[i].id == CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION) {
            const CUlaunchAttributeValue *v = &c->attrs[i].value;
            *size = v->clusterDim.x * v->clusterDim.y * v->clusterDim.z;
        }
    return *size == 0 || *size > 8 ? CUDA_ERROR_INVALID_CLUSTER_SIZE : CUDA_SUCCESS;
}

/* potential: the largest cluster size (8, the portable limit); else how many
 * clusters of the configuration's size are resident at once. */
static CUresult cluster_query(int *n, CUfunction f, const CUlaunchConfig *c, int potential)
{
    unsigned size;
    CUresult r = n ? cluster_blocks(c, &size) : CUDA_ERROR_INVALID_VALUE;
    if (r != CUDA_SUCCESS)
        return r;
    sd_lock();
    sd_func *fn = sd_func_check(f);
    if (fn && potential)
        *n = 8;
    else if (fn)
        *n = (int)((unsigned)sd_blocks_per_sm(fn, (int)(c->blockDimX * c->blockDimY * c->blockDimZ),
                                              c->sharedMemBytes) * SD_SM_COUNT / size);
    sd_unlock();
    return fn ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

SD_API CUresult cuOccupancyMaxActiveClusters(int *n, CUfunction f, const CUlaunchConfig *c)
{
    return cluster_query(n, f, c, 0);
}

SD_API CUresult cuOccupancyMaxPotentialClusterSize(int *n, CUfunction f, const CUlaunchConfig *c)
{
    return cluster_query(n, f, c, 1);
}

SD_API CUresult cuOccupancyAvailableDynamicSMemPerBlock(size_t *smem, CUfunction f, int nblocks, int block)
{
    if (!smem || nblocks <= 0 || block <= 0 || block > (int)SD_MAX_THREADS)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_func *fn = sd_func_check(f);
    if (fn) {
        size_t per = 233472 / (size_t)nblocks;
        per = per > 1024 ? per - 1024 : 0;
        *smem = per < SD_SHMEM_OPTIN ? per : SD_SHMEM_OPTIN;
    }
    sd_unlock();
    return fn ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}
