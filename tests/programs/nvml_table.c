/* Test program for NVML's private export table through gpuwire
 * (tests/e2e/test_nvml_internal_table.py; built there with gcc, no CUDA):
 * loads libnvidia-ml.so.1 by name as nvidia-smi does, fetches table
 * 6c3efec4-8fc9-4e6c-a327-ee696e12f7c4, calls the slots gpuwire answers and
 * one it does not know, and prints one "key value" line per answer. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY_SIZE 4128

typedef int (*get_table_fn)(const void **, const unsigned char *);
typedef int (*bus_id_fn)(unsigned, char *, unsigned);
typedef int (*string_fn)(void *, char *, unsigned);
typedef int (*bus_id_wide_fn)(unsigned, char *, uint64_t);
typedef int (*log_hook_fn)(const char *, const char *, int, const char *, const char *);
typedef int (*list_fn)(void *, unsigned *, void *);
typedef int (*value_fn)(void *, unsigned *);

static const unsigned char table_id[16] = {0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e,
                                           0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7, 0xc4};

int main(void)
{
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!lib) {
        printf("dlopen %s\n", dlerror());
        return 1;
    }
    int (*init)(void) = (int (*)(void))dlsym(lib, "nvmlInit_v2");
    int (*by_index)(unsigned, void **) = (int (*)(unsigned, void **))dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
    get_table_fn get = (get_table_fn)dlsym(lib, "nvmlInternalGetExportTable");
    if (!init || !by_index || !get) {
        printf("missing symbol\n");
        return 1;
    }
    printf("init %d\n", init());

    static const unsigned char other[16] = {0x01, 0x02};
    const void *o = (const void *)1;
    int rc = get(&o, other);
    printf("other_table %d %d\n", rc, o == NULL);

    const void **t = NULL;
    rc = get((const void **)&t, table_id);
    printf("table %d\n", rc);
    if (rc || !t)
        return 1;
    printf("size %lu\n", (unsigned long)(uintptr_t)t[0]);

    void *pub = NULL, *h = NULL;
    printf("public_handle %d\n", by_index(0, &pub));
    h = pub;
    /* slot 81 as nvidia-smi calls it: (index, buf, 0x22) -> the short bus id */
    char bus[0x22];
    memset(bus, 'x', sizeof bus);
    rc = ((bus_id_fn)t[81])(0, bus, 0x22);
    printf("slot81 %d %s\n", rc, bus);
    memset(bus, 'x', sizeof bus);
    rc = ((bus_id_fn)t[81])(0, bus, 5);
    printf("slot81_short %d %s %d\n", rc, bus, bus[5] == 'x');
    /* a length is an unsigned int: garbage in the register's upper half must not widen it */
    memset(bus, 'x', sizeof bus);
    rc = ((bus_id_wide_fn)t[81])(0, bus, ((uint64_t)1 << 40) | 5);
    printf("slot81_upper_half %d %s %d\n", rc, bus, bus[5] == 'x');
    printf("slot81_past_last %d\n", ((bus_id_fn)t[81])(7, bus, 0x22));

    /* slot 231: (device, buf, 0x50) -> the board part number */
    char part[0x50];
    memset(part, 'x', sizeof part);
    rc = ((string_fn)t[231])(h, part, sizeof part);
    printf("slot231 %d %s\n", rc, part);
    memset(part, 'x', sizeof part);
    rc = ((string_fn)t[231])(h, part, 4);
    printf("slot231_short %d %d\n", rc, part[0] == 'x');
    printf("slot231_no_buffer %d\n", ((string_fn)t[231])(h, NULL, 0x50));

    /* slot 26: nvidia-smi's log hook; its arguments are only looked at, never written */
    char line[] = "hello";
    rc = ((log_hook_fn)t[26])("nvidia-smi %s: %s\n", "stdout", 42, "main", line);
    printf("slot26 %d %s\n", rc, line);

    unsigned count = 0;
    rc = ((list_fn)t[213])(h, &count, NULL);
    printf("slot213_probe %d %u\n", rc, count);
    unsigned char *entries = calloc(250, ENTRY_SIZE);
    for (unsigned slot = 213; slot <= 215; slot++) {
        count = 250;
        memset(entries, 0xAB, (size_t)250 * ENTRY_SIZE);
        rc = ((list_fn)t[slot])(h, &count, entries);
        printf("slot%u %d %u\n", slot, rc, count);
    }
    uint32_t pid, gi, ci;
    uint64_t used;
    memcpy(&pid, entries, 4);
    memcpy(&used, entries + 8, 8);
    memcpy(&gi, entries + 16, 4);
    memcpy(&ci, entries + 20, 4);
    printf("entry0 pid %u used %llu gi %u ci %u\n", pid, (unsigned long long)used, gi, ci);
    printf("entry0_name %s\n", (const char *)entries + 32);
    printf("entry1_untouched %d\n", entries[ENTRY_SIZE] == 0xAB);
    printf("slot213_null_count %d\n", ((list_fn)t[213])(h, NULL, entries));
    free(entries);

    unsigned gen = 99;
    rc = ((value_fn)t[230])(h, &gen);
    printf("slot230 %d %u\n", rc, gen);
    unsigned sparse = 99;
    rc = ((value_fn)t[249])(h, &sparse);
    printf("slot249 %d %u\n", rc, sparse);
    unsigned stale = 99;
    rc = ((value_fn)t[230])((void *)(uintptr_t)0x7777000, &stale);
    printf("slot230_unknown_device %d %u\n", rc, stale);
    gen = 99;
    rc = ((value_fn)t[230])(h, &gen);
    printf("slot230_again %d %u\n", rc, gen);

    unsigned word = 77;
    rc = ((value_fn)t[100])(h, &word);
    printf("slot100_device %d %u\n", rc, word);
    word = 77;
    rc = ((value_fn)t[100])((void *)(uintptr_t)0x1234, &word);
    printf("slot100_other %d %u\n", rc, word);
    printf("slot20 %d\n", ((value_fn)t[20])(h, &word));
    printf("slot511 %d\n", ((value_fn)t[511])(NULL, NULL));
    return 0;
}
