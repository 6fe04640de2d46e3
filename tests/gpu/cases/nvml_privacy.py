"""Issue 18, finding 8, on the real NVML: through gpuwire a client's NVML shows
only its own processes. Holds a CUDA context (so its worker is on the GPU),
lists the GPU's compute processes and asks the name of each, of the gpuwire
server (argv[1]) and of the other client (argv[2], a pid of the server host's
worker holding memory for someone else). Prints one verdict line."""
import ctypes
import sys

server_pid, other_pid = int(sys.argv[1]), int(sys.argv[2])
cu = ctypes.CDLL("libcuda.so.1")
ctx, ptr = ctypes.c_void_p(), ctypes.c_uint64()
assert cu.cuInit(0) == 0 and cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), 0) == 0
assert cu.cuCtxSetCurrent(ctx) == 0 and cu.cuMemAlloc_v2(ctypes.byref(ptr), 64 << 20) == 0

nv = ctypes.CDLL("libnvidia-ml.so.1")
assert nv.nvmlInit_v2() == 0
dev = ctypes.c_void_p()
assert nv.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(dev)) == 0


class Proc(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong), ("gpuInstanceId", ctypes.c_uint),
                ("computeInstanceId", ctypes.c_uint)]


count = ctypes.c_uint(64)
procs = (Proc * 64)()
rc = nv.nvmlDeviceGetComputeRunningProcesses_v3(dev, ctypes.byref(count), procs)
assert rc == 0, rc
pids = [procs[i].pid for i in range(count.value)]


def name(pid):
    buf = ctypes.create_string_buffer(256)
    r = nv.nvmlSystemGetProcessName(ctypes.c_uint(pid), buf, 256)
    return buf.value.decode() if r == 0 else f"error {r}"


named = {p: name(p) for p in pids}
refused = {"server": name(server_pid), "other client": name(other_pid)}
ok = (other_pid not in pids and all(not v.startswith("error") for v in named.values())
      and all(v == "error 6" for v in refused.values()))  # NVML_ERROR_NOT_FOUND
print(f"{'PASS' if ok else 'FAIL'} nvml_privacy: listed {named}; refused {refused}")
sys.exit(0 if ok else 1)
