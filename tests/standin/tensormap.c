/* TEST DOUBLE: gpuwire CPU stand-in driver. Im2col tensor map encodings, checked as the
 * driver documents (rank 3..5, 16-byte aligned address and strides, non-zero sizes) and
 * written in a layout of the stand-in's own (no GPU reads it), so a test can see every
 * input arrive:
 *   u64 [0]  global address
 *   u8  [8]  1 im2col, 2 im2col-wide; [9] rank; [10] data type; [11] interleave;
 *       [12] swizzle; [13] L2 promotion; [14] OOB fill; [15] wide mode
 *   u32 [16 + 4i]  globalDim[i] (i < rank, truncated)        -> 36
 *   u32 [36 + 4i]  globalStrides[i] / 16 (i < rank - 1)       -> 52
 *   i16 [52 + 2i]  lower corner[i] (i < rank - 2; wide: [0] only)
 *   i16 [58 + 2i]  upper corner[i]                            -> 64
 *   u32 [64] channelsPerPixel, u32 [68] pixelsPerColumn
 *   u8  [72 + i]   elementStrides[i] (i < rank)               -> 77 */
#include "standin.h"

#include <string.h>

static CUresult encode(CUtensorMap *map, int kind, CUtensorMapDataType type, cuuint32_t rank, void *addr,
                       const cuuint64_t *dims, const cuuint64_t *strides, const int *lower, const int *upper,
                       cuuint32_t channels, cuuint32_t pixels, const cuuint32_t *estrides, int interleave,
                       int swizzle, int l2, int oob, int mode)
{
    if (!map || !dims || !strides || !estrides || (kind == 1 && (!lower || !upper)))
        return CUDA_ERROR_INVALID_VALUE;
    if (rank < 3 || rank > 5 || ((uintptr_t)addr & 15) || (unsigned)type > CU_TENSOR_MAP_DATA_TYPE_16U6_ALIGN16B)
        return CUDA_ERROR_INVALID_VALUE;
    if (!channels || channels > 256 || !pixels || pixels > 1024)
        return CUDA_ERROR_INVALID_VALUE;
    for (cuuint32_t i = 0; i < rank; i++)
        if (!dims[i] || dims[i] > (1ull << 32) || !estrides[i] || estrides[i] > 8)
            return CUDA_ERROR_INVALID_VALUE;
    for (cuuint32_t i = 0; i + 1 < rank; i++)
        if (!strides[i] || (strides[i] & 15) || strides[i] >= (1ull << 40))
            return CUDA_ERROR_INVALID_VALUE;
    unsigned char *b = (unsigned char *)map;
    memset(map, 0, sizeof *map);
    uint64_t a = (uint64_t)(uintptr_t)addr;
    memcpy(b, &a, 8);
    unsigned char head[8] = {(unsigned char)kind, (unsigned char)rank, (unsigned char)type, (unsigned char)interleave,
                             (unsigned char)swizzle, (unsigned char)l2, (unsigned char)oob, (unsigned char)mode};
    memcpy(b + 8, head, 8);
    for (cuuint32_t i = 0; i < rank; i++) {
        uint32_t d = (uint32_t)dims[i];
        memcpy(b + 16 + 4 * i, &d, 4);
        b[72 + i] = (unsigned char)estrides[i];
    }
    for (cuuint32_t i = 0; i + 1 < rank; i++) {
        uint32_t s = (uint32_t)(strides[i] / 16);
        memcpy(b + 36 + 4 * i, &s, 4);
    }
    for (cuuint32_t i = 0; i < (kind == 1 ? rank - 2 : 1); i++) {
        int16_t lo = (int16_t)lower[i], hi = (int16_t)upper[i];
        memcpy(b + 52 + 2 * i, &lo, 2);
        memcpy(b + 58 + 2 * i, &hi, 2);
    }
    memcpy(b + 64, &channels, 4);
    memcpy(b + 68, &pixels, 4);
    return CUDA_SUCCESS;
}

SD_API CUresult cuTensorMapEncodeIm2col(CUtensorMap *map, CUtensorMapDataType type, cuuint32_t rank, void *addr,
                                        const cuuint64_t *dims, const cuuint64_t *strides, const int *lower,
                                        const int *upper, cuuint32_t channels, cuuint32_t pixels,
                                        const cuuint32_t *estrides, CUtensorMapInterleave interleave,
                                        CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2,
                                        CUtensorMapFloatOOBfill oob)
{
    return encode(map, 1, type, rank, addr, dims, strides, lower, upper, channels, pixels, estrides, interleave,
                  swizzle, l2, oob, 0);
}

SD_API CUresult cuTensorMapEncodeIm2colWide(CUtensorMap *map, CUtensorMapDataType type, cuuint32_t rank, void *addr,
                                            const cuuint64_t *dims, const cuuint64_t *strides, int lower, int upper,
                                            cuuint32_t channels, cuuint32_t pixels, const cuuint32_t *estrides,
                                            CUtensorMapInterleave interleave, CUtensorMapIm2ColWideMode mode,
                                            CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2,
                                            CUtensorMapFloatOOBfill oob)
{
    return encode(map, 2, type, rank, addr, dims, strides, &lower, &upper, channels, pixels, estrides, interleave,
                  swizzle, l2, oob, (int)mode);
}
