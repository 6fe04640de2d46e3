/* CUDA arrays through the driver API: 2D, 3D, layered and cubemap arrays of
 * several formats; host -> array -> device -> array -> array -> host with
 * pitches and offsets, every byte checked; a sub-box written at an offset;
 * descriptors read back; boxes outside an array refused; texture and
 * surface objects on an array and on device memory, their descriptors read
 * back; a mipmapped array's levels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "arrays"
#include "driver_check.h"

static size_t elem_size(CUarray_format f, unsigned ch)
{
    switch (f) {
    case CU_AD_FORMAT_UNSIGNED_INT8: return ch;
    case CU_AD_FORMAT_SIGNED_INT16: case CU_AD_FORMAT_HALF: return 2 * ch;
    default: return 4 * ch;
    }
}

static unsigned char pat(size_t i, unsigned seed) { return (unsigned char)(i * 131 + seed * 17 + (i >> 8)); }

/* A 3D copy of a whole w x h x d box between two described places. */
static CUDA_MEMCPY3D box(size_t w, size_t h, size_t d)
{
    CUDA_MEMCPY3D m;
    memset(&m, 0, sizeof m);
    m.WidthInBytes = w;
    m.Height = h;
    m.Depth = d;
    return m;
}

static void roundtrip(const char *what, const CUDA_ARRAY3D_DESCRIPTOR *desc, int use3d)
{
    size_t es = elem_size(desc->Format, desc->NumChannels);
    size_t row = desc->Width * es, rows = desc->Height ? desc->Height : 1, sl = desc->Depth ? desc->Depth : 1;
    CUarray a, b, c;
    if (use3d) {
        CK(cuArray3DCreate_v2(&a, desc));
        CK(cuArray3DCreate_v2(&b, desc));
        CK(cuArray3DCreate_v2(&c, desc));
    } else {
        CUDA_ARRAY_DESCRIPTOR d2 = {desc->Width, desc->Height, desc->Format, desc->NumChannels};
        CK(cuArrayCreate_v2(&a, &d2));
        CK(cuArrayCreate_v2(&b, &d2));
        CK(cuArrayCreate_v2(&c, &d2));
        CUDA_ARRAY_DESCRIPTOR got;
        CK(cuArrayGetDescriptor_v2(&got, a));
        if (got.Width != d2.Width || got.Height != d2.Height || got.Format != d2.Format ||
            got.NumChannels != d2.NumChannels)
            FAIL("%s: 2D descriptor differs", what);
    }
    CUDA_ARRAY3D_DESCRIPTOR got3;
    CK(cuArray3DGetDescriptor_v2(&got3, a));
    if (got3.Width != desc->Width || got3.Height != desc->Height || got3.Depth != desc->Depth ||
        got3.Format != desc->Format || got3.NumChannels != desc->NumChannels || got3.Flags != desc->Flags)
        FAIL("%s: 3D descriptor differs", what);
    if (desc->Depth) { /* the driver answers, depth left out: printed, compared with native */
        CUDA_ARRAY_DESCRIPTOR d2 = {0};
        CUresult r = cuArrayGetDescriptor_v2(&d2, a);
        printf("%s: 2D descriptor of a 3D array: %d %zux%zu format %d x%u\n", what, (int)r, d2.Width, d2.Height,
               (int)d2.Format, d2.NumChannels);
    }

    /* host source: pitch row + 13, region at (5 bytes, 2 rows), slices rows + 3 rows apart */
    size_t hp = row + 13, hh = rows + 3, hx = 5, hy = 2;
    size_t hbytes = hp * hh * sl;
    unsigned char *src = malloc(hbytes), *dst = malloc(hbytes), *model = malloc(row * rows * sl);
    if (!src || !dst || !model)
        FAIL("out of host memory");
    for (size_t i = 0; i < hbytes; i++)
        src[i] = pat(i, 1);
    for (size_t z = 0; z < sl; z++)
        for (size_t y = 0; y < rows; y++)
            memcpy(model + (z * rows + y) * row, src + (z * hh + y + hy) * hp + hx, row);

    CUDA_MEMCPY3D m = box(row, rows, sl); /* host -> a */
    m.srcMemoryType = CU_MEMORYTYPE_HOST;
    m.srcHost = src;
    m.srcXInBytes = hx;
    m.srcY = hy;
    m.srcPitch = hp;
    m.srcHeight = hh;
    m.dstMemoryType = CU_MEMORYTYPE_ARRAY;
    m.dstArray = a;
    if (!use3d && sl == 1) { /* the 2D call for 2D arrays */
        CUDA_MEMCPY2D m2;
        memset(&m2, 0, sizeof m2);
        m2.srcMemoryType = CU_MEMORYTYPE_HOST;
        m2.srcHost = src;
        m2.srcXInBytes = hx;
        m2.srcY = hy;
        m2.srcPitch = hp;
        m2.dstMemoryType = CU_MEMORYTYPE_ARRAY;
        m2.dstArray = a;
        m2.WidthInBytes = row;
        m2.Height = rows;
        CK(cuMemcpy2D_v2(&m2));
    } else {
        CK(cuMemcpy3D_v2(&m));
    }

    size_t dp = (row + 64) & ~(size_t)31; /* a -> device, pitched */
    CUdeviceptr dev;
    CK(cuMemAlloc_v2(&dev, dp * rows * sl));
    m = box(row, rows, sl);
    m.srcMemoryType = CU_MEMORYTYPE_ARRAY;
    m.srcArray = a;
    m.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    m.dstDevice = dev;
    m.dstPitch = dp;
    m.dstHeight = rows;
    CK(cuMemcpy3D_v2(&m));

    m = box(row, rows, sl); /* device -> b, on a stream */
    m.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    m.srcDevice = dev;
    m.srcPitch = dp;
    m.srcHeight = rows;
    m.dstMemoryType = CU_MEMORYTYPE_ARRAY;
    m.dstArray = b;
    CUstream s;
    CK(cuStreamCreate(&s, 0));
    CK(cuMemcpy3DAsync_v2(&m, s));
    CK(cuStreamSynchronize(s));

    m = box(row, rows, sl); /* b -> c */
    m.srcMemoryType = CU_MEMORYTYPE_ARRAY;
    m.srcArray = b;
    m.dstMemoryType = CU_MEMORYTYPE_ARRAY;
    m.dstArray = c;
    CK(cuMemcpy3D_v2(&m));

    /* a sub-box from the host into c at (es bytes, 1 row, 1 slice) where the array has them */
    size_t ox = es < row ? es : 0, oy = rows > 1, oz = sl > 1;
    size_t bw = row - ox, bh = rows - oy, bd = sl - oz;
    m = box(bw, bh, bd);
    m.srcMemoryType = CU_MEMORYTYPE_HOST;
    m.srcHost = src;
    m.srcPitch = hp;
    m.srcHeight = hh;
    m.dstMemoryType = CU_MEMORYTYPE_ARRAY;
    m.dstArray = c;
    m.dstXInBytes = ox;
    m.dstY = oy;
    m.dstZ = oz;
    CK(cuMemcpy3DAsync_v2(&m, s));
    for (size_t z = 0; z < bd; z++)
        for (size_t y = 0; y < bh; y++)
            memcpy(model + ((z + oz) * rows + y + oy) * row + ox, src + (z * hh + y) * hp, bw);

    memset(dst, 0xEE, hbytes); /* c -> host, at (3 bytes, 1 row) of a pitch row + 13 buffer */
    m = box(row, rows, sl);
    m.srcMemoryType = CU_MEMORYTYPE_ARRAY;
    m.srcArray = c;
    m.dstMemoryType = CU_MEMORYTYPE_HOST;
    m.dstHost = dst;
    m.dstXInBytes = 3;
    m.dstY = 1;
    m.dstPitch = hp;
    m.dstHeight = hh;
    CK(cuMemcpy3D_v2(&m));
    for (size_t z = 0; z < sl; z++)
        for (size_t y = 0; y < rows; y++)
            for (size_t x = 0; x < row; x++) {
                unsigned char want = model[(z * rows + y) * row + x], got = dst[(z * hh + y + 1) * hp + 3 + x];
                if (want != got)
                    FAIL("%s: byte (%zu,%zu,%zu) is %u, not %u", what, x, y, z, got, want);
            }
    if (dst[0] != 0xEE || dst[hp + 2] != 0xEE || dst[hp + 3 + row] != 0xEE)
        FAIL("%s: bytes outside the box were written", what);

    /* a box reaching past the array is refused */
    m = box(row, rows, sl);
    m.srcMemoryType = CU_MEMORYTYPE_ARRAY;
    m.srcArray = c;
    m.srcXInBytes = 1;
    m.dstMemoryType = CU_MEMORYTYPE_HOST;
    m.dstHost = dst;
    m.dstPitch = hp;
    m.dstHeight = hh;
    if (cuMemcpy3D_v2(&m) != CUDA_ERROR_INVALID_VALUE)
        FAIL("%s: a box past the array's end was not refused", what);

    CK(cuStreamDestroy_v2(s));
    CK(cuMemFree_v2(dev));
    CK(cuArrayDestroy(a));
    CK(cuArrayDestroy(b));
    CK(cuArrayDestroy(c));
    free(src);
    free(dst);
    free(model);
}

