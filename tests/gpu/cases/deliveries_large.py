"""Large asynchronous device-to-host copies into page-locked memory (deliveries,
issue 20 item 4), checked byte by byte: under one 4 MiB piece, across
several with odd ends, and more than the server's piece buffers hold, after
a copy to the device from page-locked memory on the same stream; then
copies of 0.5 MiB from ordinary memory, checked likewise. Prints "ok".
Usage: python3 deliveries_large.py ROUNDS (tests/e2e/test_landings.py, gpu-check)."""
import ctypes, os, sys, time
cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0
dev, ctx, s = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuStreamCreate(ctypes.byref(s), 0) == 0
total = 96 << 20
data = os.urandom(total)  # every byte its own: a part landed at the wrong offset shows
d = ctypes.c_uint64()
assert cuda.cuMemAlloc_v2(ctypes.byref(d), ctypes.c_size_t(total)) == 0
assert cuda.cuMemcpyHtoD_v2(d, data, ctypes.c_size_t(total)) == 0
host = ctypes.c_void_p()
assert cuda.cuMemAllocHost_v2(ctypes.byref(host), ctypes.c_size_t(total)) == 0
# (offset, bytes): under one piece buffer, across several with odd ends, and
# more than the worker's piece buffers hold (the rest staged apart)
copies = [(0, 1 << 20), (1 << 20, (4 << 20) + 123), ((8 << 20) + 5, (10 << 20) + 7), (20 << 20, (70 << 20) - 3)]
# a copy to the device from page-locked memory goes first on the same stream:
# its pieces' buffers on the server may be the ones the copies back then use
up_n = 64 << 20
up_data = os.urandom(up_n)
up, d2 = ctypes.c_void_p(), ctypes.c_uint64()
assert cuda.cuMemAllocHost_v2(ctypes.byref(up), ctypes.c_size_t(up_n)) == 0
ctypes.memmove(up, up_data, up_n)
assert cuda.cuMemAlloc_v2(ctypes.byref(d2), ctypes.c_size_t(up_n)) == 0
back = ctypes.create_string_buffer(up_n)
for round in range(int(sys.argv[1])):
    ctypes.memset(host, round + 1, total)
    assert cuda.cuMemsetD8_v2(d2, round, ctypes.c_size_t(up_n)) == 0
    assert cuda.cuMemcpyHtoDAsync_v2(d2, up, ctypes.c_size_t(up_n), s) == 0
    for off, n in copies:
        assert cuda.cuMemcpyDtoHAsync_v2(ctypes.c_void_p(host.value + off), ctypes.c_uint64(d.value + off),
                                         ctypes.c_size_t(n), s) == 0
    assert cuda.cuStreamSynchronize(s) == 0
    for off, n in copies:
        assert ctypes.string_at(host.value + off, n) == data[off:off + n], (round, off, n)
    assert cuda.cuMemcpyDtoH_v2(back, d2, ctypes.c_size_t(up_n)) == 0
    assert back.raw == up_data, round
    # copies of 256 KiB to 1 MiB from ordinary memory go on the session's
    # connection, into the server's page-locked buffers once those exist
    mid = [os.urandom((512 << 10) + 1000 * k) for k in range(8)]
    for k, b in enumerate(mid):
        assert cuda.cuMemcpyHtoDAsync_v2(ctypes.c_uint64(d2.value + k * (1 << 20)), b, ctypes.c_size_t(len(b)), s) == 0
    assert cuda.cuStreamSynchronize(s) == 0
    assert cuda.cuMemcpyDtoH_v2(back, d2, ctypes.c_size_t(up_n)) == 0
    for k, b in enumerate(mid):
        assert back.raw[k * (1 << 20):k * (1 << 20) + len(b)] == b, (round, k)
    for _ in range(20):  # between the rounds the worker page-locks its piece buffers
        assert cuda.cuCtxSynchronize() == 0
    time.sleep(0.2)
assert cuda.cuMemFreeHost(host) == 0
assert cuda.cuMemFreeHost(up) == 0
print("ok")
