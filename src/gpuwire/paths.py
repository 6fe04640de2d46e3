"""Where gpuwire's native files live: the one place that knows.

`make -C native` (run by ./scripts/setup and by the package's own build) puts
them in src/gpuwire/_native/; an installed wheel carries them in the same
place inside the package.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
NATIVE_DIR = PACKAGE_DIR / "_native"

CLIENT_LIB = "libcuda.so.1"          # the client library, same SONAME as the driver
AUDIT_MODULE = "gpuwire_audit.so"    # the LD_AUDIT module
WORKER = "gpuwire-worker"            # the data-plane worker executable
STANDIN_DRIVER = "libgpuwire_standin.so"  # CPU stand-in driver (a test double)
NVML_LIB = "libnvidia-ml.so.1"       # the NVML client library, same SONAME as NVIDIA's
STANDIN_NVML = "libgpuwire_standin_nvml.so"  # CPU stand-in NVML (a test double)


class NativeMissing(RuntimeError):
    """A native file is not built. The message says how to build it."""


def native_dir() -> Path:
    return NATIVE_DIR


def native_file(name: str, executable: bool = False) -> Path:
    path = NATIVE_DIR / name
    if not path.is_file():
        raise NativeMissing(
            f"gpuwire's native file {name} is missing (expected {path}). "
            f"Build the native parts: run ./scripts/setup in the gpuwire checkout "
            f"(or `make -C native`).")
    if executable and not os.access(path, os.X_OK):
        raise NativeMissing(f"{path} is not executable; rebuild it with ./scripts/setup (or `make -C native`).")
    return path


def client_lib() -> Path:
    return native_file(CLIENT_LIB)


def audit_module() -> Path:
    return native_file(AUDIT_MODULE)


def worker() -> Path:
    return native_file(WORKER, executable=True)


def standin_driver() -> Path:
    return native_file(STANDIN_DRIVER)


def standin_nvml() -> Path:
    return native_file(STANDIN_NVML)


def source_root() -> Path | None:
    """The gpuwire checkout this package runs from (editable install), else None."""
    root = PACKAGE_DIR.parent.parent
    if (root / "native").is_dir() and (root / "pyproject.toml").is_file():
        return root
    return None


def programs_dir() -> Path | None:
    """build/programs of the checkout (built by `make -C tests/programs`), else None."""
    root = source_root()
    return root / "build" / "programs" if root else None


def write_private(path: Path, text: str, uid: int | None = None, gid: int | None = None) -> None:
    """Replace path with text, mode 600 (owned by uid/gid when running as root):
    written to a temporary file beside it first, so a reader never sees half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        if uid is not None and os.geteuid() == 0:
            os.fchown(fd, uid, gid if gid is not None else -1)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
