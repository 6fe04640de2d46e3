"""Issue 4: a kernel's printf output, which the driver writes to the worker's
stdout at synchronization points, reaches the client's stdout (as unasked
GW_OP_STDOUT frames) before the synchronizing call returns there: device lines
come in order with the host lines around them, and none reach the server log."""

import pytest

from conftest import ROOT, explain, gw_run

PROGRAMS = ROOT / "build" / "programs"

EXPECTED = [
    "host: start",
    "device says 1",
    "host: after device synchronize",
    "device says 2",
    "host: after stream synchronize",
    "device says 3",
    "host: after event synchronize",
    "device says 4",
    "host: after copy",
    "PASS device_printf",
]


@pytest.mark.parametrize("flavour", ["shared", "static"])
def test_device_printf_reaches_client_stdout_before_the_synchronize_returns(server, flavour):
    program = PROGRAMS / f"device_printf_{flavour}"
    if not program.exists():
        pytest.skip(f"build/programs/device_printf_{flavour} is not built (run scripts/setup)")
    result = gw_run([str(program)], server=server.address, timeout=120)
    assert result.returncode == 0, explain(result, server)
    # stdout is a pipe here (fully buffered in the client): the host lines before
    # a launch must still come before that launch's device line
    assert result.stdout.splitlines() == EXPECTED, explain(result, server)
    assert "device says" not in result.stderr, explain(result, server)
    assert not [ln for ln in server.log_lines() if "device says" in ln], explain(result, server)
