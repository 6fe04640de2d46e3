#!/usr/bin/env python3
"""Two builds of the worker, the same sessions: every frame each sends back and
every log line, diffed. The sessions are native/fuzz/make_seeds.py's seeds,
one using the content cache (CAS_REFS / CAS_DATA to a copy and to the staging
buffer, hits and misses), the control ops' answers (DEVICE_ATTRS, FUNC_LAYOUT,
cuGetErrorString/Name), and one session per malformed frame (each control
op's and copy format's checks), on the CPU stand-in driver, each worker with a
fresh cache folder. For a refactor that must not change the wire: only what
depends on timing (cuEventElapsedTime's value) should differ.

Usage: tools/worker-wire-diff.py OLD_WORKER [NEW_WORKER]
  NEW_WORKER defaults to this tree's src/gpuwire/_native/gpuwire-worker (make -C native);
  an older commit's: git archive COMMIT | tar -x -C DIR && make -C DIR/native
Exit status 1 if anything differs."""
import difflib
import hashlib
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "src" / "gpuwire" / "_native"
sys.path.insert(0, str(ROOT / "native" / "fuzz"))
import make_seeds as ms  # noqa: E402
from make_seeds import Session, u32, u64, ph, OPS, NOREPLY, COLLECT  # noqa: E402


OP_ERROR, OP_REPLY, OP_CAS_REFS, OP_CAS_DATA = 3, 4, 18, 19
TAG = 0xD5D5  # make_seeds.ph: the first output of an earlier reply


class Ended(Exception):
    """The worker ended the session (an ERROR frame, or it closed)."""


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        x = s.recv(n - len(b))
        if not x:
            return None
        b += x
    return b


def read_frame(s):
    h = recv_exact(s, 16)
    if h is None:
        return None
    ln, op, fl, tid, seq = struct.unpack("<IHHII", h)
    p = recv_exact(s, ln)
    return (op, fl, tid, seq, p if p is not None else b"<cut>")


def show(f) -> str:
    return f"op={f[0]} fl={f[1]} tid={f[2]} seq={f[3]} len={len(f[4])} {f[4].hex()}"


def substitute(p: bytearray, rec):
    """As native/fuzz/fuzz_worker.c does: placeholders become earlier replies' outputs."""
    i = 0
    while i + 8 <= len(p):
        v = struct.unpack_from("<Q", p, i)[0]
        k = (v >> 32) & 0xFFFF
        if (v >> 48) == TAG and k < len(rec):
            struct.pack_into("<Q", p, i, (rec[k] + (v & 0xFFFFFFFF)) & (2**64 - 1))
            i += 8
        else:
            i += 1


