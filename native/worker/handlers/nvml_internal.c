/* NVML_TABLE_CALL: the slots of NVML's private export table
 * 6c3efec4-8fc9-4e6c-a327-ee696e12f7c4 that the client library forwards
 * (native/nvml/internal_table.c; docs/export-tables.md, "NVML's table"),
 * called on this worker's real NVML with the real device. Only these slots
 * are reachable, each with the argument shape the table is known to have:
 *   213..215  (device, unsigned *count in/out, entry *array): running
 *             processes, filtered to this client's own as NVML's public
 *             process lists are (core/nvml_lib.c);
 *   230, 249  (device, unsigned *out): host max PCIe generation, sparse
 *             operation mode;
 *   231       (device, char *buf, unsigned len): the board part number, in
 *             a buffer of the client's capacity (1..NVML_TABLE_STRING_MAX)
 *             with room past it, terminated here whatever the slot wrote.
 * A request outside that (another slot, too large a capacity, device 0) is
 * answered NVML_ERROR_INVALID_ARGUMENT and the session goes on; a real NVML
 * without the table, or a table too short for the slot,
 * NVML_ERROR_NOT_SUPPORTED. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "nvml.h"

#define SLOT_PROCESSES_FIRST 213
#define SLOT_PROCESSES_LAST 215
#define SLOT_HOST_MAX_PCIE_GEN 230
#define SLOT_SPARSE_MODE 249
#define SLOT_PART_NUMBER 231
#define STRING_SLACK 64 /* room past the length, in case this driver writes past it */
#define TABLE_SIZE_MAX (1u << 16) /* a size word past this is not believed */

static const unsigned char table_id[16] = {0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e,
                                           0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7, 0xc4};

typedef nvmlReturn_t (*get_table_fn)(const void **, const unsigned char *);
typedef nvmlReturn_t (*value_fn)(nvmlDevice_t, unsigned *);
typedef nvmlReturn_t (*string_fn)(nvmlDevice_t, char *, unsigned);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const uintptr_t *table; /* the real one, once fetched */

/* The real table's slot, or NULL (*no_library: NVML itself is missing). A
 * failed fetch is tried again at the next call (it may precede nvmlInit). */
static void *real_slot(unsigned slot, int *no_library)
{
    get_table_fn get = (get_table_fn)gw_nvml_lib_sym("nvmlInternalGetExportTable", no_library);
    if (!get)
        return NULL;
    pthread_mutex_lock(&lock);
    if (!table) {
        const void *t = NULL;
        nvmlReturn_t r = get(&t, table_id);
        static int told; /* under lock */
        if (r == NVML_SUCCESS && t) {
            table = t;
        } else if (!told) {
            told = 1;
            gw_wlog("NVML has no export table 6c3efec4-...: nvmlInternalGetExportTable returned %d", (int)r);
        }
    }
    const uintptr_t *t = table;
    pthread_mutex_unlock(&lock);
    if (!t)
        return NULL;
    uintptr_t size = t[0];
    if (size > TABLE_SIZE_MAX || size < (uintptr_t)(slot + 1) * sizeof(uintptr_t)) {
        static _Atomic unsigned char told[SLOT_SPARSE_MODE + 1]; /* the largest slot taken */
        if (!atomic_exchange(&told[slot], 1))
            gw_wlog("NVML's export table (size word %#lx) has no slot %u", (unsigned long)size, slot);
        return NULL;
    }
    return (void *)t[slot];
}

static void reply(gw_call *c, nvmlReturn_t status, uint32_t value, const void *entries, size_t n)
{
    uint8_t *f = gw_reply_start(c, GW_NVML_TABLE_CALL_REP_SIZE);
    if (!f)
        return;
    gw_nvml_table_call_rep_put(f, &(gw_nvml_table_call_rep){.result = CUDA_SUCCESS, .status = status, .value = value});
    if (n)
        gw_reply_bytes(c, entries, n);
}

void gw_op_nvml_table_call(gw_call *c)
{
    gw_nvml_table_call_req q = {0};
    gw_in_fields(c, GW_NVML_TABLE_CALL_REQ_SIZE, gw_nvml_table_call_req_get(gw_in_next(c), gw_in_left(c), &q));
    nvmlDevice_t dev = c->bad ? NULL : (nvmlDevice_t)gw_handle_lookup(c, GW_HT_nvmlDevice_t, q.device);
    if (!gw_args_ok(c))
        return; /* malformed: the session ends; an unknown device: CUDA_ERROR_INVALID_HANDLE */
    int list = q.slot >= SLOT_PROCESSES_FIRST && q.slot <= SLOT_PROCESSES_LAST;
    int value = q.slot == SLOT_HOST_MAX_PCIE_GEN || q.slot == SLOT_SPARSE_MODE;
    int string = q.slot == SLOT_PART_NUMBER;
    if ((!list && !value && !string) || !dev || (list && q.capacity > GW_NVML_TABLE_LIST_MAX) ||
        (value && q.capacity) || (string && (!q.capacity || q.capacity > GW_NVML_TABLE_STRING_MAX))) {
        gw_wlog("NVML_TABLE_CALL: slot %u, device %#llx, capacity %u refused", q.slot, (unsigned long long)q.device,
                q.capacity);
        reply(c, NVML_ERROR_INVALID_ARGUMENT, 0, NULL, 0);
        return;
    }
    int no_library = 0;
    void *fn = real_slot(q.slot, &no_library);
    if (!fn) {
        reply(c, no_library ? NVML_ERROR_LIBRARY_NOT_FOUND : NVML_ERROR_NOT_SUPPORTED, 0, NULL, 0);
        return;
    }
    if (value) {
        /* room past the unsigned it is known to write, in case this driver writes more */
        uint64_t out[8] = {0};
        nvmlReturn_t r = ((value_fn)fn)(dev, (unsigned *)out);
        uint32_t v;
        memcpy(&v, out, sizeof v);
        reply(c, r, r == NVML_SUCCESS ? v : 0, NULL, 0);
        return;
    }
    if (string) {
        char *buf = gw_scratch(c, (size_t)q.capacity + STRING_SLACK); /* zeroed */
        if (!buf) {
            reply(c, NVML_ERROR_MEMORY, 0, NULL, 0);
            return;
        }
        nvmlReturn_t r = ((string_fn)fn)(dev, buf, q.capacity);
        buf[q.capacity - 1] = 0;
        size_t n = strlen(buf) + 1;
        if (r == NVML_SUCCESS)
            reply(c, r, (uint32_t)n, buf, n);
        else
            reply(c, r, 0, NULL, 0);
        return;
    }
    unsigned count = q.capacity;
    void *entries = count ? gw_scratch(c, (size_t)count * GW_NVML_PROCESS_ENTRY_SIZE) : NULL;
    if (count && !entries) {
        reply(c, NVML_ERROR_MEMORY, 0, NULL, 0);
        return;
    }
    nvmlReturn_t r = gw_nvml_own_list((gw_nvml_list_fn)fn, GW_NVML_PROCESS_ENTRY_SIZE, dev, &count, entries);
    if (r == NVML_SUCCESS && count > q.capacity)
        r = NVML_ERROR_UNKNOWN; /* cannot happen by gw_nvml_own_list's rules: never more than asked */
    if (r == NVML_SUCCESS)
        reply(c, r, count, entries, (size_t)count * GW_NVML_PROCESS_ENTRY_SIZE);
    else
        reply(c, r, r == NVML_ERROR_INSUFFICIENT_SIZE ? count : 0, NULL, 0);
}
