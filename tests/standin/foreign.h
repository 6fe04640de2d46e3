/* TEST DOUBLE: gpuwire CPU stand-in driver. The kernels and globals a fat binary of code
 * with no host implementation declares (foreign.c). */
#ifndef GW_STANDIN_FOREIGN_H
#define GW_STANDIN_FOREIGN_H

#include "standin.h"

typedef struct sd_foreign_global {
    char *name;
    size_t size;
    uintptr_t addr; /* device memory, given at the first lookup; 0 until then */
} sd_foreign_global;

typedef struct sd_foreign {
    sd_kernel_desc *funcs; /* names only: no parameters known, no thread */
    size_t nfuncs;
    sd_foreign_global *globals;
    size_t nglobals;
} sd_foreign;

/* NULL: not a fat binary, or one that declares no kernel. */
sd_foreign *sd_foreign_parse(const void *image);
void sd_foreign_free(sd_foreign *f);
/* fn for each entry of a fat binary (kind 1 PTX, 2 ELF), unpacked; stops at fn's first
 * non-zero and returns it; -1 if image is not a fat binary. */
int sd_fatbin_each(const void *image, int (*fn)(int kind, const uint8_t *body, size_t len, void *arg), void *arg);

#endif
