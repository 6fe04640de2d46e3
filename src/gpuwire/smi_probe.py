"""The helper `gpuwire smi` runs under `gpuwire run`: it asks NVML and the
CUDA driver about the GPUs through ctypes, so every answer comes through
gpuwire's client libraries (the audit module redirects both), and prints one
JSON object on stdout. Standard library only; run as a file, not imported.
"""

from __future__ import annotations

import ctypes
import json
import sys

NVML_SUCCESS = 0
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_TEMPERATURE_GPU = 0
CLOCKS = {"graphics": 0, "sm": 1, "memory": 2}
COMPUTE_MODES = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}


class Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class PciInfo(ctypes.Structure):
    _fields_ = [("busIdLegacy", ctypes.c_char * 16), ("domain", ctypes.c_uint), ("bus", ctypes.c_uint),
                ("device", ctypes.c_uint), ("pciDeviceId", ctypes.c_uint), ("pciSubSystemId", ctypes.c_uint),
                ("busId", ctypes.c_char * 32)]


class ProcessInfo(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong), ("gpuInstanceId", ctypes.c_uint),
                ("computeInstanceId", ctypes.c_uint)]


class Nvml:
    def __init__(self):
        self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        self.lib.nvmlErrorString.restype = ctypes.c_char_p

    def error(self, rc: int) -> str:
        return f"{self.lib.nvmlErrorString(rc).decode(errors='replace')} ({rc})"

    def call(self, name: str, *args) -> int:
        return getattr(self.lib, name)(*args)

    def text(self, name: str, *args, size: int = 96) -> str | None:
        buf = ctypes.create_string_buffer(size)
        rc = self.call(name, *args, buf, ctypes.c_uint(size))
        return buf.value.decode(errors="replace") if rc == NVML_SUCCESS else None

    def uint(self, name: str, *args) -> int | None:
        v = ctypes.c_uint()
        return v.value if self.call(name, *args, ctypes.byref(v)) == NVML_SUCCESS else None


def nvml_report() -> dict:
    n = Nvml()
    rc = n.call("nvmlInit_v2")
    if rc != NVML_SUCCESS:
        return {"error": f"nvmlInit_v2: {n.error(rc)}"}
    out: dict = {"driver_version": n.text("nvmlSystemGetDriverVersion", size=80),
                 "nvml_version": n.text("nvmlSystemGetNVMLVersion", size=80)}
    cuda = ctypes.c_int()
    out["cuda_version"] = cuda.value if n.call("nvmlSystemGetCudaDriverVersion_v2", ctypes.byref(cuda)) == 0 else None
    count = ctypes.c_uint()
    rc = n.call("nvmlDeviceGetCount_v2", ctypes.byref(count))
    if rc != NVML_SUCCESS:
        out["error"] = f"nvmlDeviceGetCount_v2: {n.error(rc)}"
        return out
    gpus = []
    for i in range(count.value):
        h = ctypes.c_void_p()
        rc = n.call("nvmlDeviceGetHandleByIndex_v2", ctypes.c_uint(i), ctypes.byref(h))
        if rc != NVML_SUCCESS:
            gpus.append({"index": i, "error": f"nvmlDeviceGetHandleByIndex_v2: {n.error(rc)}"})
            continue
        g: dict = {"index": i, "name": n.text("nvmlDeviceGetName", h), "uuid": n.text("nvmlDeviceGetUUID", h)}
        pci = PciInfo()
        g["bus_id"] = pci.busId.decode() if n.call("nvmlDeviceGetPciInfo_v3", h, ctypes.byref(pci)) == 0 else None
        mem = Memory()
        if n.call("nvmlDeviceGetMemoryInfo", h, ctypes.byref(mem)) == NVML_SUCCESS:
            g["memory"] = {"total": mem.total, "used": mem.used, "free": mem.free}
        util = Utilization()
        if n.call("nvmlDeviceGetUtilizationRates", h, ctypes.byref(util)) == NVML_SUCCESS:
            g["utilization"] = {"gpu": util.gpu, "memory": util.memory}
        g["temperature"] = n.uint("nvmlDeviceGetTemperature", h, ctypes.c_int(NVML_TEMPERATURE_GPU))
        g["power_mw"] = n.uint("nvmlDeviceGetPowerUsage", h)
        g["power_limit_mw"] = n.uint("nvmlDeviceGetEnforcedPowerLimit", h)
        g["clocks_mhz"] = {k: n.uint("nvmlDeviceGetClockInfo", h, ctypes.c_int(v)) for k, v in CLOCKS.items()}
        mode = n.uint("nvmlDeviceGetComputeMode", h)
        g["compute_mode"] = COMPUTE_MODES.get(mode, mode) if mode is not None else None
        g["processes"] = processes(n, h)
        gpus.append(g)
    out["gpus"] = gpus
    n.call("nvmlShutdown")
    return out


def processes(n: Nvml, h) -> list[dict] | None:
    count = ctypes.c_uint(0)
    rc = n.call("nvmlDeviceGetComputeRunningProcesses_v3", h, ctypes.byref(count), None)
    if rc not in (NVML_SUCCESS, NVML_ERROR_INSUFFICIENT_SIZE):
        return None
    infos = (ProcessInfo * max(count.value + 4, 1))()  # room for processes starting meanwhile
    count = ctypes.c_uint(len(infos))
    if n.call("nvmlDeviceGetComputeRunningProcesses_v3", h, ctypes.byref(count), infos) != NVML_SUCCESS:
        return None
    procs = []
    for p in infos[:count.value]:
        used = p.usedGpuMemory if p.usedGpuMemory < (1 << 63) else None  # NVML_VALUE_NOT_AVAILABLE
        procs.append({"pid": p.pid, "name": n.text("nvmlSystemGetProcessName", ctypes.c_uint(p.pid), size=256),
                      "used_memory": used})
    return procs


def cuda_report() -> dict:
    """What the CUDA driver shows this client (CUDA_VISIBLE_DEVICES applies here, not to NVML)."""
    lib = ctypes.CDLL("libcuda.so.1")
    rc = lib.cuInit(0)
    if rc != 0:
        return {"error": f"cuInit: CUresult {rc}"}
    ver, count = ctypes.c_int(), ctypes.c_int()
    lib.cuDriverGetVersion(ctypes.byref(ver))
    rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0:
        return {"error": f"cuDeviceGetCount: CUresult {rc}"}
    devices = []
    for i in range(count.value):
        dev = ctypes.c_int()
        if lib.cuDeviceGet(ctypes.byref(dev), i) != 0:
            continue
        uuid = ctypes.create_string_buffer(16)
        d: dict = {"ordinal": i}
        if lib.cuDeviceGetUuid_v2(uuid, dev) == 0:
            h = uuid.raw.hex()
            d["uuid"] = f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        bus = ctypes.create_string_buffer(32)
        if lib.cuDeviceGetPCIBusId(bus, 32, dev) == 0:
            d["bus_id"] = bus.value.decode(errors="replace")
        devices.append(d)
    return {"driver_version": ver.value, "devices": devices}


def main() -> int:
    report: dict = {}
    for key, fn in (("nvml", nvml_report), ("cuda", cuda_report)):
        if key == "cuda" and "--no-cuda" in sys.argv:
            continue
        try:
            report[key] = fn()
        except (OSError, AttributeError) as e:
            report[key] = {"error": f"{type(e).__name__}: {e}"}
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
