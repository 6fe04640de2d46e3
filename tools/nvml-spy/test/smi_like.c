/* nvml-spy's test program: loads libnvidia-ml.so.1 by name as nvidia-smi does,
 * calls the public names and every slot of the fake's export table, and
 * prints what it got (checked by tests/e2e/test_nvml_spy.py). */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*get_table_fn)(const void **, const uint8_t *);

int main(void)
{
    /* SMI_LIKE_NVML: an absolute path to dlopen instead, as a program that
     * does not go through the loader's search might */
    const char *lib = getenv("SMI_LIKE_NVML");
    void *h = dlopen(lib ? lib : "libnvidia-ml.so.1", RTLD_NOW);
    if (!h) {
        printf("dlopen: %s\n", dlerror());
        return 1;
    }
    int (*init)(void) = (int (*)(void))dlsym(h, "nvmlInit_v2");
    int (*shutdown)(void) = (int (*)(void))dlsym(h, "nvmlShutdown");
    int (*version)(char *, unsigned) = (int (*)(char *, unsigned))dlsym(h, "nvmlSystemGetDriverVersion");
    get_table_fn get = (get_table_fn)dlsym(h, "nvmlInternalGetExportTable");
    if (!init || !shutdown || !version || !get) {
        printf("missing symbol\n");
        return 1;
    }
    printf("init %d\n", init());
    char v[32] = "";
    int rc = version(v, sizeof v);
    printf("version %d %s\n", rc, v);

    static const uint8_t other[16] = {0xee};
    const void *t = (const void *)1;
    rc = get(&t, other);
    printf("other table %d %p\n", rc, t);

    static const uint8_t id[16] = {0xa1, 0xb2, 0xc3, 0xd4, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const void **tab = NULL;
    rc = get((const void **)&tab, id);
    if (rc != 0 || !tab) {
        printf("table %d\nshutdown %d\n", rc, shutdown());
        return 0;
    }
    printf("table %d size 0x%lx\n", rc, (unsigned long)(uintptr_t)tab[0]);
    uint32_t word = 0;
    rc = ((int (*)(uint32_t *))tab[1])(&word);
    printf("slot1 %d 0x%x\n", rc, word);
    printf("slot2 %llu\n", (unsigned long long)((uint64_t(*)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                                                                uint64_t))tab[2])(1, 2, 3, 4, 5, 6));
    char up[16];
    printf("slot3 %d %s\n", ((int (*)(const char *, char *, unsigned))tab[3])("nvml spy", up, sizeof up), up);
    printf("slot4 %ld\n", ((long (*)(long, long, long, long, long, long, long, long, double))tab[4])(
                               100, 0, 0, 0, 0, 0, 0, 1100, 2.5));
    const void **again = NULL;
    get((const void **)&again, id);
    printf("same copy %d\n", again == tab);
    printf("shutdown %d\n", shutdown());
    return 0;
}
