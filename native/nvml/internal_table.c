/* NVML's private export table, as stock nvidia-smi asks for it through
 * nvmlInternalGetExportTable (issue 14; docs/export-tables.md, "NVML's
 * table"). One table is served, 6c3efec4-8fc9-4e6c-a327-ee696e12f7c4: word 0
 * its size in bytes, then one trampoline per slot, so each call knows its
 * slot. Slot 81 (index, char *buf, len: the short PCI bus id of device
 * `index`, as nvmlPciInfo_t.busIdLegacy) is answered here from the public
 * calls; 213..215 (running processes), 230 (host max PCIe generation), 231
 * (device, char *buf, len: the board part number) and 249 (sparse operation
 * mode) go to the worker, which calls the real NVML's slot (NVML_TABLE_CALL,
 * handlers/nvml_internal.c); 26 is nvidia-smi's log hook (fmt, "stdout",
 * line, function, ...) and answers SUCCESS touching nothing;
 * the GPU resets (20, 197) are refused; every other slot gives the answer
 * NVIDIA's own mock NVML gives (SUCCESS, a 0 count for a device), logged under
 * GPUWIRE_DEBUG with its number so a GPU run shows which slots nvidia-smi uses. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "nvml_client.h"

#define TABLE_WORDS 512 /* the size the mock NVML gives (0x1000 bytes): every word backed */
#define SLOT_LEGACY_BUS_ID 81
#define SLOT_PART_NUMBER 231
#define SLOT_LOG_HOOK 26
#define SLOT_PROCESSES_FIRST 213
#define SLOT_PROCESSES_LAST 215
#define SLOT_HOST_MAX_PCIE_GEN 230
#define SLOT_SPARSE_MODE 249
#define SLOT_GPU_RESET 20
#define SLOT_GPU_RESET_DONE 197
#define NAME_AT 32 /* a process entry's inline name, to its last byte */

/* The table's id as its 16 bytes lie in memory (the GUID's first three groups little-endian). */
static const unsigned char table_id[16] = {0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e,
                                           0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7, 0xc4};

static void id_text(const unsigned char *id, char out[37])
{
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", id[3], id[2], id[1],
             id[0], id[5], id[4], id[7], id[6], id[8], id[9], id[10], id[11], id[12], id[13], id[14], id[15]);
}

/* ---- the client's own device handles (for the mock's answer) ----
 * Asked once: handles are the session's ids and stay the same while it lasts. */

#define MAX_KNOWN 64
static nvmlDevice_t known[MAX_KNOWN];
static unsigned nknown;
static int known_ok;
static pthread_mutex_t known_lock = PTHREAD_MUTEX_INITIALIZER;

static int is_device_handle(uintptr_t v)
{
    if (!v)
        return 0;
    pthread_mutex_lock(&known_lock);
    if (!known_ok) {
        unsigned n = 0;
        if (nvmlDeviceGetCount_v2(&n) == NVML_SUCCESS) {
            nknown = 0;
            for (unsigned i = 0; i < n && nknown < MAX_KNOWN; i++)
                if (nvmlDeviceGetHandleByIndex_v2(i, &known[nknown]) == NVML_SUCCESS)
                    nknown++;
            known_ok = 1; /* a failed count is asked again next time (before nvmlInit, say) */
        }
    }
    int found = 0;
    for (unsigned i = 0; i < nknown && !found; i++)
        found = (uintptr_t)known[i] == v;
    pthread_mutex_unlock(&known_lock);
    return found;
}

/* ---- forwarded slots ---- */

enum slot_shape { SHAPE_VALUE, SHAPE_LIST, SHAPE_STRING };

/* A slot on the worker: a list slot's entries land in entries (room for
 * capacity entries), a string slot's bytes too (room for capacity bytes). */