/* The driver may normalise a descriptor it hands back (seen on an H100: the
 * texture descriptor differs from the one given), so it is printed and the
 * check compares the output with the native run's instead of with the input. */
static void show(const void *a, size_t n, const char *what)
{
    printf("%s:", what);
    for (size_t i = 0; i < n; i++)
        printf("%s%02x", i % 16 ? "" : " ", ((const unsigned char *)a)[i]);
    printf("\n");
}

static void textures(void)
{
    CUarray arr, plain;
    CUDA_ARRAY3D_DESCRIPTOR ad = {16, 8, 0, CU_AD_FORMAT_FLOAT, 1, CUDA_ARRAY3D_SURFACE_LDST};
    CK(cuArray3DCreate_v2(&arr, &ad));
    CUDA_ARRAY_DESCRIPTOR pd = {16, 8, CU_AD_FORMAT_FLOAT, 1};
    CK(cuArrayCreate_v2(&plain, &pd));

    CUDA_RESOURCE_DESC ra;
    memset(&ra, 0, sizeof ra);
    ra.resType = CU_RESOURCE_TYPE_ARRAY;
    ra.res.array.hArray = arr;
    CUDA_TEXTURE_DESC td;
    memset(&td, 0, sizeof td);
    td.addressMode[0] = td.addressMode[1] = CU_TR_ADDRESS_MODE_CLAMP;
    td.filterMode = CU_TR_FILTER_MODE_POINT;
    td.flags = CU_TRSF_NORMALIZED_COORDINATES;
    CUDA_RESOURCE_VIEW_DESC vd;
    memset(&vd, 0, sizeof vd);
    vd.format = CU_RES_VIEW_FORMAT_FLOAT_1X32;
    vd.width = 16;
    vd.height = 8;
    CUtexObject t1;
    CK(cuTexObjectCreate(&t1, &ra, &td, &vd));
    CUDA_RESOURCE_DESC rgot;
    CUDA_TEXTURE_DESC tgot;
    CUDA_RESOURCE_VIEW_DESC vgot;
    CK(cuTexObjectGetResourceDesc(&rgot, t1));
    if (rgot.resType != CU_RESOURCE_TYPE_ARRAY || rgot.res.array.hArray != arr)
        FAIL("texture on an array: resource descriptor differs");
    memset(&tgot, 0, sizeof tgot); /* bytes the driver leaves alone print as zeros both ways */
    memset(&vgot, 0, sizeof vgot);
    CK(cuTexObjectGetTextureDesc(&tgot, t1));
    show(&tgot, sizeof tgot, "texture on an array: texture descriptor");
    CK(cuTexObjectGetResourceViewDesc(&vgot, t1));
    show(&vgot, sizeof vgot, "texture on an array: view descriptor");

    CUsurfObject s1;
    CK(cuSurfObjectCreate(&s1, &ra));
    CK(cuSurfObjectGetResourceDesc(&rgot, s1));
    if (rgot.resType != CU_RESOURCE_TYPE_ARRAY || rgot.res.array.hArray != arr)
        FAIL("surface: resource descriptor differs");
    CUsurfObject s2; /* the driver makes it (only its use needs a load-store array): printed, compared */
    ra.res.array.hArray = plain;
    CUresult sr = cuSurfObjectCreate(&s2, &ra);
    printf("surface on an array without CUDA_ARRAY3D_SURFACE_LDST: %d\n", (int)sr);
    if (sr == CUDA_SUCCESS)
        CK(cuSurfObjectDestroy(s2));

    size_t pitch = 128;
    CUdeviceptr dev;
    CK(cuMemAlloc_v2(&dev, pitch * 10));
    CUDA_RESOURCE_DESC rp;
    memset(&rp, 0, sizeof rp);
    rp.resType = CU_RESOURCE_TYPE_PITCH2D;
    rp.res.pitch2D.devPtr = dev;
    rp.res.pitch2D.format = CU_AD_FORMAT_UNSIGNED_INT8;
    rp.res.pitch2D.numChannels = 4;
    rp.res.pitch2D.width = 20;
    rp.res.pitch2D.height = 10;
    rp.res.pitch2D.pitchInBytes = pitch;
    td.flags = CU_TRSF_READ_AS_INTEGER;
    CUtexObject t2;
    CK(cuTexObjectCreate(&t2, &rp, &td, NULL));
    if (t2 == t1)
        FAIL("two texture objects share a value");
    memset(&rgot, 0, sizeof rgot);
    memset(&tgot, 0, sizeof tgot);
    CK(cuTexObjectGetResourceDesc(&rgot, t2));
    if (rgot.res.pitch2D.devPtr != dev)
        FAIL("texture on pitch2D memory: another address");
    rgot.res.pitch2D.devPtr = 0; /* addresses may differ between runs */
    show(&rgot, sizeof rgot, "texture on pitch2D memory: resource descriptor");
    CK(cuTexObjectGetTextureDesc(&tgot, t2));
    show(&tgot, sizeof tgot, "texture on pitch2D memory: texture descriptor");
    memset(&vgot, 0, sizeof vgot); /* what the driver answers is printed: an H100 does not refuse it */
    printf("view descriptor of a texture made without one: %d\n", (int)cuTexObjectGetResourceViewDesc(&vgot, t2));
    show(&vgot, sizeof vgot, "view descriptor of a texture made without one");

    CUDA_RESOURCE_DESC rl;
    memset(&rl, 0, sizeof rl);
    rl.resType = CU_RESOURCE_TYPE_LINEAR;
    rl.res.linear.devPtr = dev;
    rl.res.linear.format = CU_AD_FORMAT_FLOAT;
    rl.res.linear.numChannels = 1;
    rl.res.linear.sizeInBytes = pitch * 10;
    CUtexObject t3;
    CK(cuTexObjectCreate(&t3, &rl, &td, NULL));
    memset(&rgot, 0, sizeof rgot);
    CK(cuTexObjectGetResourceDesc(&rgot, t3));
    if (rgot.res.linear.devPtr != dev)
        FAIL("texture on linear memory: another address");
    rgot.res.linear.devPtr = 0;
    show(&rgot, sizeof rgot, "texture on linear memory: resource descriptor");

    CK(cuTexObjectDestroy(t1));
    CK(cuTexObjectDestroy(t2));
    CK(cuTexObjectDestroy(t3));
    CK(cuSurfObjectDestroy(s1));
    CK(cuMemFree_v2(dev));
    CK(cuArrayDestroy(arr));
    CK(cuArrayDestroy(plain));
}

