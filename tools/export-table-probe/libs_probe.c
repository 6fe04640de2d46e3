/* GPU-machine probe: cuBLAS (one SGEMM, checked) and cuDNN (handle create)
 * through cudart, all dlopen'd so nothing here needs their headers. Run on
 * the passthru libcuda with GPUWIRE_DEBUG=2 to see the tables they fetch. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static void *sym(void *h, const char *n)
{
    void *f = h ? dlsym(h, n) : NULL;
    if (f == NULL) {
        fprintf(stderr, "missing %s\n", n);
        exit(2);
    }
    return f;
}

int main(void)
{
    void *rt = dlopen("libcudart.so.13", RTLD_NOW);
    int (*cmalloc)(void **, size_t) = sym(rt, "cudaMalloc");
    int (*cmemcpy)(void *, const void *, size_t, int) = sym(rt, "cudaMemcpy");
    enum { N = 64 };
    static float a[N * N], c[N * N];
    for (int i = 0; i < N * N; i++)
        a[i] = 1.0f;
    void *da, *dc;
    printf("cudaMalloc -> %d %d\n", cmalloc(&da, sizeof a), cmalloc(&dc, sizeof c));
    printf("cudaMemcpy -> %d\n", cmemcpy(da, a, sizeof a, 1));

    void *bl = dlopen("libcublas.so.13", RTLD_NOW);
    if (bl == NULL) {
        printf("no cuBLAS: %s\n", dlerror());
    } else {
        void *h = NULL;
        int (*create)(void **) = sym(bl, "cublasCreate_v2");
        int (*sgemm)(void *, int, int, int, int, int, const float *, const void *, int,
                     const void *, int, const float *, void *, int) = sym(bl, "cublasSgemm_v2");
        int (*destroy)(void *) = sym(bl, "cublasDestroy_v2");
        float one = 1.0f, zero = 0.0f;
        printf("cublasCreate -> %d\n", create(&h));
        printf("cublasSgemm -> %d\n", sgemm(h, 0, 0, N, N, N, &one, da, N, da, N, &zero, dc, N));
        printf("cudaMemcpy back -> %d\n", cmemcpy(c, dc, sizeof c, 2));
        int ok = 1;
        for (int i = 0; i < N * N; i++)
            ok &= c[i] == (float)N;
        printf("SGEMM result %s\n", ok ? "ok" : "WRONG");
        printf("cublasDestroy -> %d\n", destroy(h));
    }

    void *dn = dlopen("libcudnn.so.9", RTLD_NOW);
    if (dn == NULL) {
        printf("no cuDNN: %s\n", dlerror());
    } else {
        void *h = NULL;
        int (*create)(void **) = sym(dn, "cudnnCreate");
        int (*destroy)(void *) = sym(dn, "cudnnDestroy");
        printf("cudnnCreate -> %d\n", create(&h));
        printf("cudnnDestroy -> %d\n", destroy(h));
    }
    return 0;
}
