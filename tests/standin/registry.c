/* TEST DOUBLE: gpuwire CPU stand-in driver. The registry of host-implemented kernels (the
 * tables in kernels_*.c) and the helpers those kernels use to read parameters and to touch
 * device memory only through checked addresses. */
#include "standin.h"

#include <stdio.h>
#include <string.h>

typedef struct table {
    const sd_kernel_desc *k;
    const size_t *n;
} table;

static const table g_tables[] = {
    {sd_kernels_programs, &sd_kernels_programs_n},
    {sd_kernels_multi_module, &sd_kernels_multi_module_n},
    {sd_kernels_driver_api, &sd_kernels_driver_api_n},
};
#define NTABLES (sizeof g_tables / sizeof g_tables[0])

size_t sd_registry_count(void)
{
    size_t n = 0;
    for (size_t t = 0; t < NTABLES; t++)
        n += *g_tables[t].n;
    return n;
}

const sd_kernel_desc *sd_registry_at(size_t i)
{
    for (size_t t = 0; t < NTABLES; t++) {
        if (i < *g_tables[t].n)
            return &g_tables[t].k[i];
        i -= *g_tables[t].n;
    }
    return NULL;
}

const sd_kernel_desc *sd_registry_find(const char *name)
{
    for (size_t i = 0, n = sd_registry_count(); i < n; i++) {
        const sd_kernel_desc *d = sd_registry_at(i);
        if (strcmp(d->name, name) == 0)
            return d;
    }
    return NULL;
}

size_t sd_params_size(const sd_kernel_desc *d)
{
    size_t end = 0;
    for (unsigned int i = 0; i < d->nparams; i++) {
        size_t e = (size_t)d->params[i].offset + d->params[i].size;
        if (e > end)
            end = e;
    }
    return end;
}

void *sd_at(sd_exec *x, uint64_t a, size_t len)
{
    const sd_alloc *al = a <= UINTPTR_MAX ? sd_find((uintptr_t)a, len) : NULL;
    if (!al && a <= UINTPTR_MAX && sd_host_mapped_range((uintptr_t)a, len))
        return (void *)(uintptr_t)a; /* page-locked memory mapped for every device (hostmem.c) */
    if (!al && a <= UINTPTR_MAX && sd_vmm_range((uintptr_t)a, len, x->ctx))
        return (void *)(uintptr_t)a; /* cuMemMap'd memory its device was given access to (vmm.c) */
    if (!al || (x->ctx && !sd_peer_reaches(x->ctx, al->ctx))) {
        x->fault = 1;
        return NULL;
    }
    return (void *)(uintptr_t)a;
}

void sd_arg(const sd_exec *x, unsigned int i, void *out, size_t len)
{
    const sd_param *p = &x->desc->params[i];
    memset(out, 0, len);
    memcpy(out, x->params + p->offset, len < p->size ? len : p->size);
}

/* For the self-test and the layout check: the registry as text lines
 * "name nparams off:size ...". Not a driver entry point. */
SD_API size_t gpuwire_standin_registry_dump(char *buf, size_t cap)
{
    size_t used = 0;
    for (size_t i = 0, n = sd_registry_count(); i < n; i++) {
        const sd_kernel_desc *d = sd_registry_at(i);
        char line[512];
        size_t l = (size_t)snprintf(line, sizeof line, "%s %u", d->name, d->nparams);
        for (unsigned int k = 0; k < d->nparams && l < sizeof line; k++)
            l += (size_t)snprintf(line + l, sizeof line - l, " %u:%u", d->params[k].offset, d->params[k].size);
        if (l < sizeof line - 1)
            line[l++] = '\n';
        if (buf && used + l < cap)
            memcpy(buf + used, line, l);
        used += l;
    }
    if (buf && cap)
        buf[used < cap ? used : cap - 1] = '\0';
    return used + 1;
}