/* host <-> a 1D array by byte offset */
static void by_offset(void)
{
    CUDA_ARRAY_DESCRIPTOR d = {5000, 0, CU_AD_FORMAT_UNSIGNED_INT16, 1};
    CUarray a;
    CK(cuArrayCreate_v2(&a, &d));
    size_t n = 10000;
    unsigned char *in = malloc(n), *out = malloc(n);
    if (!in || !out)
        FAIL("out of host memory");
    for (size_t i = 0; i < n; i++)
        in[i] = pat(i, 3);
    CK(cuMemcpyHtoA_v2(a, 0, in, n));
    CK(cuMemcpyHtoA_v2(a, 200, in + 4000, 3000)); /* part of it again, from elsewhere */
    memcpy(in + 200, in + 4000, 3000);
    CUstream s;
    CK(cuStreamCreate(&s, 0));
    memset(out, 0, n);
    CK(cuMemcpyAtoHAsync_v2(out, a, 0, n, s));
    CK(cuStreamSynchronize(s));
    if (memcmp(in, out, n))
        FAIL("host <-> 1D array by offset: bytes differ");
    memset(out, 0, n);
    CK(cuMemcpyAtoH_v2(out, a, 9000, 1000));
    if (memcmp(in + 9000, out, 1000))
        FAIL("array -> host at an offset: bytes differ");
    if (cuMemcpyAtoH_v2(out, a, 9001, 1000) != CUDA_ERROR_INVALID_VALUE)
        FAIL("a copy past the array's end was not refused");
    CK(cuStreamDestroy_v2(s));
    CK(cuArrayDestroy(a));
    free(in);
    free(out);
}

