// device_props: device count, properties, attributes, versions and memory info, cross-checked.
#define PROG "device_props"
#include "check.h"

#include <string.h>

#define SAME(attr, field)                                                           \
    do {                                                                            \
        int v_ = -1;                                                                \
        CK(cudaDeviceGetAttribute(&v_, attr, dev));                                 \
        if ((long long)v_ != (long long)(field))                                    \
            FAIL("%s = %d but cudaDeviceProp." #field " = %lld", #attr, v_,         \
                 (long long)(field));                                               \
    } while (0)

int main(void)
{
    int count = 0;
    CK(cudaGetDeviceCount(&count));
    if (count < 1)
        FAIL("no device");
    int drv = 0, rt = 0;
    CK(cudaDriverGetVersion(&drv));
    CK(cudaRuntimeGetVersion(&rt));
    printf("device_props: %d device(s), driver %d, runtime %d\n", count, drv, rt);
    if (drv < rt)
        FAIL("driver version %d older than runtime %d", drv, rt);

    for (int dev = 0; dev < count; dev++) {
        CK(cudaSetDevice(dev));
        int cur = -1;
        CK(cudaGetDevice(&cur));
        if (cur != dev)
            FAIL("cudaGetDevice = %d after cudaSetDevice(%d)", cur, dev);
        cudaDeviceProp p;
        memset(&p, 0, sizeof p);
        CK(cudaGetDeviceProperties(&p, dev));
        printf("device %d: %s, cc %d.%d, %zu MiB, %d SMs, warp %d, max threads/block %d\n", dev,
               p.name, p.major, p.minor, p.totalGlobalMem >> 20, p.multiProcessorCount, p.warpSize,
               p.maxThreadsPerBlock);
        if (strlen(p.name) == 0)
            FAIL("empty device name");
        if (p.major < 1 || p.totalGlobalMem == 0 || p.warpSize != 32 || p.maxThreadsPerBlock < 64)
            FAIL("implausible properties");

        SAME(cudaDevAttrComputeCapabilityMajor, p.major);
        SAME(cudaDevAttrComputeCapabilityMinor, p.minor);
        SAME(cudaDevAttrMultiProcessorCount, p.multiProcessorCount);
        SAME(cudaDevAttrWarpSize, p.warpSize);
        SAME(cudaDevAttrMaxThreadsPerBlock, p.maxThreadsPerBlock);
        SAME(cudaDevAttrMaxBlockDimX, p.maxThreadsDim[0]);
        SAME(cudaDevAttrMaxBlockDimY, p.maxThreadsDim[1]);
        SAME(cudaDevAttrMaxBlockDimZ, p.maxThreadsDim[2]);
        SAME(cudaDevAttrMaxGridDimX, p.maxGridSize[0]);
        SAME(cudaDevAttrMaxGridDimY, p.maxGridSize[1]);
        SAME(cudaDevAttrMaxGridDimZ, p.maxGridSize[2]);
        SAME(cudaDevAttrMaxSharedMemoryPerBlock, p.sharedMemPerBlock);
        SAME(cudaDevAttrMaxSharedMemoryPerBlockOptin, p.sharedMemPerBlockOptin);
        SAME(cudaDevAttrMaxSharedMemoryPerMultiprocessor, p.sharedMemPerMultiprocessor);
        SAME(cudaDevAttrTotalConstantMemory, p.totalConstMem);
        SAME(cudaDevAttrMaxRegistersPerBlock, p.regsPerBlock);
        SAME(cudaDevAttrMaxRegistersPerMultiprocessor, p.regsPerMultiprocessor);
        SAME(cudaDevAttrMaxThreadsPerMultiProcessor, p.maxThreadsPerMultiProcessor);
        SAME(cudaDevAttrMaxBlocksPerMultiprocessor, p.maxBlocksPerMultiProcessor);
        SAME(cudaDevAttrL2CacheSize, p.l2CacheSize);
        SAME(cudaDevAttrGlobalMemoryBusWidth, p.memoryBusWidth);
        SAME(cudaDevAttrPciBusId, p.pciBusID);
        SAME(cudaDevAttrPciDeviceId, p.pciDeviceID);
        SAME(cudaDevAttrPciDomainId, p.pciDomainID);
        SAME(cudaDevAttrAsyncEngineCount, p.asyncEngineCount);
        SAME(cudaDevAttrUnifiedAddressing, p.unifiedAddressing);
        SAME(cudaDevAttrConcurrentKernels, p.concurrentKernels);
        SAME(cudaDevAttrEccEnabled, p.ECCEnabled);
        SAME(cudaDevAttrIntegrated, p.integrated);
        SAME(cudaDevAttrCanMapHostMemory, p.canMapHostMemory);
        SAME(cudaDevAttrManagedMemory, p.managedMemory);
        SAME(cudaDevAttrConcurrentManagedAccess, p.concurrentManagedAccess);
        SAME(cudaDevAttrPageableMemoryAccess, p.pageableMemoryAccess);
        SAME(cudaDevAttrCooperativeLaunch, p.cooperativeLaunch);
        SAME(cudaDevAttrComputePreemptionSupported, p.computePreemptionSupported);
        SAME(cudaDevAttrStreamPrioritiesSupported, p.streamPrioritiesSupported);
        SAME(cudaDevAttrGlobalL1CacheSupported, p.globalL1CacheSupported);
        SAME(cudaDevAttrLocalL1CacheSupported, p.localL1CacheSupported);
        SAME(cudaDevAttrMaxPitch, p.memPitch);
        SAME(cudaDevAttrTextureAlignment, p.textureAlignment);
        SAME(cudaDevAttrTexturePitchAlignment, p.texturePitchAlignment);
        SAME(cudaDevAttrSurfaceAlignment, p.surfaceAlignment);
        SAME(cudaDevAttrMultiGpuBoardGroupID, p.multiGpuBoardGroupID);
        SAME(cudaDevAttrIsMultiGpuBoard, p.isMultiGpuBoard);
        SAME(cudaDevAttrMaxTexture1DWidth, p.maxTexture1D);
        SAME(cudaDevAttrMaxTexture2DWidth, p.maxTexture2D[0]);
        SAME(cudaDevAttrMaxTexture2DHeight, p.maxTexture2D[1]);
        SAME(cudaDevAttrMaxTexture3DWidth, p.maxTexture3D[0]);
        SAME(cudaDevAttrMemoryPoolsSupported, p.memoryPoolsSupported);
        SAME(cudaDevAttrHostNativeAtomicSupported, p.hostNativeAtomicSupported);
        SAME(cudaDevAttrMaxPersistingL2CacheSize, p.persistingL2CacheMaxSize);
        SAME(cudaDevAttrMaxAccessPolicyWindowSize, p.accessPolicyMaxWindowSize);
        SAME(cudaDevAttrReservedSharedMemoryPerBlock, p.reservedSharedMemPerBlock);

        /* An attribute number the device does not know is an error, not a crash. */
        int junk;
        EXPECT_ERR(cudaDeviceGetAttribute(&junk, (cudaDeviceAttr)100000, dev), cudaErrorInvalidValue);

        size_t free_b = 0, total_b = 0;
        CK(cudaMemGetInfo(&free_b, &total_b));
        printf("device %d: memory free %zu MiB of %zu MiB\n", dev, free_b >> 20, total_b >> 20);
        if (total_b == 0 || free_b > total_b || total_b > p.totalGlobalMem + ((size_t)1 << 30))
            FAIL("cudaMemGetInfo free %zu total %zu vs totalGlobalMem %zu", free_b, total_b,
                 p.totalGlobalMem);
        /* Allocating lowers the free count (or at least does not raise it). */
        void *d;
        CK(cudaMalloc(&d, (size_t)64 << 20));
        size_t free2 = 0, total2 = 0;
        CK(cudaMemGetInfo(&free2, &total2));
        if (total2 != total_b || free2 > free_b)
            FAIL("free memory went from %zu to %zu after a 64 MiB allocation", free_b, free2);
        CK(cudaFree(d));
    }
    int bad;
    EXPECT_ERR(cudaDeviceGetAttribute(&bad, cudaDevAttrWarpSize, count), cudaErrorInvalidDevice);
    PASS();
}
