"""The package's build also builds gpuwire's native parts (`make -C native`)
and ships them inside the package, in gpuwire/_native/.

Two ways to build:

- A wheel or sdist (`python -m build`, `pip install .`, ./scripts/build-wheel):
  the native parts are built in build/ with Zig's C compiler (the `ziglang`
  build requirement) for glibc 2.28, stripped, against cuda.h and nvml.h from
  the pinned NVIDIA header packages (build requirements too), so no CUDA toolkit
  is needed, and the wheel is tagged py3-none-manylinux_2_28_<arch> (nothing in
  it depends on Python's ABI).
- A checkout (./scripts/setup): GPUWIRE_SKIP_NATIVE_BUILD=1 skips the step
  here; the script runs `make -C native` itself into src/gpuwire/_native/.

Settings (environment):
  GPUWIRE_SKIP_NATIVE_BUILD=1   no native build (an editable install without it runs
                                `make -C native` into src/gpuwire/_native, as ./scripts/setup)
  GPUWIRE_ARCH=aarch64          cross-build the native parts for aarch64 (Zig only)
  GPUWIRE_CC="gcc"              another C compiler: the wheel is then tagged
                                linux_<arch>, for this machine only
  GPUWIRE_CUDA_HOME=DIR         take cuda.h (and nvml.h if there) from DIR/include
                                instead of the header packages
"""

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    try:
        from wheel.bdist_wheel import bdist_wheel
    except ImportError:
        bdist_wheel = None

ROOT = Path(__file__).resolve().parent
GLIBC = "2.28"  # the oldest glibc the native parts run on: manylinux_2_28
ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
# what the package carries from the native build (make -C native); unversioned
# names are copies of the versioned libraries (a wheel holds no symbolic links)
NATIVE_FILES = ["libcuda.so.1", "libcuda.so", "libnvidia-ml.so.1", "libnvidia-ml.so", "gpuwire_audit.so",
                "gpuwire_sample.so", "gpuwire-worker", "gpuwire-demo", "libgpuwire_standin.so", "libgpuwire_standin_nvml.so"]


def target_arch() -> str:
    arch = os.environ.get("GPUWIRE_ARCH") or platform.machine()
    if arch.lower() not in ARCHES:
        sys.exit(f"gpuwire: cannot build the native parts for {arch!r} (x86_64 or aarch64)")
    return ARCHES[arch.lower()]


def zig_available() -> bool:
    try:
        import ziglang  # noqa: F401  (the build requirement)
    except ImportError:
        return False
    return True


def compiler(quiet: bool = False) -> tuple[str, bool]:
    """The C compiler command line for make's CC, and whether it targets manylinux_2_28."""
    if os.environ.get("GPUWIRE_CC"):
        return os.environ["GPUWIRE_CC"], False
    arch = target_arch()
    if zig_available():
        return f"{sys.executable} -m ziglang cc -target {arch}-linux-gnu.{GLIBC}", True
    if arch != ARCHES.get(platform.machine().lower()):
        sys.exit("gpuwire: cross-building needs the ziglang package (pip install ziglang)")
    if not quiet:
        print("gpuwire: ziglang is not installed: building the native parts with cc for this machine only "
              "(the wheel is not manylinux)", file=sys.stderr)
    return "cc", False


def header_dirs() -> dict[str, str]:
    """make variables naming where cuda.h and nvml.h are: the pinned header packages
    (nvidia-cuda-runtime, nvidia-nvml-dev: both install nvidia/cu13/include), else
    the Makefile's own search (the CUDA toolkit in /usr/local/cuda, build/nvml)."""
    if os.environ.get("GPUWIRE_CUDA_HOME"):
        return {"CUDA_HOME": os.environ["GPUWIRE_CUDA_HOME"]}
    try:
        import nvidia  # a namespace package: one entry per installed NVIDIA wheel's folder
        roots = [Path(p) for p in nvidia.__path__]
    except ImportError:
        roots = []
    found = {}
    for root in roots:
        for inc in sorted(root.glob("cu*/include")):
            for header in ("cuda.h", "nvml.h"):
                if header not in found and (inc / header).is_file():
                    found[header] = inc
    if "cuda.h" not in found:
        print("gpuwire: the header packages are not installed: the CUDA toolkit's cuda.h is needed",
              file=sys.stderr)
        return {}
    out = {"CUDA_HOME": str(found["cuda.h"].parent)}
    if "nvml.h" in found:
        out["NVML_INCLUDE"] = str(found["nvml.h"])
    return out


def manylinux_tag() -> str:
    return f"manylinux_{GLIBC.replace('.', '_')}_{target_arch()}"


class BuildWithNatives(build_py):
    """build_py, then `make -C native` into build/, and the results copied into the package."""

    def run(self):
        super().run()
        if os.environ.get("GPUWIRE_SKIP_NATIVE_BUILD") == "1":
            return
        if getattr(self, "editable_mode", False):  # pip install -e: the checkout's own build, in place
            subprocess.run(["make", "-C", str(ROOT / "native"), "-j", str(os.cpu_count() or 1)], check=True)
            return
        cc, _ = compiler()
        dest = Path(self.build_lib).resolve().parent / f"gpuwire-native-{target_arch()}"
        if dest.exists():  # never reuse objects from another compiler or an earlier tree
            shutil.rmtree(dest)
        env = dict(os.environ)
        # CFLAGS from the environment, so that the Makefile still adds its own flags; -s
        # strips at link time (compile steps ignore it)
        env["CFLAGS"] = "-O2 -s"
        make = ["make", "-C", str(ROOT / "native"), "-j", str(os.cpu_count() or 1), f"DEST={dest}", f"CC={cc}",
                "STANDIN_CFLAGS=-O2 -s"]
        make += [f"{k}={v}" for k, v in header_dirs().items()]
        print("gpuwire: " + " ".join(make), file=sys.stderr)
        subprocess.run(make, check=True, env=env)
        out = Path(self.build_lib) / "gpuwire" / "_native"
        out.mkdir(parents=True, exist_ok=True)
        for name in NATIVE_FILES:
            shutil.copyfile(dest / name, out / name)  # follows the links
            os.chmod(out / name, 0o755)


class NativeDistribution(Distribution):
    """The wheel carries native executables and libraries: it is not pure Python."""

    def has_ext_modules(self):
        return True


cmdclass = {"build_py": BuildWithNatives}

if bdist_wheel is not None:
    class PlatformWheel(bdist_wheel):
        """py3-none-<platform>: the native parts never touch Python's ABI."""

        def get_tag(self):
            _, _, plat = super().get_tag()
            if compiler(quiet=True)[1]:
                plat = manylinux_tag()
            elif os.environ.get("GPUWIRE_ARCH"):
                plat = f"linux_{target_arch()}"
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = PlatformWheel

setup(cmdclass=cmdclass, distclass=NativeDistribution)