static nvmlReturn_t forward(unsigned slot, nvmlDevice_t dev, enum slot_shape shape, uint32_t capacity,
                           uint32_t *value, void *entries)
{
    gw_req *q = gw_req_begin(GW_OP_NVML_TABLE_CALL);
    /* the device's server gets the worker's own id (several servers: servers.c) */
    int k = gw_nvml_handle_server((uint64_t)(uintptr_t)dev);
    uint64_t id = (uint64_t)(uintptr_t)dev & ~((uint64_t)0xf << 52);
    gw_put_fields(q, gw_nvml_table_call_req, {.slot = slot, .device = id, .capacity = capacity});
    int prev = gw_nvml_route_enter(dev ? k : -1);
    gw_rep *r;
    CUresult rc = gw_nvml_send(q, &r);
    gw_nvml_route_leave(prev);
    gw_nvml_table_call_rep v = {0};
    nvmlReturn_t res;
    if (rc != CUDA_SUCCESS) {
        res = gw_nvml_from_cu(rc);
    } else if (gw_get_fields(r, gw_nvml_table_call_rep, &v)) {
        res = NVML_ERROR_UNKNOWN;
    } else {
        res = (nvmlReturn_t)v.status;
        size_t left = gw_rep_left(r);
        /* the server's answer is checked like any input: a count within what
         * was asked, exactly that many entries, nothing for a value slot */
        if (res == NVML_SUCCESS && shape == SHAPE_LIST) {
            if (v.value > capacity || left != (size_t)v.value * GW_NVML_PROCESS_ENTRY_SIZE)
                res = NVML_ERROR_UNKNOWN;
            else if (v.value && gw_get_bytes(r, entries, left))
                res = NVML_ERROR_UNKNOWN;
        } else if (res == NVML_SUCCESS && shape == SHAPE_STRING) {
            /* a string with its NUL, within the buffer */
            if (!v.value || v.value > capacity || left != v.value || gw_get_bytes(r, entries, left))
                res = NVML_ERROR_UNKNOWN;
        } else if (left) {
            res = NVML_ERROR_UNKNOWN;
        }
        *value = v.value;
    }
    gw_rep_end(r);
    return res;
}

static nvmlReturn_t process_list(unsigned slot, nvmlDevice_t dev, unsigned *count, unsigned char *entries)
{
    if (!count || (*count && !entries))
        return NVML_ERROR_INVALID_ARGUMENT; /* as NVML's public process lists */
    /* a larger array holds the first NVML_TABLE_LIST_MAX (the server's own limit) */
    uint32_t cap = *count > GW_NVML_TABLE_LIST_MAX ? GW_NVML_TABLE_LIST_MAX : *count;
    uint32_t n = 0;
    nvmlReturn_t res = forward(slot, dev, SHAPE_LIST, cap, &n, entries);
    if (res == NVML_SUCCESS) {
        for (uint32_t i = 0; i < n; i++) /* names end inside their entry, whatever came */
            entries[(size_t)i * GW_NVML_PROCESS_ENTRY_SIZE + GW_NVML_PROCESS_ENTRY_SIZE - 1] = 0;
        *count = n;
    } else {
        /* never the caller's capacity left in place: nvidia-smi would print that many rows */
        *count = res == NVML_ERROR_INSUFFICIENT_SIZE ? n : 0;
    }
    return res;
}

static nvmlReturn_t device_value(unsigned slot, nvmlDevice_t dev, unsigned *out)
{
    if (!out)
        return NVML_ERROR_INVALID_ARGUMENT;
    uint32_t v = 0;
    nvmlReturn_t res = forward(slot, dev, SHAPE_VALUE, 0, &v, NULL);
    if (res == NVML_SUCCESS)
        *out = v;
    return res;
}

/* A string slot on the worker into the caller's buf of len bytes: always
 * NUL-terminated when len allows; nothing else of buf is written. */
static nvmlReturn_t device_string(unsigned slot, nvmlDevice_t dev, char *buf, unsigned len)
{
    if (!buf || !len)
        return NVML_ERROR_INVALID_ARGUMENT;
    char text[GW_NVML_TABLE_STRING_MAX];
    uint32_t cap = len > GW_NVML_TABLE_STRING_MAX ? GW_NVML_TABLE_STRING_MAX : (uint32_t)len;
    uint32_t n = 0;
    nvmlReturn_t res = forward(slot, dev, SHAPE_STRING, cap, &n, text);
    if (res == NVML_SUCCESS) {
        text[n - 1] = 0; /* forward checked 1 <= n <= cap */
        memcpy(buf, text, strlen(text) + 1);
    }
    return res;
}

/* Slot 81: the short bus id ("0000:00:06.0") of the device at index. */
static nvmlReturn_t legacy_bus_id(unsigned index, char *buf, unsigned len)
{
    if (!buf || !len)
        return NVML_ERROR_INVALID_ARGUMENT;
    nvmlDevice_t dev;
    nvmlReturn_t res = nvmlDeviceGetHandleByIndex_v2(index, &dev);
    nvmlPciInfo_t pci;
    if (res == NVML_SUCCESS)
        res = nvmlDeviceGetPciInfo_v3(dev, &pci);
    if (res != NVML_SUCCESS)
        return res;
    size_t n = strnlen(pci.busIdLegacy, sizeof pci.busIdLegacy);
    if (n >= len) { /* cut to fit, still terminated */
        n = len - 1;
        res = NVML_ERROR_INSUFFICIENT_SIZE;
    }
    memcpy(buf, pci.busIdLegacy, n);
    buf[n] = 0;
    return res;
}

/* ---- every slot ---- */

static int slot_debug_seen(unsigned slot)
{
    static atomic_uchar seen[TABLE_WORDS];
    return atomic_exchange(&seen[slot], 1);
}

