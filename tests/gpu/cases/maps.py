"""Load libcuda.so.1 by name, initialise it and show which file is mapped.
Under gpuwire (GPUWIRE_LIBDIR set) it fails unless the mapped libcuda is
gpuwire's and no file of the NVIDIA driver is mapped."""
import ctypes
import os
import sys

cuda = ctypes.CDLL("libcuda.so.1")
rc = cuda.cuInit(0)
name = ctypes.create_string_buffer(100)
dev = ctypes.c_int()
cuda.cuDeviceGet(ctypes.byref(dev), 0)
cuda.cuDeviceGetName(name, 100, dev)
print("cuInit", rc, "device", name.value.decode())
maps = [line.split()[-1] for line in open("/proc/self/maps") if "/" in line]
cudas = sorted({m for m in maps if "libcuda.so" in m})
libdir = os.environ.get("GPUWIRE_LIBDIR")
if libdir:
    ours = all(os.path.dirname(m) == libdir for m in cudas)
    driver = [m for m in maps if "/usr/local/nvidia/" in m or "libnvidia-" in m]
    print("libcuda ok" if cudas and ours and not driver else f"WRONG libcuda {cudas} driver files {driver}")
    sys.exit(0 if cudas and ours and not driver else 1)
print("libcuda ok")
