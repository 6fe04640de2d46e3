"""Shared by the compat workloads: environment set-up before a framework is
imported, digests of results, and the one JSON result line every workload
prints last. Standard library only at import time (frameworks are imported
by the workloads themselves, after prepare())."""

import hashlib
import json
import os
import sys
import tempfile


def prepare(cublas=False, caches=False):
    """Call before importing any framework.
    cublas: deterministic cuBLAS workspaces (needed by use_deterministic_algorithms).
    caches: private, empty compiler caches, so the native run and the gpuwire
    run both compile their kernels instead of the second reusing the first's."""
    if cublas:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    if caches:
        d = tempfile.mkdtemp(prefix="compat-cache-")
        for var, sub in (("TRITON_CACHE_DIR", "triton"), ("TORCHINDUCTOR_CACHE_DIR", "inductor"),
                         ("CUPY_CACHE_DIR", "cupy"), ("NUMBA_CACHE_DIR", "numba")):
            os.environ[var] = os.path.join(d, sub)
        # One process compiles: no pool of compile workers (each would be
        # another gpuwire client and would overwrite the stats file at exit).
        os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"


def _to_numpy(obj):
    """A numpy array for a torch tensor, CuPy array, JAX array or numpy array; else None."""
    mod = type(obj).__module__ or ""
    if mod.startswith("torch"):
        import torch
        t = obj.detach().cpu().contiguous()
        if t.is_complex():
            t = torch.view_as_real(t).contiguous()
        if t.dtype in (torch.bfloat16,):
            t = t.view(torch.int16)
        elif t.dtype.is_floating_point and t.element_size() == 1:  # fp8
            t = t.view(torch.uint8)
        return t.numpy()
    if mod.startswith("cupy"):
        import cupy
        return cupy.asnumpy(obj)
    if hasattr(obj, "__array__") and not isinstance(obj, (bytes, str)):
        import numpy
        return numpy.asarray(obj)
    return None


class Digest:
    """sha256 over labelled parts: label, dtype, shape and raw bytes of arrays;
    JSON of plain values. Same parts in the same order give the same digest."""

    def __init__(self):
        self.h = hashlib.sha256()
        self.labels = []

    def add(self, label, obj):
        self.labels.append(label)
        self.h.update(label.encode() + b"\0")
        arr = _to_numpy(obj)
        if arr is not None:
            import numpy
            arr = numpy.ascontiguousarray(arr)
            self.h.update(f"{arr.dtype.str}{arr.shape}".encode() + b"\0")
            self.h.update(arr.tobytes())
        elif isinstance(obj, (bytes, bytearray)):
            self.h.update(bytes(obj))
        else:
            self.h.update(json.dumps(obj, sort_keys=True).encode())
        return self

    def hexdigest(self):
        return self.h.hexdigest()


def values_of(obj, limit=4096):
    """Floats (row-major) of an array-like, for comparisons within a tolerance."""
    arr = _to_numpy(obj)
    import numpy
    arr = numpy.asarray(arr, dtype=numpy.float64).reshape(-1)
    if arr.size > limit:
        raise ValueError(f"{arr.size} values: summarise before comparing")
    return [float(x) for x in arr]


def emit(name, digest, tolerance="exact", notes="", values=None, rtol=0.0, atol=0.0, **extra):
    """Print the result line (the last line of stdout) and exit 0.
    tolerance "exact": the runner compares digest. Otherwise it compares values
    elementwise, |native - gpuwire| <= atol + rtol * |native|, and reports
    whether the digests (of the full results) were also equal."""
    line = {"name": name, "digest": digest, "tolerance": tolerance, "notes": notes}
    if tolerance != "exact":
        if values is None:
            raise ValueError("a tolerance needs values")
        line.update(values=values, rtol=rtol, atol=atol)
    line.update(extra)
    sys.stdout.flush()
    sys.stderr.flush()
    print(json.dumps(line), flush=True)