static nvmlReturn_t answer_slot(unsigned slot, uintptr_t a0, uintptr_t a1, uintptr_t a2, uintptr_t a3)
{
    nvmlReturn_t res;
    const char *how = "forwarded";
    if (slot == SLOT_LEGACY_BUS_ID) {
        how = "answered from the device's PCI info";
        /* the lengths are unsigned ints: a register's upper half is not part of them */
        res = legacy_bus_id((unsigned)a0, (char *)a1, (unsigned)a2);
    } else if (slot == SLOT_PART_NUMBER) {
        res = device_string(slot, (nvmlDevice_t)a0, (char *)a1, (unsigned)a2);
    } else if (slot == SLOT_LOG_HOOK) {
        how = "nvidia-smi's log hook: nothing done";
        res = NVML_SUCCESS;
    } else if (slot >= SLOT_PROCESSES_FIRST && slot <= SLOT_PROCESSES_LAST) {
        res = process_list(slot, (nvmlDevice_t)a0, (unsigned *)a1, (unsigned char *)a2);
    } else if (slot == SLOT_HOST_MAX_PCIE_GEN || slot == SLOT_SPARSE_MODE) {
        res = device_value(slot, (nvmlDevice_t)a0, (unsigned *)a1);
    } else if (slot == SLOT_GPU_RESET || slot == SLOT_GPU_RESET_DONE) {
        /* a client never resets the server's GPU, nor is told it did */
        how = "refused (GPU reset)";
        res = NVML_ERROR_NO_PERMISSION;
    } else {
        /* the mock's answer: nvidia-smi's `topo -m` gives up on any error here */
        how = "unknown: the mock's answer";
        if (a1 && is_device_handle(a0)) {
            *(unsigned *)a1 = 0;
            how = "unknown: the mock's answer, 0 written to argument 1";
        }
        res = NVML_SUCCESS;
    }
    int level = gw_debug_level();
    if (level >= 2 || (level >= 1 && !slot_debug_seen(slot)))
        gw_log("NVML table slot %u (0x%lx, 0x%lx, 0x%lx, 0x%lx): %s -> %d", slot, (unsigned long)a0,
               (unsigned long)a1, (unsigned long)a2, (unsigned long)a3, how, (int)res);
    return res;
}

/* One trampoline per word, numbered i*64 + j*8 + k; word 0 holds the size instead. */
#define TRAMPOLINE(i, j, k)                                                                                    \
    static nvmlReturn_t slot_##i##j##k(uintptr_t a0, uintptr_t a1, uintptr_t a2, uintptr_t a3)                 \
    {                                                                                                          \
        return answer_slot((i) * 64 + (j) * 8 + (k), a0, a1, a2, a3);                                          \
    }
#define ADDRESS(i, j, k) (const void *)slot_##i##j##k,
#define EIGHT(M, i, j) M(i, j, 0) M(i, j, 1) M(i, j, 2) M(i, j, 3) M(i, j, 4) M(i, j, 5) M(i, j, 6) M(i, j, 7)
#define SIXTY_FOUR(M, i)                                                                                       \
    EIGHT(M, i, 0) EIGHT(M, i, 1) EIGHT(M, i, 2) EIGHT(M, i, 3) EIGHT(M, i, 4) EIGHT(M, i, 5) EIGHT(M, i, 6)   \
        EIGHT(M, i, 7)
#define ALL(M)                                                                                                 \
    SIXTY_FOUR(M, 0) SIXTY_FOUR(M, 1) SIXTY_FOUR(M, 2) SIXTY_FOUR(M, 3) SIXTY_FOUR(M, 4) SIXTY_FOUR(M, 5)      \
        SIXTY_FOUR(M, 6) SIXTY_FOUR(M, 7)

ALL(TRAMPOLINE)
static const void *const trampolines[TABLE_WORDS] = {ALL(ADDRESS)};

static const void *table[TABLE_WORDS];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void)
{
    table[0] = (const void *)(uintptr_t)sizeof table;
    for (unsigned i = 1; i < TABLE_WORDS; i++)
        table[i] = trampolines[i];
}

/* Not in nvml.h: NVML's own prototype has a 16-byte id struct where this has bytes. */
nvmlReturn_t DECLDIR nvmlInternalGetExportTable(const void **out, const unsigned char *id);
nvmlReturn_t DECLDIR nvmlInternalGetExportTable(const void **out, const unsigned char *id)
{
    if (!out || !id)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (memcmp(id, table_id, sizeof table_id)) {
        *out = NULL;
        if (gw_debug()) {
            char text[37];
            id_text(id, text);
            gw_log("unknown NVML export table %s: NVML_ERROR_NOT_SUPPORTED", text);
        }
        return NVML_ERROR_NOT_SUPPORTED;
    }
    pthread_once(&table_once, build_table);
    *out = table;
    return NVML_SUCCESS;
}
