"""A call whose answer takes long is named on the client
(GPUWIRE_WAIT_NOTICE_S; native/client/wire/long_waits.c): a synchronize
behind a host function that sleeps 3.5 s gets a line at 1 s, another when
its wait has doubled, and one when the answer comes; the program's result is
untouched. GPUWIRE_WAIT_NOTICE_S=0 (and the 60 s default for so short a
wait) prints none."""

from __future__ import annotations

import re
import sys

from conftest import explain, gw_run

SLEEPER = r"""
import ctypes, time
cu = ctypes.CDLL("libcuda.so.1")
ctx, dev = ctypes.c_void_p(), ctypes.c_int()
assert cu.cuInit(0) == 0 and cu.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0 and cu.cuCtxSetCurrent(ctx) == 0
HOSTFN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
fn = HOSTFN(lambda _: time.sleep(3.5))
assert cu.cuLaunchHostFunc(None, fn, None) == 0
t = time.time()
rc = cu.cuStreamSynchronize(None)
print(f"SYNC rc={rc} after {time.time() - t:.1f}", flush=True)
"""

WAITED = re.compile(r"gpuwire: cuStreamSynchronize has waited (\d+) s for its answer")


def test_a_long_wait_is_named_and_its_end_too(server):
    r = gw_run([sys.executable, "-c", SLEEPER], server=server.address, env={"GPUWIRE_WAIT_NOTICE_S": "1"},
               timeout=60)
    assert r.returncode == 0 and "SYNC rc=0" in r.stdout, explain(r, server)
    waited = [int(x) for x in WAITED.findall(r.stderr)]
    # at 1 s (or 2 if the watcher's second-long sleep fell just so), then once the wait has doubled
    assert len(waited) == 2 and waited[0] in (1, 2) and waited[1] >= 2 * waited[0], r.stderr
    ended = re.findall(r"gpuwire: cuStreamSynchronize answered after (\d+\.\d) s", r.stderr)
    assert len(ended) == 1 and 3.0 <= float(ended[0]) < 10, r.stderr


def test_no_line_when_off_or_short_of_the_default(server):
    for env in ({"GPUWIRE_WAIT_NOTICE_S": "0"}, {}):
        r = gw_run([sys.executable, "-c", SLEEPER], server=server.address, env=env, timeout=60)
        assert r.returncode == 0 and "SYNC rc=0" in r.stdout, explain(r, server)
        assert "has waited" not in r.stderr and "answered after" not in r.stderr, r.stderr


def test_a_bad_value_is_named_and_the_default_kept(server):
    r = gw_run([sys.executable, "-c", "import ctypes; print(ctypes.CDLL('libcuda.so.1').cuInit(0))"],
               server=server.address, env={"GPUWIRE_WAIT_NOTICE_S": "soon"}, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "0", explain(r, server)
    assert "GPUWIRE_WAIT_NOTICE_S=soon is not valid" in r.stderr, r.stderr
