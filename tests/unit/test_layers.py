"""The native code's layers (docs/architecture.md) hold: no file calls or
includes a file of a higher layer.

Each .c file is compiled alone (-c); a global symbol a file needs that a
file of a higher layer defines is a call upward. Calls to the library's own
public driver entry points (cu*, nvml*) are allowed: they go through the API
as an application's would, not into another layer's internals."""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "native"

# lower number = lower layer; a file may use its own layer and those below
CLIENT_LAYERS = {"diag": 0, "wire": 1, "state": 2, "private": 3, "api": 4, "report": 5}
WORKER_LAYERS = {"core": 0, "handlers": 1, "engine": 2, "main.c": 3}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(path: Path, base: Path, layers: dict[str, int]) -> int | None:
    rel = path.relative_to(base).parts
    return layers.get(rel[0])


def files(base: Path, layers: dict[str, int]) -> list[Path]:
    out = []
    for name in layers:
        p = base / name
        out += sorted(p.glob("*.[ch]")) if p.is_dir() else [p]
    return out


@pytest.mark.parametrize("part,layers", [("client", CLIENT_LAYERS), ("worker", WORKER_LAYERS)])
def test_includes_point_down(part, layers):
    base = NATIVE / part
    wrong = []
    for f in files(base, layers):
        mine = layer_of(f, base, layers)
        for inc in INCLUDE.findall(f.read_text()):
            target = (f.parent / inc).resolve()
            try:
                theirs = layer_of(target, base, layers)
            except ValueError:
                continue  # outside this part: common/, generated/, system
            if theirs is not None and theirs > mine:
                wrong.append(f"{f.relative_to(NATIVE)} includes {inc}")
    assert not wrong, "includes of a higher layer:\n" + "\n".join(wrong)


def symbols(obj: Path) -> tuple[set[str], set[str]]:
    out = subprocess.run(["nm", str(obj)], capture_output=True, text=True, check=True).stdout
    defined, needed = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            needed.add(parts[1])
        elif len(parts) == 3 and parts[1] in "TDBRVW":
            defined.add(parts[2])
    return defined, needed


def cuda_include() -> Path | None:
    for d in ("/usr/local/cuda/include", "/usr/include"):
        if (Path(d) / "cuda.h").exists():
            return Path(d)
    return None


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None or cuda_include() is None,
                    reason="needs gcc, nm and cuda.h")
@pytest.mark.parametrize("part,layers", [("client", CLIENT_LAYERS), ("worker", WORKER_LAYERS)])
def test_no_calls_up(part, layers, tmp_path):
    base = NATIVE / part
    sources = [f for f in files(base, layers) if f.suffix == ".c"]
    flags = ["-std=gnu11", "-fPIC", "-c", f"-I{cuda_include()}", f"-I{NATIVE / 'common'}"]
    nvml = ROOT / "build" / "nvml" / "include"  # scripts/setup puts nvml.h here where CUDA has none
    if nvml.is_dir():
        flags.append(f"-I{nvml}")

    def compile_one(src: Path) -> Path:
        obj = tmp_path / (str(src.relative_to(base)).replace("/", "__") + ".o")
        r = subprocess.run(["gcc", *flags, str(src), "-o", str(obj)], capture_output=True, text=True)
        assert r.returncode == 0, f"{src}: {r.stderr[-2000:]}"
        return obj

    with ThreadPoolExecutor(max_workers=4) as pool:
        objs = dict(zip(sources, pool.map(compile_one, sources)))
    owner: dict[str, Path] = {}
    needs: dict[Path, set[str]] = {}
    for src, obj in objs.items():
        defined, needed = symbols(obj)
        for s in defined:
            owner[s] = src
        needs[src] = needed
    wrong = []
    for src, needed in needs.items():
        mine = layer_of(src, base, layers)
        for s in sorted(needed):
            if s.startswith(("cu", "nvml")) or s not in owner:
                continue
            theirs = layer_of(owner[s], base, layers)
            if theirs > mine:
                wrong.append(f"{src.relative_to(NATIVE)} calls {s} of {owner[s].relative_to(NATIVE)}")
    assert not wrong, "calls into a higher layer:\n" + "\n".join(wrong)
