"""native/client/state/server_memory.c alone (several servers, docs/multi-gpu.md):
which server each device allocation is on, and the refusal of an allocation
whose range overlaps another server's (one address must never name buffers of
two servers). Built here with `cc` around stubs of what it calls; with one
server every function is a no-op."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / "native" / "client" / "state"
CUDA_INCLUDE = Path("/usr/local/cuda/include")

DRIVER = r"""
#include "server_memory.c"
#include <stdio.h>

int gw_servers_n = 1;
static int route;
CUcontext gw_current_context(void) { return (CUcontext)(uintptr_t)(0x100 + route); }
int gw_route_now(void) { return route; }
int gw_route_enter(int k) { return k; }
void gw_route_leave(int prev) { (void)prev; }
void gw_set_address_fn(int (*fn)(uint64_t)) { (void)fn; }
CUresult CUDAAPI cuCtxPushCurrent_v2(CUcontext c) { (void)c; return CUDA_SUCCESS; }
CUresult CUDAAPI cuCtxPopCurrent_v2(CUcontext *c) { (void)c; return CUDA_SUCCESS; }

#define CHECK(cond) do { if (!(cond)) { printf("FAIL line %d: %s\n", __LINE__, #cond); return 1; } } while (0)

int main(void)
{
    /* one server: nothing is kept, nothing clashes */
    CHECK(gw_server_memory_add(0x1000, 0x100, 0) == 0);
    CHECK(gw_server_memory_clashes(0x1000, 0x100, 1) == 0);
    CHECK(gw_server_of_address(0x1000) == 0);

    gw_servers_n = 2;
    route = 0;
    CHECK(gw_server_memory_add(0x1000, 0x100, 0) == 0);
    route = 1;
    CHECK(gw_server_memory_add(0x3000, 0x100, 1) == 0);
    CHECK(gw_server_of_address(0x1000) == 0 && gw_server_of_address(0x10ff) == 0);
    CHECK(gw_server_of_address(0x1100) == -1);
    CHECK(gw_server_of_address(0x3080) == 1);
    CHECK(gw_server_memory_context(0x3080) == (CUcontext)(uintptr_t)0x101);
    /* overlaps: inside, straddling either end, covering; touching is not one */
    CHECK(gw_server_memory_clashes(0x1080, 0x10, 1));
    CHECK(gw_server_memory_clashes(0x0f80, 0x100, 1));
    CHECK(gw_server_memory_clashes(0x10f0, 0x100, 1));
    CHECK(gw_server_memory_clashes(0x0800, 0x10000, 1));
    CHECK(!gw_server_memory_clashes(0x1100, 0x100, 1));
    CHECK(!gw_server_memory_clashes(0x0f00, 0x100, 1));
    CHECK(!gw_server_memory_clashes(0x1080, 0x10, 0)); /* its own server's: the driver's business */
    CHECK(gw_server_memory_add(0x1080, 0x10, 1) == -1);
    CHECK(gw_server_of_address(0x1080) == 0); /* refused: not kept */
    /* freed: the range is another server's to take */
    gw_server_memory_remove(0x1000);
    CHECK(gw_server_of_address(0x1000) == -1);
    CHECK(!gw_server_memory_clashes(0x1080, 0x10, 1));
    for (uint64_t i = 0; i < 1000; i++) /* growth keeps the order */
        CHECK(gw_server_memory_add(0x100000 + i * 0x1000, 0x800, (int)(i % 2)) == 0);
    CHECK(gw_server_of_address(0x100000 + 777 * 0x1000 + 0x7ff) == 1);
    CHECK(gw_server_of_address(0x100000 + 777 * 0x1000 + 0x800) == -1);
    printf("ok\n");
    return 0;
}
"""


def test_ranges_and_refusal(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    if not (CUDA_INCLUDE / "cuda.h").is_file():
        pytest.skip("no cuda.h")
    (tmp_path / "driver.c").write_text(DRIVER)
    exe = tmp_path / "driver"
    r = subprocess.run([cc, "-std=gnu11", "-Wall", "-Wno-unused-function", "-O1", f"-I{STATE}",
                        f"-I{ROOT / 'native' / 'common'}", f"-I{CUDA_INCLUDE}", "-o", str(exe),
                        str(tmp_path / "driver.c"), "-lpthread"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr
