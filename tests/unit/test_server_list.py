"""GPUWIRE_SERVER / `gpuwire run --server` with several servers (docs/multi-gpu.md):
the list as `gpuwire run` writes it for the client library, and what it refuses
(the library reads the same rules: native/client/wire/dial.c gw_servers_entry)."""

import pytest

from gpuwire import clientenv, runner


def test_a_list_is_written_in_full():
    assert runner.server_address("a:7750, b", {}) == "a:7750,b:7750"
    assert runner.server_address(None, {"GPUWIRE_SERVER": "[::1]:9,10.0.0.2"}) == "[::1]:9,10.0.0.2:7750"
    assert runner.server_address("gpu-box", {}) == "gpu-box:7750"  # one server: as before


@pytest.mark.parametrize("text", ["a,,b", "a,", ",a", "a,b:0", "a,b:x", ",".join(["h"] * 9)])
def test_bad_lists_are_refused(text):
    assert clientenv.parse_servers(text) is None
    with pytest.raises(ValueError):
        runner.server_address(None, {"GPUWIRE_SERVER": text})


def test_eight_servers_are_the_most():
    assert len(clientenv.parse_servers(",".join(f"h{i}" for i in range(8)))) == 8
    with pytest.raises(ValueError, match="at most 8 servers"):
        runner.server_address(",".join(f"h{i}" for i in range(9)), {})
