/* Shareable handles of the virtual memory API between an application's
 * processes: cuMemExportToShareableHandle / cuMemImportFromShareableHandle
 * with CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR (NVIDIA's memMapIPCDrv, NCCL
 * between processes).
 *
 * The driver's fd lives in the exporting process's worker on the server. What
 * the application gets here is a local fd of its own: a sealed memfd holding
 * a small record (this server, the exporting session, the handle's id), which
 * it may pass to another process with SCM_RIGHTS as it would the real one.
 * The importing process's client reads the record and sends it to its worker,
 * which takes the real fd from the exporting worker when both are sessions of
 * one tenant (worker/handlers/shareable.c). Closing the memfd is the
 * application's business, as closing the driver's fd would be.
 *
 * Fabric and Win32 handles are refused (CUDA_ERROR_NOT_SUPPORTED): nothing on
 * the server brokers them. Formats: SHAREABLE_EXPORT, SHAREABLE_IMPORT in
 * codegen/protocol.txt. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"

#define RECORD_MAGIC "GWSHFD1" /* 8 bytes with its NUL */

/* What the application's fd holds (native byte order: both ends are on one machine). */
typedef struct fd_record {
    char magic[8];
    uint64_t server, session, id;
} fd_record;

static CUresult refuse_type(const char *call, CUmemAllocationHandleType t)
{
    if (t == CU_MEM_HANDLE_TYPE_FABRIC || t == CU_MEM_HANDLE_TYPE_WIN32 || t == CU_MEM_HANDLE_TYPE_WIN32_KMT) {
        static int said[16];
        if ((unsigned)t < 16 && !__atomic_exchange_n(&said[t], 1, __ATOMIC_RELAXED))
            gw_log("%s: handle type %d is not brokered between processes by gpuwire (only POSIX file "
                   "descriptors are): CUDA_ERROR_NOT_SUPPORTED", call, (int)t);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    return CUDA_ERROR_INVALID_VALUE; /* not a handle type at all */
}

/* A sealed memfd holding the record, or -1. Not close-on-exec: an application
 * may hand it to a child it executes by inheritance rather than SCM_RIGHTS. */
static int record_fd(const fd_record *rec)
{
    int fd = memfd_create("gpuwire-shareable-handle", MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    if (pwrite(fd, rec, sizeof *rec, 0) != (ssize_t)sizeof *rec ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The record an fd holds: 0, or -1 if it is not one of ours (any other file,
 * a pipe, a socket, a closed fd, the wrong size or magic). */
static int read_record(int fd, fd_record *rec)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != (off_t)sizeof *rec)
        return -1;
    if (pread(fd, rec, sizeof *rec, 0) != (ssize_t)sizeof *rec)
        return -1;
    return memcmp(rec->magic, RECORD_MAGIC, sizeof rec->magic) == 0 ? 0 : -1;
}

CUresult CUDAAPI cuMemExportToShareableHandle(void *shareableHandle, CUmemGenericAllocationHandle handle,
                                             CUmemAllocationHandleType handleType, unsigned long long flags)
{
    if (handleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return refuse_type("cuMemExportToShareableHandle", handleType);
    if (!shareableHandle)
        return CUDA_ERROR_INVALID_VALUE;
    gw_req *q = gw_req_begin(GW_OP_cuMemExportToShareableHandle);
    gw_put_fields(q, gw_shareable_export_req,
                  {.handle = (uint64_t)handle, .handle_type = (uint32_t)handleType, .flags = (uint64_t)flags});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    gw_shareable_export_rep rep = {0};
    if (rc == CUDA_SUCCESS)
        rc = gw_get_fields(r, gw_shareable_export_rep, &rep) ? gw_rep_status(r, rc) : (CUresult)rep.result;
    gw_rep_end(r);
    if (rc != CUDA_SUCCESS)
        return rc;
    fd_record rec;
    memset(&rec, 0, sizeof rec);
    memcpy(rec.magic, RECORD_MAGIC, sizeof rec.magic);
    rec.server = rep.server;
    rec.session = rep.session;
    rec.id = rep.id;
    int fd = record_fd(&rec);
    if (fd < 0) {
        gw_log("cuMemExportToShareableHandle: could not make the local file descriptor: CUDA_ERROR_OUT_OF_MEMORY");
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    memcpy(shareableHandle, &fd, sizeof fd); /* an int, as the driver writes it */
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *handle, void *osHandle,
                                               CUmemAllocationHandleType shHandleType)
{
    if (shHandleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return refuse_type("cuMemImportFromShareableHandle", shHandleType);
    if (!handle)
        return CUDA_ERROR_INVALID_VALUE;
    intptr_t v = (intptr_t)osHandle; /* the fd travels as the pointer's value */
    fd_record rec;
    if (v < 0 || v > INT32_MAX || read_record((int)v, &rec) != 0) {
        gw_log("cuMemImportFromShareableHandle: fd %ld is not a handle a gpuwire client exported: "
               "CUDA_ERROR_INVALID_VALUE", (long)v);
        return CUDA_ERROR_INVALID_VALUE;
    }
    gw_req *q = gw_req_begin(GW_OP_cuMemImportFromShareableHandle);
    gw_put_fields(q, gw_shareable_import_req,
                  {.handle_type = (uint32_t)shHandleType, .server = rec.server, .session = rec.session, .id = rec.id});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    gw_shareable_import_rep rep = {0};
    if (rc == CUDA_SUCCESS)
        rc = gw_get_fields(r, gw_shareable_import_rep, &rep) ? gw_rep_status(r, rc) : (CUresult)rep.result;
    gw_rep_end(r);
    if (rc == CUDA_SUCCESS)
        *handle = (CUmemGenericAllocationHandle)rep.handle;
    return rc;
}
