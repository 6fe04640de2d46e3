/* The cuGetProcAddress table (generated into native/generated/client_procs.c). */
#ifndef GW_PROCS_H
#define GW_PROCS_H

typedef struct gw_proc {
    const char *name; /* API name as applications ask for it, e.g. "cuMemAlloc" */
    int version;      /* first CUDA version (1000*major + 10*minor) with this variant */
    int ptds;         /* 1: the per-thread-default-stream variant */
    void *fn;         /* the exported symbol implementing it */
} gw_proc;

extern const gw_proc gw_procs[];
extern const unsigned gw_procs_count;

#endif
