"""gpuwire's build backend: setuptools' own, asking for the native build's requirements
([tool.gpuwire.native-build] requires in pyproject.toml: Zig's C compiler and NVIDIA's
header packages) only where the native parts are built, i.e. for a wheel. An sdist and an
editable install (./scripts/setup, which runs `make -C native` itself) do without them."""

import os
import sys

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (every hook not redefined here)

if sys.version_info >= (3, 11):
    import tomllib
else:  # the build requirements bring tomli there
    import tomli as tomllib


def _native_requires() -> list:
    if os.environ.get("GPUWIRE_SKIP_NATIVE_BUILD") == "1":
        return []
    with open("pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["tool"]["gpuwire"]["native-build"]["requires"])


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + _native_requires()
