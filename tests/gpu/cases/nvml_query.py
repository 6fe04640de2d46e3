"""NVML as PyTorch, Ollama and nvidia-smi-style tools use it, through ctypes:
init, count, handles by index/UUID/PCI bus id, identity, memory total, compute
capability, versions, and the agreement of NVML's UUIDs and bus ids with
libcuda's. Prints only what does not change between runs, so the output
natively and through gpuwire must be identical."""
import ctypes
import sys

nv = ctypes.CDLL("libnvidia-ml.so.1")
nv.nvmlErrorString.restype = ctypes.c_char_p


def ok(rc, what):
    if rc != 0:
        print(f"{what}: {nv.nvmlErrorString(rc).decode()} ({rc})")
        sys.exit(1)


def text(fn, *args, size=96):
    buf = ctypes.create_string_buffer(size)
    ok(getattr(nv, fn)(*args, buf, size), fn)
    return buf.value.decode()


class Pci(ctypes.Structure):
    _fields_ = [("busIdLegacy", ctypes.c_char * 16), ("domain", ctypes.c_uint), ("bus", ctypes.c_uint),
                ("device", ctypes.c_uint), ("pciDeviceId", ctypes.c_uint), ("pciSubSystemId", ctypes.c_uint),
                ("busId", ctypes.c_char * 32)]


class Mem(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


ok(nv.nvmlInit_v2(), "nvmlInit_v2")
print("driver", text("nvmlSystemGetDriverVersion", size=80), "nvml", text("nvmlSystemGetNVMLVersion", size=80))
v = ctypes.c_int()
ok(nv.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(v)), "cuda version")
print("cuda driver version", v.value)
n = ctypes.c_uint()
ok(nv.nvmlDeviceGetCount_v2(ctypes.byref(n)), "count")
print("devices", n.value)
nvml_ids = {}
for i in range(n.value):
    h = ctypes.c_void_p()
    ok(nv.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(h)), "handle")
    uuid = text("nvmlDeviceGetUUID", h)
    pci = Pci()
    ok(nv.nvmlDeviceGetPciInfo_v3(h, ctypes.byref(pci)), "pci")
    mem = Mem()
    ok(nv.nvmlDeviceGetMemoryInfo(h, ctypes.byref(mem)), "memory")
    major, minor = ctypes.c_int(), ctypes.c_int()
    ok(nv.nvmlDeviceGetCudaComputeCapability(h, ctypes.byref(major), ctypes.byref(minor)), "cc")
    idx, minor_no = ctypes.c_uint(), ctypes.c_uint()
    ok(nv.nvmlDeviceGetIndex(h, ctypes.byref(idx)), "index")
    h2, h3 = ctypes.c_void_p(), ctypes.c_void_p()
    ok(nv.nvmlDeviceGetHandleByUUID(uuid.encode(), ctypes.byref(h2)), "by uuid")
    ok(nv.nvmlDeviceGetHandleByPciBusId_v2(pci.busId, ctypes.byref(h3)), "by bus id")
    print(f"gpu {i}: index {idx.value} {text('nvmlDeviceGetName', h)} {uuid} {pci.busId.decode()} "
          f"pci id {pci.pciDeviceId:08x} memory {mem.total} cc {major.value}.{minor.value} "
          f"same handle by uuid {h2.value == h.value} by bus id {h3.value == h.value}")
    temp, power, util = ctypes.c_uint(), ctypes.c_uint(), (ctypes.c_uint * 2)()
    print(f"gpu {i}: temperature rc {nv.nvmlDeviceGetTemperature(h, 0, ctypes.byref(temp))} "
          f"power rc {nv.nvmlDeviceGetPowerUsage(h, ctypes.byref(power))} "
          f"utilization rc {nv.nvmlDeviceGetUtilizationRates(h, util)}")
    nvml_ids[uuid] = pci.busIdLegacy.decode()
ok(nv.nvmlShutdown(), "shutdown")

cu = ctypes.CDLL("libcuda.so.1")
assert cu.cuInit(0) == 0
c = ctypes.c_int()
cu.cuDeviceGetCount(ctypes.byref(c))
for i in range(c.value):
    d = ctypes.c_int()
    cu.cuDeviceGet(ctypes.byref(d), i)
    u = ctypes.create_string_buffer(16)
    cu.cuDeviceGetUuid_v2(u, d)
    x = u.raw.hex()
    uuid = f"GPU-{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"
    bus = ctypes.create_string_buffer(32)
    cu.cuDeviceGetPCIBusId(bus, 32, d)
    agree = nvml_ids.get(uuid, "").lower() == bus.value.decode().lower()
    print(f"cuda device {i}: {uuid} {bus.value.decode()} nvml agrees {agree}")
