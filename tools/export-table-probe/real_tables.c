/* GPU-machine probe: asks the REAL driver for each export table and prints
 * what it answers (return codes, table sizes, slot kinds), how its
 * context-local storage answers a miss, and whether gpuwire's integrity
 * digest equals the real driver's for the same inputs. Test tool only. */
#define _GNU_SOURCE
#include <cuda.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "../../native/client/private/export_tables.h"
#include "real_forward.h"

typedef CUresult (*get_t)(const void **, const CUuuid *);
static get_t real_get;

static const struct { const char *name; const char *hex; } ids[] = {
    {"CUDART_INTERFACE", "6bd5fb6c5bf4e74a8987d93912fd9df9"},
    {"TOOLS_TLS", "42d85a8123f6cb478298f6e78a3aecdc"},
    {"TOOLS_RUNTIME_CALLBACK_HOOKS", "a094798c2e742e7493f20800200c0a66"},
    {"CONTEXT_LOCAL_STORAGE", "c693336e1121df11a8c368f355d89593"},
    {"CONTEXT_CHECKS", "263e88607cd2614392f6bbd5006dfa7e"},
    {"INTEGRITY_CHECK", "d4082055bde6704b8d34ba123c66e1f2"},
    {"F8CFF951", "f8cff95121468b4eb9e2fb469e7c0dd9"},
    {"CTX_CREATE_BYPASS", "0ca50b8c1004929a89a7d0df10e77286"},
    {"HEAP_ACCESS", "195bcbf4d67d024aacc51d29cea631ae"},
    {"DEVICE_EXTENDED_RT", "b10541e1f7c7c74a9f64f223be99f1e2"},
    {"HYBRID_CUDART", "dd9e98a4f410484499b0e2aeb7b432b5"},
    {"CUBLAS_CUFFT_2131", "21318c60971432488ca641ff7324c8f2"},
    {"RANDOM", "00112233445566778899aabbccddeeff"},
};

static CUuuid from_hex(const char *h)
{
    CUuuid u;
    for (int i = 0; i < 16; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        u.bytes[i] = (char)v;
    }
    return u;
}

/* "x" if p lies in an executable mapping, "r" if readable only, "-" else. */
static const char *kind_of(const void *p)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    const char *k = "-";
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perm[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perm) == 3 && (uintptr_t)p >= lo &&
            (uintptr_t)p < hi) {
            k = perm[2] == 'x' ? "x" : "r";
            break;
        }
    }
    if (f)
        fclose(f);
    return k;
}

static const void *table(const char *name)
{
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (strcmp(ids[i].name, name) == 0) {
            CUuuid u = from_hex(ids[i].hex);
            const void *t = NULL;
            real_get(&t, &u);
            return t;
        }
    return NULL;
}

static void cls_dtor_probe(CUcontext c, void *k, void *v)
{
    printf("CLS dtor(%p, %p, %p)\n", (void *)c, k, v);
}