/* a mipmapped array: levels halve, each copied through and read back; a texture on it */
static void mipmaps(void)
{
    CUDA_ARRAY3D_DESCRIPTOR d = {64, 32, 0, CU_AD_FORMAT_FLOAT, 1, 0};
    CUmipmappedArray m;
    CK(cuMipmappedArrayCreate(&m, &d, 4));
    for (unsigned l = 0; l < 4; l++) {
        CUarray a, again;
        CK(cuMipmappedArrayGetLevel(&a, m, l));
        CK(cuMipmappedArrayGetLevel(&again, m, l));
        if (a != again)
            FAIL("level %u: two handles for one level", l);
        CUDA_ARRAY3D_DESCRIPTOR got;
        CK(cuArray3DGetDescriptor_v2(&got, a));
        if (got.Width != 64u >> l || got.Height != 32u >> l || got.Depth || got.Format != d.Format)
            FAIL("level %u: descriptor %zux%zux%zu", l, got.Width, got.Height, got.Depth);
        size_t row = got.Width * 4, n = row * got.Height;
        unsigned char *in = malloc(n), *out = malloc(n);
        if (!in || !out)
            FAIL("out of host memory");
        for (size_t i = 0; i < n; i++)
            in[i] = pat(i, 10 + l);
        CUDA_MEMCPY3D c = box(row, got.Height, 1);
        c.srcMemoryType = CU_MEMORYTYPE_HOST;
        c.srcHost = in;
        c.srcPitch = row;
        c.srcHeight = got.Height;
        c.dstMemoryType = CU_MEMORYTYPE_ARRAY;
        c.dstArray = a;
        CK(cuMemcpy3D_v2(&c));
        c = box(row, got.Height, 1);
        c.srcMemoryType = CU_MEMORYTYPE_ARRAY;
        c.srcArray = a;
        c.dstMemoryType = CU_MEMORYTYPE_HOST;
        c.dstHost = out;
        c.dstPitch = row;
        c.dstHeight = got.Height;
        CK(cuMemcpy3D_v2(&c));
        if (memcmp(in, out, n))
            FAIL("level %u: bytes differ", l);
        free(in);
        free(out);
    }
    CUarray none;
    if (cuMipmappedArrayGetLevel(&none, m, 4) == CUDA_SUCCESS)
        FAIL("a level past the last");

    CUDA_RESOURCE_DESC r;
    memset(&r, 0, sizeof r);
    r.resType = CU_RESOURCE_TYPE_MIPMAPPED_ARRAY;
    r.res.mipmap.hMipmappedArray = m;
    CUDA_TEXTURE_DESC t;
    memset(&t, 0, sizeof t);
    t.filterMode = CU_TR_FILTER_MODE_LINEAR;
    t.mipmapFilterMode = CU_TR_FILTER_MODE_LINEAR;
    t.maxMipmapLevelClamp = 3.0f;
    t.flags = CU_TRSF_NORMALIZED_COORDINATES;
    CUtexObject tex;
    CK(cuTexObjectCreate(&tex, &r, &t, NULL));
    CUDA_RESOURCE_DESC rgot;
    CK(cuTexObjectGetResourceDesc(&rgot, tex));
    if (rgot.resType != CU_RESOURCE_TYPE_MIPMAPPED_ARRAY || rgot.res.mipmap.hMipmappedArray != m)
        FAIL("texture on a mipmapped array: resource descriptor differs");
    CK(cuTexObjectDestroy(tex));
    CK(cuMipmappedArrayDestroy(m));
}

/* cudart and Ollama find entry points with cuGetProcAddress: the same functions */
static void proc_addresses(void)
{
    struct { const char *name; int ver; void *want; } t[] = {
        {"cuArrayCreate", 3020, (void *)cuArrayCreate_v2},
        {"cuArray3DCreate", 3020, (void *)cuArray3DCreate_v2},
        {"cuArrayGetDescriptor", 3020, (void *)cuArrayGetDescriptor_v2},
        {"cuArray3DGetDescriptor", 3020, (void *)cuArray3DGetDescriptor_v2},
        {"cuArrayDestroy", 2000, (void *)cuArrayDestroy},
        {"cuMemcpy3D", 3020, (void *)cuMemcpy3D_v2},
        {"cuMemcpy3DAsync", 3020, (void *)cuMemcpy3DAsync_v2},
        {"cuMemcpy2D", 3020, (void *)cuMemcpy2D_v2},
        {"cuMemcpyHtoA", 3020, (void *)cuMemcpyHtoA_v2},
        {"cuMemcpyAtoH", 3020, (void *)cuMemcpyAtoH_v2},
        {"cuTexObjectCreate", 5000, (void *)cuTexObjectCreate},
        {"cuSurfObjectCreate", 5000, (void *)cuSurfObjectCreate},
        {"cuMipmappedArrayCreate", 5000, (void *)cuMipmappedArrayCreate},
        {"cuMipmappedArrayGetLevel", 5000, (void *)cuMipmappedArrayGetLevel},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        void *p = NULL;
        CUdriverProcAddressQueryResult st;
        CK(cuGetProcAddress(t[i].name, &p, 13000, CU_GET_PROC_ADDRESS_DEFAULT, &st));
        if (st != CU_GET_PROC_ADDRESS_SUCCESS || p != t[i].want)
            FAIL("cuGetProcAddress(%s) is not the linked %s", t[i].name, t[i].name);
    }
}

