/* What a CUDA cubin (an NVIDIA ELF) says about its entry kernels: parameter layouts,
 * static shared memory, registers, launch bounds. Read from the image itself, so the
 * client can know a kernel's layout without asking the driver. See cubin_info.c for the
 * format notes and how each fact was checked against real nvcc/NVRTC output. */
#ifndef GW_CUBIN_INFO_H
#define GW_CUBIN_INFO_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_cubin_kernel {
    char *name;              /* the entry function's (mangled) name */
    uint32_t nparams;        /* number of parameters */
    uint32_t *pairs;         /* nparams x (offset, size) in bytes, in parameter-ordinal order; NULL if nparams == 0 */
    uint32_t param_bytes;    /* EIATTR_CBANK_PARAM_SIZE if present, else end of the last parameter */
    uint32_t static_shared;  /* size of section .nv.shared.<name> (0 if none), less the 1 KiB reserved
                                window that linked sm_9x cubins put in front of it: what the driver
                                reports as CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES; UINT32_MAX: unknown
                                (sm_100 and later, not checked against a driver) */
    uint32_t num_regs;       /* registers per thread: EIATTR_REGCOUNT of .nv.info, else bits 24..31 of sh_info
                                of .text.<name> (which CUDA 13 leaves 0 for sm_90+) */
    uint32_t max_threads;    /* product of EIATTR_MAX_THREADS (maxntid) x,y,z if present, else 0 */
} gw_cubin_kernel;

typedef struct gw_cubin_info {
    uint32_t n;              /* entry kernels */
    gw_cubin_kernel *k;
    uint32_t sm;             /* the SM the cubin is for, e.g. 90 (from e_flags); sm_90a reads as 90 too */
} gw_cubin_info;

/* 0: `image` (size bytes, or if size == 0, the ELF's own extent computed from its headers) is a 64-bit
 * little-endian CUDA ELF (e_machine 190) and every entry kernel's layout was read; -1 otherwise
 * (not a cubin, malformed, truncated, anything unexpected: never guess). *out is zeroed on -1. */
__attribute__((visibility("hidden"))) int gw_cubin_parse(const void *image, size_t size, gw_cubin_info *out);
__attribute__((visibility("hidden"))) void gw_cubin_free(gw_cubin_info *info);

#endif
