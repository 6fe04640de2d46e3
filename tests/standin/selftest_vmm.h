/* TEST DOUBLE self-test of the stand-in's virtual memory API (vmm.c), included by
 * selftest.c: reserve, create, map, access, copies through the mapping, the
 * driver's errors, and a POSIX file-descriptor handle exported and imported again
 * (the import maps the same bytes); and stream-ordered allocation from a pool
 * with POSIX fd handles, its pool and pointer exported and imported again
 * (mempool.c). Needs a current context (test_context). */
#ifndef GW_STANDIN_SELFTEST_VMM_H
#define GW_STANDIN_SELFTEST_VMM_H

#include <sys/mman.h>
#include <unistd.h>

#include "selftest.h"

static const CUdeviceptr VMM_NOWHERE = 0x10; /* no reservation, no mapping */

static void test_vmm(void)
{
    int v = 0;
    OK(F(cuDeviceGetAttribute)(&v, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, 0));
    TRUE(v == 1);
    OK(F(cuDeviceGetAttribute)(&v, CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, 0));
    TRUE(v == 1);
    OK(F(cuDeviceGetAttribute)(&v, CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_FABRIC_SUPPORTED, 0));
    TRUE(v == 0);

    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    size_t g = 0;
    OK(F(cuMemGetAllocationGranularity)(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
    TRUE(g == (size_t)2 << 20);
    EXPECT(F(cuMemGetAllocationGranularity)(&g, &prop, (CUmemAllocationGranularity_flags)7), CUDA_ERROR_INVALID_VALUE);
    prop.location.id = 5;
    EXPECT(F(cuMemGetAllocationGranularity)(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM), CUDA_ERROR_INVALID_DEVICE);
    EXPECT(F(cuMemCreate)(&(CUmemGenericAllocationHandle){0}, g, &prop, 0), CUDA_ERROR_INVALID_DEVICE);
    prop.location.id = 0;

    /* the driver's refusals */
    CUmemGenericAllocationHandle h = 0, plain = 0, imp = 0;
    EXPECT(F(cuMemCreate)(&h, g + 4096, &prop, 0), CUDA_ERROR_INVALID_VALUE); /* not whole granules */
    EXPECT(F(cuMemCreate)(&h, 0, &prop, 0), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuMemCreate)(&h, g, &prop, 1), CUDA_ERROR_INVALID_VALUE);
    prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_FABRIC;
    EXPECT(F(cuMemCreate)(&h, g, &prop, 0), CUDA_ERROR_NOT_SUPPORTED);
    prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_NONE;
    OK(F(cuMemCreate)(&plain, g, &prop, 0));
    prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    OK(F(cuMemCreate)(&h, 2 * g, &prop, 0));
    CUmemAllocationProp got;
    OK(F(cuMemGetAllocationPropertiesFromHandle)(&got, h));
    TRUE(got.requestedHandleTypes == CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR && got.location.id == 0 &&
         got.type == CU_MEM_ALLOCATION_TYPE_PINNED);

    CUdeviceptr va = 0, vb = 0;
    EXPECT(F(cuMemAddressReserve)(&va, 2 * g + 100, 0, 0, 0), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuMemAddressReserve)(&va, 2 * g, 3, 0, 0), CUDA_ERROR_INVALID_VALUE);
    OK(F(cuMemAddressReserve)(&va, 2 * g, 0, 0, 0));
    OK(F(cuMemAddressReserve)(&vb, 2 * g, 0, 0, 0));
    TRUE(va % g == 0 && vb % g == 0 && va != vb);
    EXPECT(F(cuMemMap)(va + 4096, g, 0, h, 0), CUDA_ERROR_INVALID_VALUE);  /* unaligned address */
    EXPECT(F(cuMemMap)(va, 3 * g, 0, h, 0), CUDA_ERROR_INVALID_VALUE);     /* past the allocation */
    EXPECT(F(cuMemMap)(va, g, 0, 0xdead000, 0), CUDA_ERROR_INVALID_VALUE); /* not a handle */
    EXPECT(F(cuMemMap)(VMM_NOWHERE, g, 0, h, 0), CUDA_ERROR_INVALID_VALUE);      /* not reserved */
    OK(F(cuMemMap)(va, 2 * g, 0, h, 0));
    EXPECT(F(cuMemMap)(va, g, 0, plain, 0), CUDA_ERROR_INVALID_VALUE);     /* already mapped */

    /* no access yet: copies do not reach it */
    unsigned char buf[4096], back[4096];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 13 + 5);
    EXPECT(F(cuMemcpyHtoD_v2)(va + g, buf, sizeof buf), CUDA_ERROR_INVALID_VALUE);
    unsigned long long flags = 99;
    CUmemLocation loc = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
    OK(F(cuMemGetAccess)(&flags, &loc, va));
    TRUE(flags == CU_MEM_ACCESS_FLAGS_PROT_NONE);
    CUmemAccessDesc acc = {{CU_MEM_LOCATION_TYPE_DEVICE, 0}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    EXPECT(F(cuMemSetAccess)(va, 3 * g, &acc, 1), CUDA_ERROR_INVALID_VALUE); /* not all mapped */
    CUmemAccessDesc bad = {{CU_MEM_LOCATION_TYPE_DEVICE, 7}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    EXPECT(F(cuMemSetAccess)(va, 2 * g, &bad, 1), CUDA_ERROR_INVALID_DEVICE);
    OK(F(cuMemSetAccess)(va, 2 * g, &acc, 1));
    OK(F(cuMemGetAccess)(&flags, &loc, va + g));
    TRUE(flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
    OK(F(cuMemcpyHtoD_v2)(va + g, buf, sizeof buf));
    memset(back, 0, sizeof back);
    OK(F(cuMemcpyDtoH_v2)(back, va + g, sizeof back));
    TRUE(memcmp(buf, back, sizeof buf) == 0);

    /* exported as a file descriptor and imported again: the same bytes */
    int fd = -1;
    EXPECT(F(cuMemExportToShareableHandle)(&fd, plain, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0),
           CUDA_ERROR_INVALID_VALUE); /* not created exportable */
    EXPECT(F(cuMemExportToShareableHandle)(&fd, h, CU_MEM_HANDLE_TYPE_FABRIC, 0), CUDA_ERROR_NOT_SUPPORTED);
    OK(F(cuMemExportToShareableHandle)(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
    TRUE(fd >= 0);
    int forged = memfd_create("not-an-allocation", 0);
    TRUE(forged >= 0 && ftruncate(forged, (off_t)(2 * g)) == 0);
    EXPECT(F(cuMemImportFromShareableHandle)(&imp, (void *)(intptr_t)forged, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
           CUDA_ERROR_UNKNOWN); /* the H100's driver's answer for an fd no export made */
    EXPECT(F(cuMemImportFromShareableHandle)(&imp, (void *)(intptr_t)-1, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
           CUDA_ERROR_INVALID_VALUE);
    close(forged);
    OK(F(cuMemImportFromShareableHandle)(&imp, (void *)(intptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
    close(fd); /* the import holds its own */
    OK(F(cuMemMap)(vb, 2 * g, 0, imp, 0));
    OK(F(cuMemSetAccess)(vb, 2 * g, &acc, 1));
    memset(back, 0, sizeof back);
    OK(F(cuMemcpyDtoH_v2)(back, vb + g, sizeof back));
    TRUE(memcmp(buf, back, sizeof buf) == 0);
    OK(F(cuMemsetD8_v2)(vb + g, 0x5a, 16)); /* written through one mapping, seen through the other */
    OK(F(cuMemcpyDtoH_v2)(back, va + g, 16));
    TRUE(back[0] == 0x5a && back[15] == 0x5a);

    /* handles: released while mapped, retained back from the address */
    OK(F(cuMemRelease)(h));
    EXPECT(F(cuMemRelease)(h), CUDA_ERROR_INVALID_VALUE);
    CUmemGenericAllocationHandle again = 0;
    OK(F(cuMemRetainAllocationHandle)(&again, (void *)(uintptr_t)(va + 100)));
    TRUE(again == h);
    EXPECT(F(cuMemRetainAllocationHandle)(&again, (void *)(uintptr_t)VMM_NOWHERE), CUDA_ERROR_INVALID_VALUE);
    OK(F(cuMemRelease)(again));
    EXPECT(F(cuMemAddressFree)(va, 2 * g), CUDA_ERROR_INVALID_VALUE); /* still mapped */
    EXPECT(F(cuMemUnmap)(va, g), CUDA_ERROR_INVALID_VALUE);           /* half a mapping */
    OK(F(cuMemUnmap)(va, 2 * g));
    OK(F(cuMemUnmap)(vb, 2 * g));
    EXPECT(F(cuMemcpyDtoH_v2)(back, vb + g, 16), CUDA_ERROR_INVALID_VALUE);
    OK(F(cuMemRelease)(imp));
    OK(F(cuMemRelease)(plain));
    EXPECT(F(cuMemAddressFree)(va, g), CUDA_ERROR_INVALID_VALUE); /* not the reservation's size */
    OK(F(cuMemAddressFree)(va, 2 * g));
    OK(F(cuMemAddressFree)(vb, 2 * g));
}

static void test_pool_ipc(void)
{
    int v = 0;
    OK(F(cuDeviceGetAttribute)(&v, CU_DEVICE_ATTRIBUTE_MEMPOOL_SUPPORTED_HANDLE_TYPES, 0));
    TRUE(v == CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
    CUdeviceptr d = 0;
    OK(F(cuMemAllocAsync)(&d, 1000, 0)); /* the device's current pool */
    cuuint64_t used = 0;
    CUmemoryPool def;
    OK(F(cuDeviceGetMemPool)(&def, 0));
    OK(F(cuMemPoolGetAttribute)(def, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used));
    TRUE(used == 4096);
    OK(F(cuMemFreeAsync)(d, 0));
    EXPECT(F(cuMemFreeAsync)(d, 0), CUDA_ERROR_INVALID_VALUE);
    OK(F(cuMemPoolGetAttribute)(def, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used));
    TRUE(used == 0);

    CUmemPoolProps pp;
    memset(&pp, 0, sizeof pp);
    pp.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    pp.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    pp.handleTypes = CU_MEM_HANDLE_TYPE_FABRIC;
    CUmemoryPool pool, plain, imp;
    EXPECT(F(cuMemPoolCreate)(&pool, &pp), CUDA_ERROR_NOT_SUPPORTED);
    pp.handleTypes = CU_MEM_HANDLE_TYPE_NONE;
    OK(F(cuMemPoolCreate)(&plain, &pp));
    pp.handleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    OK(F(cuMemPoolCreate)(&pool, &pp));
    CUdeviceptr a = 0, b = 0;
    OK(F(cuMemAllocFromPoolAsync)(&a, 10000, pool, 0));
    unsigned char buf[10000], back[10000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 7 + 1);
    OK(F(cuMemcpyHtoD_v2)(a, buf, sizeof buf));

    int fd = -1;
    EXPECT(F(cuMemPoolExportToShareableHandle)(&fd, plain, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0),
           CUDA_ERROR_INVALID_VALUE); /* not created exportable */
    OK(F(cuMemPoolExportToShareableHandle)(&fd, pool, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
    CUmemPoolPtrExportData data;
    EXPECT(F(cuMemPoolExportPointer)(&data, a + 16), CUDA_ERROR_INVALID_VALUE); /* not an allocation's start */
    OK(F(cuMemPoolExportPointer)(&data, a));
    int forged = memfd_create("not-a-pool", 0);
    TRUE(forged >= 0);
    EXPECT(F(cuMemPoolImportFromShareableHandle)(&imp, (void *)(intptr_t)forged, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0),
           CUDA_ERROR_INVALID_VALUE);
    close(forged);
    OK(F(cuMemPoolImportFromShareableHandle)(&imp, (void *)(intptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
    close(fd);
    EXPECT(F(cuMemAllocFromPoolAsync)(&b, 100, imp, 0), CUDA_ERROR_INVALID_VALUE); /* imported pools only map */
    CUmemPoolPtrExportData bad = data;
    bad.reserved[0] ^= 1; /* the magic */
    EXPECT(F(cuMemPoolImportPointer)(&b, imp, &bad), CUDA_ERROR_INVALID_VALUE);
    EXPECT(F(cuMemPoolImportPointer)(&b, pool, &data), CUDA_ERROR_INVALID_VALUE); /* not an imported pool */
    OK(F(cuMemPoolImportPointer)(&b, imp, &data));
    TRUE(b != a);
    memset(back, 0, sizeof back);
    OK(F(cuMemcpyDtoH_v2)(back, b, sizeof back));
    TRUE(memcmp(buf, back, sizeof buf) == 0);
    OK(F(cuMemsetD8_v2)(b, 0x33, 8)); /* written through the import, seen through the allocation */
    OK(F(cuMemcpyDtoH_v2)(back, a, 8));
    TRUE(back[0] == 0x33 && back[7] == 0x33);
    OK(F(cuMemPoolGetAttribute)(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used));
    TRUE(used == 12288);
    OK(F(cuMemFree_v2)(b)); /* an imported pointer is freed as the importer's own */
    OK(F(cuMemPoolDestroy)(imp));
    OK(F(cuMemPoolDestroy)(pool)); /* with an allocation left: it goes with the allocation */
    OK(F(cuMemFreeAsync)(a, 0));
    OK(F(cuMemPoolDestroy)(plain));
}

#endif