def play(worker, standin, nvml, cache, data: bytes, name: str) -> list[str]:
    """One session: the frames in data sent in order, each answer awaited; what came back, and the log."""
    a, b = socket.socketpair()
    # without address-space randomisation the stand-in's device addresses repeat from run to run
    cmd = ["setarch", "-R"] if shutil.which("setarch") else []
    cmd += [worker, "--fd", str(b.fileno()), "--driver", standin, "--nvml", nvml, "--session", "1",
            "--stall-timeout", "10", "--cache-dir", cache, "--cache-max-bytes", str(1 << 30)]
    proc = subprocess.Popen(cmd, pass_fds=[b.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    b.close()
    a.settimeout(10)
    out = [f"== {name}"]
    f = read_frame(a)
    out.append(f"hello_ok op={f[0]} len={len(f[4])}")
    rec = []
    pos = 0
    try:
        while pos < len(data):
            ln, op, fl, tid, seq = struct.unpack_from("<IHHII", data, pos)
            payload = bytearray(data[pos + 16: pos + 16 + ln])
            pos += 16 + ln
            substitute(payload, rec)
            a.sendall(struct.pack("<IHHII", ln, op, fl, tid, seq) + payload)
            if op == ms.OP_BYE or len(payload) != ln:
                break
            if fl & NOREPLY:
                continue
            while True:
                f = read_frame(a)
                if f is None:
                    out.append("EOF")
                    raise Ended
                out.append(show(f))
                if f[0] == OP_REPLY:
                    rec.append(struct.unpack_from("<Q", f[4].ljust(12, b"\0"), 4)[0])
                    break
                if f[0] == OP_ERROR:
                    raise Ended
        while True:
            f = read_frame(a)
            if f is None:
                out.append("EOF")
                break
            out.append(show(f))
    except (Ended, socket.timeout, ConnectionResetError) as e:
        out.append(f"stop {type(e).__name__}")
    a.close()
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    out.append(f"rc={proc.returncode}")
    for line in err.decode(errors="replace").splitlines():
        # the message, without what precedes it (time)
        out.append("log: " + line.split("] ", 1)[-1] if "] " in line else "log: " + line)
    return out


def frame(op, payload, flags=0, tid=1, seq=1):
    opnum = OPS[op] if isinstance(op, str) else op
    return struct.pack("<IHHII", len(payload), opnum, flags, tid, seq) + payload


def cas_session():
    s = Session()
    s.context()
    a = s.alloc(8192)
    chunk1 = bytes(range(256)) * 8
    chunk2 = b"gpuwire" * 100
    refs = u32(2) + u32(len(chunk1)) + hashlib.sha256(chunk1).digest() + u32(len(chunk2)) + hashlib.sha256(chunk2).digest()
    op = OPS["cuMemcpyHtoD_v2"]
    copy_t = u32(1) + u32(op) + u64(ph(a), 0)
    s.frame(OP_CAS_REFS, copy_t + refs)
    s.frame(OP_CAS_DATA, u32(1) + u32(op) + u64(ph(a), 0) + u32(0, len(chunk1)) + chunk1, NOREPLY)
    s.frame(OP_CAS_DATA, u32(1) + u32(op) + u64(ph(a, len(chunk1)), 0) + u32(0, len(chunk2)) + chunk2, COLLECT)
    s.frame(OP_CAS_REFS, copy_t + refs)  # now hits
    s.frame("cuMemcpyDtoH_v2", u64(ph(a), len(chunk1) + len(chunk2), 0), COLLECT)
    img = ms.IMAGE
    s.frame(OP_CAS_REFS, u32(2) + u64(len(img)) + u32(1) + u32(len(img)) + hashlib.sha256(img).digest())
    s.frame(OP_CAS_DATA, u32(2) + u64(0) + u32(0, len(img)) + img, COLLECT)
    s.frame("cuModuleLoadData", u64(ms.CLIENT_ID | 0x2000, len(img)) + u32(0) + u32(0), COLLECT)
    s.frame(OP_CAS_REFS, u32(2) + u64(len(img)) + u32(1) + u32(len(img)) + hashlib.sha256(img).digest())
    s.frame("cuGetErrorName", u64(1))
    s.frame("cuGetErrorString", u64(999999))
    s.frame(ms.OP_DEVICE_ATTRS, u32(7))
    s.frame(ms.OP_FUNC_LAYOUT, u64(12345))
    return s.bye()


def bad_sessions():
    """Each: a context, then one malformed frame."""
    htod = OPS["cuMemcpyHtoD_v2"]
    cases = {
        "deliver short": frame(ms.OP_DELIVER, bytes(20)),
        "deliver n=0": frame(ms.OP_DELIVER, u64(1, 0, 0, 0) + u32(0)),
        "deliver flags": frame(ms.OP_DELIVER, u64(1, 0, 8, 0) + u32(6)),
        "deliver trailing": frame(ms.OP_DELIVER, u64(1, 0, 8, 0) + u32(0) + b"x"),
        "deliver bad stream": frame(ms.OP_DELIVER, u64(1, 0, 8, 0x777) + u32(0)),
        "stage short": frame(ms.OP_STAGE, bytes(10)),
        "stage total 0": frame(ms.OP_STAGE, u64(0, 0)),
        "stage gap": frame(ms.OP_STAGE, u64(8, 100) + bytes(4)),
        "layout short": frame(ms.OP_FUNC_LAYOUT, bytes(4)),
        "layout trailing": frame(ms.OP_FUNC_LAYOUT, bytes(9)),
        "attrs short": frame(ms.OP_DEVICE_ATTRS, bytes(2)),
        "attrs trailing": frame(ms.OP_DEVICE_ATTRS, bytes(6)),
        "cas refs short": frame(OP_CAS_REFS, bytes(2)),
        "cas refs copy cut": frame(OP_CAS_REFS, u32(1) + u32(htod) + bytes(4)),
        "cas refs unknown target": frame(OP_CAS_REFS, u32(9) + bytes(40)),
        "cas refs not htod": frame(OP_CAS_REFS, u32(1) + u32(OPS["cuMemsetD8_v2"]) + u64(0, 0) + u32(1) + bytes(36)),
        "cas refs n=0": frame(OP_CAS_REFS, u32(2) + u64(10) + u32(0)),
        "cas refs n cut": frame(OP_CAS_REFS, u32(2) + u64(10) + b"\1"),
        "cas refs items cut": frame(OP_CAS_REFS, u32(2) + u64(10) + u32(2) + bytes(40)),
        "cas refs chunk 0": frame(OP_CAS_REFS, u32(2) + u64(10) + u32(1) + bytes(36)),
        "cas refs sum": frame(OP_CAS_REFS, u32(2) + u64(10) + u32(1) + u32(5) + bytes(32)),
        "cas data chunk cut": frame(OP_CAS_DATA, u32(2) + u64(0) + u32(0)),
        "cas data codec": frame(OP_CAS_DATA, u32(2) + u64(0) + u32(7, 4) + bytes(4)),
        "cas data outside": frame(OP_CAS_DATA, u32(2) + u64(0) + u32(0, 4) + bytes(4)),
        "cas stage cut": frame(OP_CAS_DATA, u32(2) + bytes(3)),
        "htod short": frame("cuMemcpyHtoD_v2", bytes(8)),
        "htod bad stream": frame("cuMemcpyHtoDAsync_v2", u64(0, 0x999) + bytes(4)),
        "dtoh short": frame("cuMemcpyDtoH_v2", bytes(10)),
        "dtoh trailing": frame("cuMemcpyDtoH_v2", u64(0, 4, 0) + b"z"),
        "dtoh big": frame("cuMemcpyDtoH_v2", u64(0, 1 << 40, 0)),
        "dtoh lane short": frame("cuMemcpyDtoH_v2", u64(0, 4, 0) + u32(0), flags=4),
        "dtoh lane not open": frame("cuMemcpyDtoH_v2", u64(0, 4, 0) + u32(0, 1), flags=4),
        "htod lane": frame("cuMemcpyHtoD_v2", u64(0, 0) + u32(0, 4), flags=4),
        "htod lane size": frame("cuMemcpyHtoD_v2", u64(0, 0) + u32(0), flags=4),
        "errstr short": frame("cuGetErrorString", bytes(3)),
        "errstr trailing": frame("cuGetErrorString", bytes(9)),
        "oversize": struct.pack("<IHHII", (16 << 20) + 1, 6, 0, 1, 1),
        "unknown op": frame(200, b""),
    }
    cases.update({name: frame(op, payload) for name, (op, payload) in ms.bad_format_frames().items()})
    out = {}
    for name, f in cases.items():
        s = Session()
        s.context()
        out[name] = bytes(s.out) + f
    return out


def run(worker: str) -> list[str]:
    sessions = {
        "device": ms.seed_device(), "memory": ms.seed_memory(), "landings": ms.seed_landings(),
        "module_launch": ms.seed_module_launch(), "library_streams": ms.seed_library_streams(),
        "threads": ms.seed_threads(), "malformed": ms.seed_malformed(), "cas": cas_session(),
        "formats": ms.seed_formats(),
    }
    sessions.update(bad_sessions())
    out = []
    with tempfile.TemporaryDirectory() as cache:
        for name, data in sessions.items():
            out += play(worker, str(NATIVE / "libgpuwire_standin.so"), str(NATIVE / "libgpuwire_standin_nvml.so"),
                        cache, data, name)
        for f in sorted(Path(cache).rglob("*")):
            if f.is_file():
                out.append(f"cache {f.relative_to(cache)} {hashlib.sha256(f.read_bytes()).hexdigest()}")
    return out


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    old = sys.argv[1]
    new = sys.argv[2] if len(sys.argv) == 3 else str(NATIVE / "gpuwire-worker")
    a, b = run(old), run(new)
    diff = list(difflib.unified_diff(a, b, old, new, lineterm="", n=1))
    for line in diff:
        print(line[:400])
    print(f"{len(a)} lines from {old}, {len(b)} from {new}: {'differ' if diff else 'identical'}")
    return 1 if diff else 0


sys.exit(main())