int main(void)
{
    real_get = (get_t)real_sym("cuGetExportTable");
    int drv = 0;
    printf("cuInit -> %d\n", cuInit(0));
    cuDriverGetVersion(&drv);
    printf("driver version %d\n", drv);

    CUuuid z = from_hex(ids[0].hex);
    const void *t = (const void *)1;
    printf("cuGetExportTable(NULL, id) -> %d\n", real_get(NULL, &z));
    printf("cuGetExportTable(&t, NULL) -> %d\n", real_get(&t, NULL));

    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        CUuuid u = from_hex(ids[i].hex);
        t = (const void *)1;
        CUresult r = real_get(&t, &u);
        printf("table %-28s %s -> rc=%d ptr=%p", ids[i].name, ids[i].hex, (int)r, t);
        if (r != CUDA_SUCCESS || t == NULL || t == (const void *)1) {
            printf("\n");
            continue;
        }
        const uintptr_t *s = t;
        size_t n = (s[0] > 0 && s[0] < 4096 && s[0] % 8 == 0) ? s[0] / 8 : 6;
        printf(" word0=%#lx -> %zu slots:", (unsigned long)s[0], n);
        for (size_t k = 0; k < n; k++)
            printf(" %zu:%s", k, s[k] ? kind_of((const void *)s[k]) : "0");
        printf("\n");
    }

    /* Context-local storage answers. */
    const void *const *cls = table("CONTEXT_LOCAL_STORAGE");
    typedef CUresult (*put_t)(CUcontext, void *, void *, void *);
    typedef CUresult (*del_t)(CUcontext, void *);
    typedef CUresult (*getv_t)(void **, CUcontext, void *);
    CUdevice dev;
    CUcontext ctx;
    cuDeviceGet(&dev, 0);
    void *v = (void *)1;
    printf("CLS get, no current context -> %d v=%p\n",
           ((getv_t)cls[2])(&v, NULL, (void *)0x1234), v);
    cuDevicePrimaryCtxRetain(&ctx, dev);
    ((CUresult(*)(CUcontext))real_sym("cuCtxSetCurrent"))(ctx);
    v = (void *)1;
    printf("CLS get miss (explicit ctx) -> %d v=%p\n",
           ((getv_t)cls[2])(&v, ctx, (void *)0x1234), v);
    printf("CLS put -> %d\n", ((put_t)cls[0])(ctx, (void *)0x1234, (void *)0x5678, NULL));
    v = NULL;
    printf("CLS get hit -> %d v=%p\n", ((getv_t)cls[2])(&v, ctx, (void *)0x1234), v);
    printf("CLS put with dtor -> %d\n",
           ((put_t)cls[0])(ctx, (void *)0x1234, (void *)0x5678, (void *)cls_dtor_probe));
    v = NULL;
    printf("CLS get hit -> %d v=%p\n", ((getv_t)cls[2])(&v, ctx, (void *)0x1234), v);
    v = NULL;
    printf("CLS get hit, ctx NULL (current) -> %d v=%p\n",
           ((getv_t)cls[2])(&v, NULL, (void *)0x1234), v);
    printf("CLS delete -> %d\n", ((del_t)cls[1])(ctx, (void *)0x1234));
    printf("CLS delete again -> %d\n", ((del_t)cls[1])(ctx, (void *)0x1234));

    /* CUDART_INTERFACE slot 2 and CONTEXT_CHECKS. */
    const void *const *ci = table("CUDART_INTERFACE");
    CUcontext c2 = NULL;
    CUresult r2 = ((CUresult(*)(CUcontext *, CUdevice))ci[2])(&c2, dev);
    printf("CUDART_INTERFACE[2](dev0) -> %d ctx=%p (retained primary=%p)\n", r2, (void *)c2,
           (void *)ctx);
    const void *const *cc = table("CONTEXT_CHECKS");
    uint32_t fl = 77;
    const void *det = (const void *)1;
    printf("CONTEXT_CHECKS[2] -> %d", ((CUresult(*)(CUcontext, uint32_t *, const void **))cc[2])(
                                          ctx, &fl, &det));
    printf(" flags=%u detail=%p\n", fl, det);
    printf("CONTEXT_CHECKS[3] -> %u\n", ((uint32_t(*)(void))cc[3])());
    const void *const *hk = table("TOOLS_RUNTIME_CALLBACK_HOOKS");
    void *bp = NULL;
    size_t bs = 0;
    ((void (*)(void **, size_t *))hk[2])(&bp, &bs);
    printf("HOOKS[2] -> size %zu", bs);
    ((void (*)(void **, size_t *))hk[6])(&bp, &bs);
    printf(", HOOKS[6] -> size %zu\n", bs);

    /* Integrity digest: the real driver's versus ours on the same inputs. */
    const void *const *ic = table("INTEGRITY_CHECK");
    typedef CUresult (*ic_t)(uint32_t, uint64_t, uint64_t *);
    uint64_t now = (uint64_t)time(NULL);
    int ndev = 0;
    cuDeviceGetCount(&ndev);
    gw_integrity_device devs[64];
    for (int i = 0; i < ndev && i < 64; i++) {
        CUdevice d;
        cuDeviceGet(&d, i);
        memset(&devs[i], 0, sizeof devs[i]);
        cuDeviceGetUuid(&devs[i].uuid, d);
        cuDeviceGetAttribute(&devs[i].pci_domain, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, d);
        cuDeviceGetAttribute(&devs[i].pci_bus, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, d);
        cuDeviceGetAttribute(&devs[i].pci_device, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, d);
    }
    for (uint32_t ver = 13000; ver <= 13002; ver++) {
        uint64_t real[2] = {0, 0}, ours[2] = {0, 0};
        CUresult r = ((ic_t)ic[1])(ver, now, real);
        gw_export_integrity_digest(ver, now, (uint32_t)drv, (uint32_t)getpid(),
                                   (uint32_t)(uintptr_t)pthread_self(), ci, ic, ic[1], devs,
                                   (size_t)ndev, ours);
        printf("INTEGRITY[1](%u) -> %d real=%016llx%016llx ours=%016llx%016llx %s\n", ver, r,
               (unsigned long long)real[0], (unsigned long long)real[1],
               (unsigned long long)ours[0], (unsigned long long)ours[1],
               memcmp(real, ours, 16) == 0 ? "MATCH" : "DIFFER");
    }
    printf("CLS put key 0x9999 with dtor -> %d\n",
           ((put_t)cls[0])(ctx, (void *)0x9999, (void *)0x7777, (void *)cls_dtor_probe));
    printf("cuDevicePrimaryCtxReset -> %d (dtor line above if it ran)\n",
           ((CUresult(*)(CUdevice))real_sym("cuDevicePrimaryCtxReset_v2"))(dev));
    return 0;
}
