"""The memory cap charges what the driver maps, not what was asked: one-byte
allocations under a 16 MiB cap run out long before 16 Mi of them (issue 18,
finding 9), freeing gives back what was charged, and cuMemGetInfo shows the
charge. tests/programs/memcap_small does the allocating."""

import re

import pytest

from conftest import PROGRAMS_DIR, explain, gw_run

PROGRAM = PROGRAMS_DIR / "memcap_small"
CAP = 16 << 20
RESULT = re.compile(r"^RESULT kind=(\w+) (.*)$", re.M)


def run(server, *args, cap=CAP):
    if not PROGRAM.is_file():
        pytest.skip("build/programs/memcap_small is not built (make -C tests/programs)")
    r = gw_run([str(PROGRAM), *map(str, args)], server=server.address, env={"GPUWIRE_MEM_CAP": str(cap)},
               timeout=120)
    assert r.returncode == 0 and "PASS memcap_small" in r.stdout, explain(r, server)
    return {m.group(1): dict(kv.split("=", 1) for kv in m.group(2).split()) for m in RESULT.finditer(r.stdout)}, r


def test_small_allocations_are_charged_the_driver_granularity(server):
    # 100,000 one-byte allocations: 100 KB asked, far more mapped
    res, r = run(server, 100_000, 1, "alloc", 0)
    a = res["alloc"]
    done, charged = int(a["done"]), int(a["charged"])
    assert int(a["stop"]) == 2, explain(r, server)  # CUDA_ERROR_OUT_OF_MEMORY
    assert 0 < done < 100_000 and charged >= done * 256, a  # at least the driver's 256-byte alignment each
    assert CAP - charged < charged // done, a  # stopped because the next one did not fit
    assert int(a["returned"]) == charged, a  # freeing gives it all back
    assert int(a["free_before"]) == CAP, a


# size asked -> allocations that fit under 16 MiB, as the driver maps them (measured on an H100,
# driver 580.159, with memcap_small: 512-byte blocks, as many as fit share a 2 MiB page, blocks
# over 1 MiB take whole pages)
FITS = {513: 16384, 512 * 1024 + 1: 24, 1 << 20: 16, (1 << 20) + 1: 8, (2 << 20) + 1: 4}


@pytest.mark.parametrize("size", sorted(FITS))
def test_allocations_are_charged_as_the_driver_maps_them(server, size):
    want = FITS[size]
    res, r = run(server, want + 10, size, "alloc", 0)
    a = res["alloc"]
    assert (int(a["stop"]), int(a["done"])) == (2, want), a
    assert int(a["charged"]) == int(a["returned"]) > CAP - CAP // want, a


def test_pitched_and_other_paths(server):
    res, r = run(server, 40_000, 1, "pitch", 0)  # one 512-byte row each
    p = res["pitch"]
    assert (int(p["stop"]), int(p["done"])) == (2, 32768) and int(p["returned"]) == int(p["charged"]), p
    # stream-ordered allocations (the stand-in's: tests/standin/mempool.c) are charged the same
    res, r = run(server, 40_000, 1, "async", 0)
    a = res["async"]
    assert (int(a["stop"]), int(a["done"])) == (2, 32768) and int(a["returned"]) == int(a["charged"]), a
    # its VMM allocator (tests/standin/vmm.c) takes 2 MiB granules, as an H100's: 8 fit in 16 MiB
    res, r = run(server, 10, 1, "vmm", 0)
    v = res["vmm"]
    assert (int(v["stop"]), int(v["done"])) == (2, 8) and int(v["returned"]) == int(v["charged"]), v
