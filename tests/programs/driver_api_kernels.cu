// Kernels for driver_api.c, built into a standalone fatbin and embedded in the program.
// extern "C": the driver API looks them up by these plain names.

extern "C" __global__ void da_scale(float *data, float factor, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        data[i] *= factor;
}

/* Parameters at offsets 0 (int), 4 (char), 8 (double), 16 (pointer): 24 bytes in all. */
extern "C" __global__ void da_mix(int a, char b, double c, long long *out)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    out[i] = (long long)a * 1000 + (long long)b + (long long)(c * 10.0) + i;
}
