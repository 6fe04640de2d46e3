"""Page-locked memory without DEVICEMAP handed to kernels inside their
arguments (issues 15 and 14; docs/host-memory.md): gpuwire reads each
launch's parameter bytes and makes such memory a mapped range before the
launch, so the kernel's write reaches the host after a synchronize. Against
the stand-in, with tests/programs/pinned_kernel_args.cu: a pointer parameter,
a pointer inside a struct passed by value, cudaLaunchKernelEx, a cooperative
launch, a graph kernel node and its parameters set anew, one allocation each; integers alone, which map nothing; and a
registration sharing its page with other data, which cannot be mapped in
place: said once, and the kernel faults (the documented limit)."""

import pytest

from conftest import NOT_BUILT, PROGRAMS_DIR, explain, gw_run

CONVERTED = "is now mapped: a kernel's arguments point into it"


@pytest.mark.parametrize("flavour", ["shared", "static"])
def test_kernels_write_page_locked_memory_they_get_in_their_arguments(server, flavour):
    program = PROGRAMS_DIR / f"pinned_kernel_args_{flavour}"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    result = gw_run([str(program)], server=server.address, timeout=120, env={"GPUWIRE_DEBUG": "1"})
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.strip().splitlines() == [
        "launch: 1007",
        "launch again: 1018",
        "struct argument: 1020",
        "cudaLaunchKernelEx: 1030",
        "cooperative launch: 1035",
        "graph kernel node: 1080",
        "graph kernel node set anew: 1050",
        "PASS pinned_kernel_args",
    ], explain(result, server)
    # one conversion per allocation (six), none for a pointer already mapped
    converted = [line for line in result.stderr.splitlines() if CONVERTED in line]
    assert len(converted) == 6, explain(result, server)
    assert len({line.split(" at ")[1].split()[0] for line in converted}) == 6, explain(result, server)
    assert "cannot map it for the device" not in result.stderr, explain(result, server)


def test_integer_arguments_map_nothing(server):
    """An 8-byte integer just past the lower of two page-locked allocations'
    ends (inside the span around them, in neither), and a small one: no
    conversion, and the device-to-host copy into a page-locked buffer still
    lands there."""
    program = PROGRAMS_DIR / "pinned_kernel_args_shared"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    result = gw_run([str(program), "integer"], server=server.address, timeout=60, env={"GPUWIRE_DEBUG": "1"})
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.strip().splitlines() == ["integer arguments: summed", "PASS pinned_kernel_args"], \
        explain(result, server)
    assert "cuMemHostAlloc: 8 bytes, flags 0x0" in result.stderr, explain(result, server)
    assert "is now mapped" not in result.stderr, explain(result, server)


def test_a_registration_sharing_its_page_is_said_once_and_faults(server):
    """malloc'd memory registered without DEVICEMAP shares its page with the
    allocator's data, so gpuwire cannot make it a mapped range in place:
    handed to two kernels, it is logged once (without GPUWIRE_DEBUG), and the
    kernel faults as the docs say, instead of writing somewhere else."""
    program = PROGRAMS_DIR / "pinned_kernel_args_shared"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    result = gw_run([str(program), "unmappable"], server=server.address, timeout=60)
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.strip().splitlines() == ["unmappable registration: cudaErrorIllegalAddress"], \
        explain(result, server)
    assert result.stderr.count("is handed to a kernel in its arguments, but gpuwire cannot map it") == 1, \
        explain(result, server)
