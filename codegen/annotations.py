"""Parse codegen/annotations.txt: which driver functions are forwarded and how.

Line forms (one function per line, '#' starts a comment):
    NAME [PARAM=SPEC ...]   generated on both sides; unlisted pointer params inferred
    @client NAME [...]      generated forwarder gwf_NAME; the exported NAME is hand-written
    @manual NAME            both sides hand-written (its own wire format)
    @worker NAME [...]      generated client; the worker's gw_h_NAME is hand-written and
                            reads the wire the generated client writes (checks of its own)
    @local NAME             answered in the client alone; never sent
    @async NAME...          posted without waiting (no outputs): failures surface at the
                            calling thread's next synchronization point
    @cached NAME...         the answer never changes: a successful reply is kept per
                            argument list and answered again in the client
    @sync NAME...           synchronization points: the request carries COLLECT, so earlier
                            posted failures of the thread surface here
    @posted NAME...         hand-written calls that may travel NOREPLY (generated ones
                            follow from @async and 'new' handles)
    @only_waits NAME...     the call only waits for the GPU: the worker lets the
                            requests after it start at once (device-to-host copies
                            are included without being listed: they wait, then read)
    @htod NAME... / @dtoh NAME...   host-to-device / device-to-host copies (their
                            hand-written wire format, lanes, the reader's scheduling)
@sync and the last four are policy only: they do not change the API digest.
SPEC: out | out[EXPR] | in | in[EXPR] | inout | inout[EXPR] | str | destroy | addr
(new: a handle output the client names itself, so creating it need not wait;
 addr: a device address typed as a pointer, sent as a number;
 extent[EXPR] on a device address: the bytes an @async call touches there, checked
 against the client's known allocations before the call is posted)
EXPR is a C expression over the other parameters giving the element count.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Annotation:
    name: str
    mode: str = "generated"  # generated | client | manual | local | worker
    specs: dict[str, str] = field(default_factory=dict)


ASYNC: set[str] = set()  # filled by parse()
CACHED: set[str] = set()  # answers that never change: asked once per process and argument list
# per-call properties for the generated property table (native/generated/wire_props.h)
PROPS: dict[str, set[str]] = {"posted": set(), "only_waits": set(), "htod": set(), "dtoh": set(), "sync": set(), "benign": set(), "fails_later": set()}

_SPEC = re.compile(r"^(out|in|inout)(\[(.+)\])?$|^(str|destroy|addr|new|struct)$|^extent\[(.+)\]$")


def parse(path: str) -> dict[str, Annotation]:
    out: dict[str, Annotation] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].split()
            if not line:
                continue
            if line[0] in ("@async", "@cached"):
                (ASYNC if line[0] == "@async" else CACHED).update(line[1:])
                continue
            if line[0][1:] in PROPS and line[0].startswith("@"):
                PROPS[line[0][1:]].update(line[1:])
                continue
            mode = "generated"
            if line[0] in ("@client", "@manual", "@local", "@worker"):
                mode = line.pop(0)[1:]
            ann = Annotation(line[0], mode)
            for item in line[1:]:
                pname, _, spec = item.partition("=")
                if not _SPEC.match(spec):
                    raise SystemExit(f"{path}:{lineno}: bad spec {item!r}")
                ann.specs[pname] = spec
            if ann.name in out:
                raise SystemExit(f"{path}:{lineno}: {ann.name} listed twice")
            out[ann.name] = ann
    return out
