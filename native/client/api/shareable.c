/* Shareable handles of the virtual memory API and of memory pools between an
 * application's processes: cuMemExportToShareableHandle /
 * cuMemImportFromShareableHandle and cuMemPoolExportToShareableHandle /
 * cuMemPoolImportFromShareableHandle with
 * CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR (NVIDIA's memMapIPCDrv and
 * streamOrderedAllocationIPC, NCCL between processes); and
 * cuMemPoolImportPointer, whose pointer the client records as device memory.
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
 * the server brokers them. Formats: SHAREABLE_EXPORT, SHAREABLE_IMPORT,
 * SHAREABLE_POOL_EXPORT, SHAREABLE_POOL_IMPORT in codegen/protocol.txt. */
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

/* The record of a fresh export (reply fields server, session, id) as the
 * application's fd, written where the driver writes its int. */
static CUresult hand_out(const char *call, void *out, uint64_t server, uint64_t session, uint64_t id)
{
    fd_record rec;
    memset(&rec, 0, sizeof rec);
    memcpy(rec.magic, RECORD_MAGIC, sizeof rec.magic);
    rec.server = server;
    rec.session = session;
    rec.id = id;
    int fd = record_fd(&rec);
    if (fd < 0) {
        gw_log("%s: could not make the local file descriptor: CUDA_ERROR_OUT_OF_MEMORY", call);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    memcpy(out, &fd, sizeof fd);
    return CUDA_SUCCESS;
}

/* The record the application's fd holds: 0, or -1 (logged) if it is none. */
/* An fd that holds no record: the real driver answers CUDA_ERROR_UNKNOWN for
 * an fd no export made (a memfd, a pipe: gpu-check's vmm_ipc_forged on the
 * H100, 2026-12-07), so that is what the application gets here too. */
static int take_record(const char *call, void *osHandle, fd_record *rec)
{
    intptr_t v = (intptr_t)osHandle; /* the fd travels as the pointer's value */
    if (v >= 0 && v <= INT32_MAX && read_record((int)v, rec) == 0)
        return 0;
    gw_log("%s: fd %ld is not a handle a gpuwire client exported: CUDA_ERROR_UNKNOWN", call, (long)v);
    return -1;
}

CUresult CUDAAPI cuMemExportToShareableHandle(void *shareableHandle, CUmemGenericAllocationHandle handle,
                                             CUmemAllocationHandleType handleType, unsigned long long flags)
{
    if (handleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return refuse_type("cuMemExportToShareableHandle", handleType);
    if (!shareableHandle)
        return CUDA_ERROR_INVALID_VALUE;
    int prev = gw_route_enter(gw_allocation_handle_server((uint64_t)handle)); /* several servers: the handle's */
    gw_req *q = gw_req_begin(GW_OP_cuMemExportToShareableHandle);
    gw_put_fields(q, gw_shareable_export_req,
                  {.handle = (uint64_t)handle, .handle_type = (uint32_t)handleType, .flags = (uint64_t)flags});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    gw_route_leave(prev);
    gw_shareable_export_rep rep = {0};
    if (rc == CUDA_SUCCESS)
        rc = gw_get_fields(r, gw_shareable_export_rep, &rep) ? gw_rep_status(r, rc) : (CUresult)rep.result;
    gw_rep_end(r);
    if (rc != CUDA_SUCCESS)
        return rc;
    return hand_out("cuMemExportToShareableHandle", shareableHandle, rep.server, rep.session, rep.id);
}

CUresult CUDAAPI cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *handle, void *osHandle,
                                               CUmemAllocationHandleType shHandleType)
{
    if (shHandleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return refuse_type("cuMemImportFromShareableHandle", shHandleType);
    fd_record rec;
    if (!handle)
        return CUDA_ERROR_INVALID_VALUE;
    if (take_record("cuMemImportFromShareableHandle", osHandle, &rec) != 0)
        return CUDA_ERROR_UNKNOWN;
    int from = gw_route_now(); /* the server that imports it: the calling thread's */
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
        *handle = (CUmemGenericAllocationHandle)gw_allocation_handle_on(rep.handle, from);
    return rc;
}

CUresult CUDAAPI cuMemPoolExportToShareableHandle(void *handle_out, CUmemoryPool pool, CUmemAllocationHandleType handleType,
                                                 unsigned long long flags)
{
    if (handleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return refuse_type("cuMemPoolExportToShareableHandle", handleType);
    if (!handle_out)
        return CUDA_ERROR_INVALID_VALUE;
    gw_req *q = gw_req_begin(GW_OP_cuMemPoolExportToShareableHandle);
    gw_put_fields(q, gw_shareable_pool_export_req,
                  {.pool = (uint64_t)(uintptr_t)pool, .handle_type = (uint32_t)handleType, .flags = (uint64_t)flags});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    gw_shareable_pool_export_rep rep = {0};
    if (rc == CUDA_SUCCESS)
        rc = gw_get_fields(r, gw_shareable_pool_export_rep, &rep) ? gw_rep_status(r, rc) : (CUresult)rep.result;
    gw_rep_end(r);
    if (rc != CUDA_SUCCESS)
        return rc;
    return hand_out("cuMemPoolExportToShareableHandle", handle_out, rep.server, rep.session, rep.id);
}

CUresult CUDAAPI cuMemPoolImportFromShareableHandle(CUmemoryPool *pool_out, void *handle,
                                                   CUmemAllocationHandleType handleType, unsigned long long flags)
{
    if (handleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return refuse_type("cuMemPoolImportFromShareableHandle", handleType);
    fd_record rec;
    if (!pool_out)
        return CUDA_ERROR_INVALID_VALUE;
    if (take_record("cuMemPoolImportFromShareableHandle", handle, &rec) != 0)
        return CUDA_ERROR_UNKNOWN; /* as an allocation's import (not checked against the driver for pools) */
    gw_req *q = gw_req_begin(GW_OP_cuMemPoolImportFromShareableHandle);
    gw_put_fields(q, gw_shareable_pool_import_req,
                  {.handle_type = (uint32_t)handleType, .flags = (uint64_t)flags, .server = rec.server,
                   .session = rec.session, .id = rec.id});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    gw_shareable_pool_import_rep rep = {0};
    if (rc == CUDA_SUCCESS)
        rc = gw_get_fields(r, gw_shareable_pool_import_rep, &rep) ? gw_rep_status(r, rc) : (CUresult)rep.result;
    gw_rep_end(r);
    if (rc == CUDA_SUCCESS)
        *pool_out = (CUmemoryPool)(uintptr_t)rep.pool; /* the worker's id, as cuMemPoolCreate gives */
    return rc;
}

/* Another process's pool allocation, mapped here: device memory for copies
 * through unified addresses, as cuMemAllocFromPoolAsync's is (its size asked
 * of the driver: the export data is opaque). */
CUresult CUDAAPI cuMemPoolImportPointer(CUdeviceptr *ptr_out, CUmemoryPool pool, CUmemPoolPtrExportData *shareData)
{
    CUresult rc = gwf_cuMemPoolImportPointer(ptr_out, pool, shareData);
    if (rc != CUDA_SUCCESS)
        return rc;
    CUdeviceptr base = 0;
    size_t size = 0;
    if (cuMemGetAddressRange_v2(&base, &size, *ptr_out) == CUDA_SUCCESS && base == *ptr_out && size)
        gw_mem_track_device(base, size);
    else
        gw_log("cuMemPoolImportPointer: the size of %#llx is unknown: copies through its unified address "
               "may take it for host memory", (unsigned long long)*ptr_out);
    return rc;
}
