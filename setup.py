"""The package's build also builds gpuwire's native parts (`make -C native`),
which land in src/gpuwire/_native/ and ship inside the package.

Set GPUWIRE_SKIP_NATIVE_BUILD=1 to skip that step (./scripts/setup does, and
runs make itself so its output is visible)."""

import os
import subprocess
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithNatives(build_py):
    def run(self):
        if os.environ.get("GPUWIRE_SKIP_NATIVE_BUILD") != "1":
            jobs = str(os.cpu_count() or 1)
            subprocess.run(["make", "-C", str(ROOT / "native"), "-j", jobs], check=True)
        # package data globs are evaluated lazily: drop any cached list so the
        # freshly built files are picked up
        self.__dict__.pop("data_files", None)
        super().run()


class NativeDistribution(Distribution):
    """The wheel carries native executables and libraries: tag it for this platform."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithNatives}, distclass=NativeDistribution)