int main(void)
{
    CUdevice d;
    CUcontext ctx;
    CK(cuInit(0));
    CK(cuDeviceGet(&d, 0));
    CK(cuDevicePrimaryCtxRetain(&ctx, d));
    CK(cuCtxSetCurrent(ctx));

    CUDA_ARRAY3D_DESCRIPTOR t[] = {
        {37, 19, 0, CU_AD_FORMAT_UNSIGNED_INT8, 1, 0},                        /* 2D */
        {13, 7, 0, CU_AD_FORMAT_FLOAT, 4, 0},                                 /* 2D */
        {100, 0, 0, CU_AD_FORMAT_HALF, 2, 0},                                 /* 1D */
        {11, 5, 4, CU_AD_FORMAT_SIGNED_INT16, 1, CUDA_ARRAY3D_SURFACE_LDST},  /* 3D */
        {9, 0, 3, CU_AD_FORMAT_UNSIGNED_INT32, 1, CUDA_ARRAY3D_LAYERED},      /* 1D layered */
        {8, 6, 3, CU_AD_FORMAT_FLOAT, 2, CUDA_ARRAY3D_LAYERED},               /* 2D layered */
        {8, 8, 6, CU_AD_FORMAT_UNSIGNED_INT8, 4, CUDA_ARRAY3D_CUBEMAP},       /* cubemap */
        {4, 4, 12, CU_AD_FORMAT_FLOAT, 1, CUDA_ARRAY3D_CUBEMAP | CUDA_ARRAY3D_LAYERED},
    };
    const char *names[] = {"2D u8x1", "2D f32x4", "1D f16x2", "3D s16x1 surface", "1D layered u32x1",
                           "2D layered f32x2", "cubemap u8x4", "cubemap layered f32x1"};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        roundtrip(names[i], &t[i], t[i].Depth || t[i].Flags);

    /* refused at once: a cubemap that is not square (an unknown array handle is not
     * asked about: the real driver dereferences it and crashes, H100, driver 580) */
    CUarray bad;
    CUDA_ARRAY3D_DESCRIPTOR cube = {8, 4, 6, CU_AD_FORMAT_FLOAT, 1, CUDA_ARRAY3D_CUBEMAP};
    if (cuArray3DCreate_v2(&bad, &cube) == CUDA_SUCCESS)
        FAIL("a non-square cubemap was made");

    proc_addresses();
    by_offset();
    textures();
    mipmaps();

    CK(cuDevicePrimaryCtxRelease_v2(d));
    printf("PASS arrays\n");
    return 0;
}
