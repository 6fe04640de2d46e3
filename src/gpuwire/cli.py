"""The `gpuwire` command line (also `python -m gpuwire`)."""

from __future__ import annotations

import argparse
import os
import sys

from gpuwire import __version__

DESCRIPTION = """\
gpuwire makes a GPU on another machine look local: an unmodified CUDA
application runs on a machine without a GPU, and every CUDA driver call it
makes is executed by a gpuwire server on a GPU machine across the network."""

EPILOG = """\
examples:
  gpuwire token create --name laptop            # on the GPU machine, once per client
  gpuwire server --listen 0.0.0.0:7750          # on the GPU machine (tokens required off-loopback)
  gpuwire run --server gpu-box:7750 -- ./app    # on the client machine (GPUWIRE_TOKEN set)
  gpuwire status --server gpu-box:7750          # is it up? RTT, bandwidth, leases
  gpuwire smi --server gpu-box:7750             # its GPUs, as nvidia-smi shows them
  gpuwire demo                                  # both, on this machine

run `gpuwire COMMAND --help` for each command's options."""

SERVER_HELP = """\
Serve CUDA to gpuwire clients. For every client process that connects, the
server checks its handshake and starts one data-plane worker process
(gpuwire-worker) that executes the client's calls on the driver. Stop it with
Ctrl-C or SIGTERM: it stops accepting, ends its workers and exits 0.
Log lines go to stderr, one per event, in logfmt (`time=... level=... msg=... session=ID key=value...`,
the time in ISO 8601 with its UTC offset) or with --log-format json one JSON object each.

Clients must authenticate with a token (`gpuwire token create`) whenever the
server listens beyond loopback, and the stream must be encrypted with TLS
there too: give the server a certificate and key (--tls-cert, --tls-key; a
self-signed one will do, clients then name it with --tls-ca) or, on a
trusted network only, pass --insecure-no-tls. On loopback TLS is optional
(accepted when a certificate is given; --require-tls insists on it).
--tls-client-ca also requires a client certificate signed by that CA.
Each client gets a lease on a GPU (shared by
default, exclusive on request; exclusive requests queue in arrival order).
Settings come from flags, else from --config FILE (TOML, same names), else
the defaults shown. docs/server.md has the details."""

TOKEN_HELP = """\
Manage the tokens clients authenticate with. `create` prints a new token once
(give it to the client as GPUWIRE_TOKEN or in a file named by
GPUWIRE_TOKEN_FILE); the server keeps only SHA-256 of it, in its tokens file
(default: $GPUWIRE_STATE_DIR, /var/lib/gpuwire for root, else
~/.local/state/gpuwire; tokens.json, mode 600). A running server sees changes
at the next connection.

The token itself never crosses the network: the server sends a random
challenge and the client answers with an HMAC keyed by the token's hash.
That protects the token, not the session: beyond loopback the server also
requires TLS (gpuwire server --tls-cert/--tls-key), which keeps the call
stream private and the authenticated connection from being taken over."""

STATUS_HELP = """\
Connect to a gpuwire server as a client would, without starting a session, and
print: reachable or not, server version, driver, GPUs, leases, round-trip time
(small echo frames answered by the server) and bandwidth each way (large echo
frames through the server's control plane: a lower bound for the data plane).
With a comma-separated list (as `gpuwire run --server a,b` takes it), each
server in turn, in the order a program's device list joins their GPUs.
Exit status 0 if every server answered, 1 if not."""

TOP_HELP = """\
Live view of a gpuwire server: GPUs (NVML utilization and memory), leases and
sessions (host, process, program, lease, traffic, age), totals and its log.
Reads the server's admin endpoint (`gpuwire server --metrics HOST:PORT`,
default 127.0.0.1:7751), or with --server the gpuwire port itself (status
probe: no log). Needs the optional package textual, except with --once."""

SMI_HELP = """\
Print an nvidia-smi-like table of the server's GPUs: driver, CUDA and NVML
versions, then per GPU its index, name, UUID, PCI bus id, memory used/total,
utilization, temperature, power, clocks, compute mode, and the processes
running on it (server-side ids). The answers come through gpuwire's own
libnvidia-ml.so.1 and libcuda.so.1 (a helper run under `gpuwire run`), so
they are what an application here would see; the CUDA column is the device
ordinal programs here get (CUDA_VISIBLE_DEVICES applies to CUDA, not NVML).
It never waits for a lease: with --no-cuda it takes none at all."""

RUN_HELP = """\
Run CMD with gpuwire's loader redirection: every load of libcuda.so.1 (by
name, soname or absolute path) gets gpuwire's client library, which sends the
calls to the server. CMD is exec'd, so its exit status is gpuwire run's
(127 if CMD is not found).

environment set for CMD:
  LD_AUDIT         gpuwire's audit module (appended to an existing LD_AUDIT)
  GPUWIRE_LIBDIR   the folder of gpuwire's native libraries
  GPUWIRE_SERVER   the server (--server, else GPUWIRE_SERVER, else 127.0.0.1:7750)
  GPUWIRE_STATS    with --stats: the client writes its statistics there as JSON at exit
  GPUWIRE_LEASE    with --exclusive: "exclusive" (default: a shared lease)
  GPUWIRE_NO_WAIT  with --no-wait: 1 (fail at once instead of queueing)
  GPUWIRE_MEM_CAP  with --mem-cap: the cap in bytes
  GPUWIRE_GPU      with --gpu: the GPU index to lease (default: all GPUs)
  GPUWIRE_GPUS     with --gpus: lease any that many GPUs instead
  GPUWIRE_TOKEN_FILE  with --token-file: the file holding the client's token
  GPUWIRE_TLS      with --tls / --no-tls: 1 / 0 (default auto: TLS unless the server is on loopback)
  GPUWIRE_TLS_CA   with --tls-ca: the CA file (or folder) the server's certificate must chain to
                   (default: the system's CAs); the certificate must name the server's host
  GPUWIRE_TLS_CERT, GPUWIRE_TLS_KEY  with --tls-cert, --tls-key: this client's certificate and key
  GPUWIRE_TLS_SERVER_NAME  with --tls-server-name: the name checked instead of --server's host
  GPUWIRE_COMPILE_CACHE  with --compile-cache: where NVRTC's compile cache lives on this
                   machine, or "off" (default $CUDA_CACHE_PATH/gpuwire, else
                   ~/.cache/gpuwire/compile; CUDA_CACHE_DISABLE=1 and CUDA_CACHE_MAXSIZE apply)
other variables read by the client library:
  GPUWIRE_DEBUG    set to 1 for a trace of the client's activity on stderr
  GPUWIRE_LANES    at most this many copy lanes: extra connections for the bytes of copies of
                   8 MiB or more, either way (default: what the server grants, 3; 0: none)
  GPUWIRE_SPIN_US  a thread waiting for a reply polls for up to this many microseconds before
                   sleeping, as the driver's synchronize spins (default 10000 on a machine of 8
                   or more cores, else 0; costs a core while it waits)
  GPUWIRE_WAIT_NOTICE_S  a line on stderr when a call has waited this long (default 60; 0: never)"""

DEMO_HELP = """\
Show gpuwire working on this machine: start a server in this process on a free
loopback port (the real GPU if one works, else the CPU stand-in driver, a test
double), run the test program build/programs/vector_add_shared through
`gpuwire run`, print its output and a summary of the traffic, and exit with
the program's status. Build the program first with ./scripts/setup."""


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (and where to read more) instead of the
    usage text followed by the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


# Numbers given on the command line of the commands other than `server` (whose flags
# config.py checks): attribute, flag, lowest, highest. NaN, infinities and values outside
# are refused with one line, never taken as something else later.
NUMBER_FLAGS: dict[str, tuple[tuple[str, str, float, float], ...]] = {
    "run": (("gpu", "--gpu", 0, 65535), ("gpus", "--gpus", 1, 65535)),
    "status": (("rounds", "--rounds", 1, 100_000),),
    "top": (("interval", "--interval", 0.1, 3600.0), ("logs", "--logs", 0, 2000)),
    "cache": (("older_than_days", "--older-than-days", 0.0, 100_000.0),),
}
# Files a client command reads: attribute, flag.
CLIENT_FILES = (("token_file", "--token-file"), ("tls_ca", "--tls-ca"), ("tls_cert", "--tls-cert"),
                ("tls_key", "--tls-key"))


def check_numbers(args: argparse.Namespace) -> str | None:
    """The first number flag of args outside its limits, as one line; None if all are fine."""
    import math

    for attr, flag, lo, hi in NUMBER_FLAGS.get(args.command, ()):
        value = getattr(args, attr, None)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            return f"{flag} must be a finite number, got {value!r}"
        if value < 0:
            return f"{flag} must not be negative, got {value!r}"
        if not lo <= value <= hi:
            return f"{flag} must be between {lo:g} and {hi:g}, got {value!r}"
    return None


def check_files(args: argparse.Namespace) -> str | None:
    """The first file a client command was given that is missing or unreadable, as one line."""
    for attr, flag in CLIENT_FILES:
        path = getattr(args, attr, None)
        if not path:
            continue
        full = os.path.expanduser(path)
        if not os.path.exists(full):
            return f"{flag} {path}: no such file"
        if attr != "tls_ca" and os.path.isdir(full):
            return f"{flag} {path}: is a folder, not a file"
        if not os.access(full, os.R_OK):
            return f"{flag} {path}: cannot read it (permission denied)"
    return None


def _add_client_tls(p: argparse.ArgumentParser) -> None:
    """A client's TLS options (they set the GPUWIRE_TLS* variables the client library reads)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tls", dest="tls", action="store_const", const="1",
                   help="use TLS (default: TLS unless the server is on loopback; $GPUWIRE_TLS)")
    g.add_argument("--no-tls", dest="tls", action="store_const", const="0",
                   help="never use TLS (for a server started with --insecure-no-tls)")
    p.add_argument("--tls-ca", metavar="FILE",
                   help="CA certificate(s) the server's certificate must chain to, e.g. a self-signed server "
                        "certificate itself (default: the system's CAs; $GPUWIRE_TLS_CA)")
    p.add_argument("--tls-cert", metavar="FILE", help="client certificate, for servers started with --tls-client-ca")
    p.add_argument("--tls-key", metavar="FILE", help="the client certificate's key (default: in --tls-cert)")
    p.add_argument("--tls-server-name", metavar="NAME",
                   help="name the server's certificate must carry, when it is not --server's host")


def _tls_env(args: argparse.Namespace, env) -> None:
    """Put the TLS options where the client library (and gpuwire's Python clients) read them."""
    if getattr(args, "tls", None):
        env["GPUWIRE_TLS"] = args.tls
    for flag, var in (("tls_ca", "GPUWIRE_TLS_CA"), ("tls_cert", "GPUWIRE_TLS_CERT"), ("tls_key", "GPUWIRE_TLS_KEY")):
        if getattr(args, flag, None):
            env[var] = os.path.abspath(os.path.expanduser(getattr(args, flag)))
    if getattr(args, "tls_server_name", None):
        env["GPUWIRE_TLS_SERVER_NAME"] = args.tls_server_name


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = Parser(prog="gpuwire", description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"gpuwire {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("server", help="serve CUDA to gpuwire clients (run on the GPU machine)",
                       description=SERVER_HELP, formatter_class=fmt)
    p.add_argument("--config", metavar="FILE", help="TOML file with any of these settings (flags win)")
    p.add_argument("--print-config", action="store_true",
                   help="print a config file with every setting at its default and exit")
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="address to listen on (default 127.0.0.1:7750; 0.0.0.0:7750 for every interface; "
                        "port 0 picks a free port, logged at start)")
    p.add_argument("--driver", metavar="auto|standin|nvidia|PATH",
                   help="driver the workers use: auto (default) = the real NVIDIA driver (the server "
                        "refuses to start if none works); standin = the CPU stand-in driver, a test double "
                        "without a GPU (tests, demos); nvidia (as auto); or the path of a libcuda-compatible "
                        "library")
    p.add_argument("--max-sessions", type=int, metavar="N",
                   help="refuse clients beyond N concurrent sessions, queued ones included; connections not yet "
                        "authenticated do not count here (default 256)")
    p.add_argument("--max-preauth", type=int, metavar="N",
                   help="connections still in their TLS handshake, HELLO or token proof, in all; more are "
                        "closed at once (default 128)")
    p.add_argument("--max-preauth-per-peer", type=int, metavar="N",
                   help="the same, from one peer address (default 16)")
    p.add_argument("--dead-peer-timeout", type=float, metavar="SECONDS",
                   help="end a connection whose peer stopped answering (machine gone, network cut: no FIN, no "
                        "RST) after about this long, by TCP keepalive and user timeout (default 90)")
    p.add_argument("--handshake-timeout", type=float, metavar="SECONDS",
                   help="drop a client that has not sent its HELLO (or its token proof) within this time "
                        "(default 10)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARN", "ERROR"],
                   help="least severe log level written (default INFO)")
    p.add_argument("--log-format", choices=["logfmt", "json"],
                   help="log lines as logfmt (default: time=... level=... msg=... key=value...) or one JSON "
                        "object each")
    p.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus /metrics and the dashboard's /status.json there (default: off; "
                        "no authentication, keep it on loopback or a management network)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="folder of the tokens file (default $GPUWIRE_STATE_DIR, /var/lib/gpuwire for root, "
                        "else ~/.local/state/gpuwire)")
    p.add_argument("--tokens-file", metavar="FILE", help="the tokens file (default STATE_DIR/tokens.json)")
    p.add_argument("--require-auth", action="store_true", default=None,
                   help="require a token on loopback too (it is always required beyond loopback)")
    p.add_argument("--insecure-no-auth", action="store_true", default=None,
                   help="listen beyond loopback without authentication (anyone who reaches the port can use "
                        "the GPUs: only on a trusted network)")
    p.add_argument("--lease-idle-timeout", type=float, metavar="SECONDS",
                   help="end a session (and free its lease) whose connections carried no data either way for "
                        "this long while no call of it runs on the GPU (default 3600; 0: never)")
    p.add_argument("--client-stall-timeout", type=float, metavar="SECONDS",
                   help="end a session whose client has read nothing for this long while the worker has a reply "
                        "or frame to send it (its queued work would hold server memory and its lease forever; "
                        "default 60; 0: never)")
    p.add_argument("--busy-report-after", type=float, metavar="SECONDS",
                   help="log a warning naming the call when one call of a session has run this long on the "
                        "GPU, and again each time that doubles (a hang says where it is; default 30; 0: never)")
    p.add_argument("--queue-interval", type=float, metavar="SECONDS",
                   help="how often a client waiting for an exclusive lease is told its position (default 2)")
    p.add_argument("--cache-dir", metavar="DIR|off",
                   help="content cache of uploads (default $GPUWIRE_CACHE_DIR, else /var/cache/gpuwire for root, "
                        "else ~/.cache/gpuwire/server; off: none; docs/cache.md)")
    p.add_argument("--cache-max-bytes", metavar="SIZE", help="cap of the content cache (default 64G; 0: no cap)")
    p.add_argument("--cache-scope", choices=("shared", "tenant"),
                   help="shared (default): one cache for every client, so any client can learn whether some "
                        "bytes are cached; tenant: one per token (clients without a token share one)")
    p.add_argument("--lanes", type=int, metavar="N",
                   help="extra connections a plaintext session may open for copy bytes (both ways), so a "
                        "large copy is not held to one TCP stream's speed (default 3, at most 8; 0: none; "
                        "TLS sessions use none)")
    p.add_argument("--tls-cert", metavar="FILE",
                   help="the server's TLS certificate (chain), PEM; turns TLS on (required beyond loopback)")
    p.add_argument("--tls-key", metavar="FILE", help="its private key, PEM (default: in the --tls-cert file)")
    p.add_argument("--tls-client-ca", metavar="FILE",
                   help="require clients to present a certificate signed by this CA (implies --require-tls)")
    p.add_argument("--require-tls", action="store_true", default=None,
                   help="refuse plaintext clients on loopback too (beyond loopback they are always refused)")
    p.add_argument("--insecure-no-tls", action="store_true", default=None,
                   help="accept plaintext clients beyond loopback (the stream can be read and hijacked: only on "
                        "a trusted network)")

    p = sub.add_parser("run", help="run a command with its CUDA calls sent to a gpuwire server",
                       description=RUN_HELP, formatter_class=fmt,
                       usage="gpuwire run [-h] [--server HOST:PORT] [--stats FILE] [--exclusive] [--no-wait] "
                             "[--quiet] [--mem-cap SIZE] [--gpu N] [--token-file FILE] [--tls | --no-tls] [--tls-ca FILE] "
                             "[--tls-cert FILE --tls-key FILE] [--compile-cache DIR|off] "
                             "[--slurm [--gres gpu:N] [--partition P] [--time T]] -- CMD [ARGS...]")
    p.add_argument("--server", metavar="HOST:PORT[,HOST:PORT...]",
                   help="the gpuwire server, or several: their GPUs make one device list, the first's first "
                        "(default: $GPUWIRE_SERVER, else 127.0.0.1:7750)")
    p.add_argument("--stats", metavar="FILE",
                   help="have the client library write call/round-trip/byte counts to FILE as JSON at exit")
    p.add_argument("--exclusive", action="store_true",
                   help="ask for an exclusive lease (wait in line while another client holds the GPU)")
    p.add_argument("--no-wait", action="store_true", help="fail at once if the lease is not available now")
    p.add_argument("--quiet", action="store_true", help="no status line for long transfers or a queued lease")
    p.add_argument("--mem-cap", metavar="SIZE", help="cap this client's GPU memory (bytes, or 512M, 8G, ...)")
    p.add_argument("--gpu", type=int, metavar="N", help="lease GPU N only (seen by the program as device 0)")
    p.add_argument("--gpus", type=int, metavar="N",
                   help="lease any N GPUs of the server (the first free ones; seen as devices 0..N-1)")
    p.add_argument("--token-file", metavar="FILE", help="file holding the token (default: $GPUWIRE_TOKEN)")
    p.add_argument("--compile-cache", metavar="DIR|off",
                   help="folder on this machine for NVRTC's compiled code, which a native driver would cache "
                        "(default: ~/.cache/gpuwire/compile), or off")
    _add_client_tls(p)
    p.add_argument("--slurm", action="store_true",
                   help="get the GPU from Slurm: salloc a job, use the gpuwire server of the node it runs on, with "
                        "a token bound to the job; the job ends when CMD does (docs/scale-out.md)")
    p.add_argument("--gres", metavar="gpu:N", help="with --slurm: the job's GRES (default gpu:1)")
    p.add_argument("--partition", metavar="P", help="with --slurm: the Slurm partition")
    p.add_argument("--time", metavar="T", help="with --slurm: the job's time limit (Slurm's format, e.g. 30, 1:00:00)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD ARGS...", help="the command to run, after --")

    p = sub.add_parser("demo", help="run a CUDA test program through a local server, end to end",
                       description=DEMO_HELP, formatter_class=fmt)
    p.add_argument("--program", metavar="PATH",
                   help="CUDA program to run instead of build/programs/vector_add_shared")
    p.add_argument("--driver", default="auto", metavar="auto|standin|nvidia|PATH",
                   help="driver for the demo server (default %(default)s: the real GPU if one works, else the "
                        "CPU stand-in, said at start)")

    p = sub.add_parser("token", help="create, list and revoke client tokens (on the server)",
                       description=TOKEN_HELP, formatter_class=fmt)
    tsub = p.add_subparsers(dest="token_command", metavar="ACTION")
    for name, what in (("create", "create a token and print it (once)"), ("list", "list tokens (not secrets)"),
                       ("revoke", "revoke tokens by id or name")):
        tp = tsub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        tp.add_argument("--tokens-file", metavar="FILE", help="the tokens file (default STATE_DIR/tokens.json)")
        tp.add_argument("--state-dir", metavar="DIR", help="the server's state folder")
        tp.add_argument("--config", metavar="FILE", help="take tokens_file/state_dir from the server's config")
        if name == "create":
            tp.add_argument("--name", default="", help="a label for the token (who or what uses it)")
        if name == "revoke":
            tp.add_argument("which", metavar="ID|NAME", help="token id (or the token itself) or name")

    p = sub.add_parser("status", help="check a server: reachable, version, GPUs, leases, RTT, bandwidth",
                       description=STATUS_HELP, formatter_class=fmt)
    p.add_argument("--server", metavar="HOST:PORT[,HOST:PORT...]",
                   help="default: $GPUWIRE_SERVER, else 127.0.0.1:7750; a list checks each server")
    p.add_argument("--token-file", metavar="FILE", help="file holding the token (default: $GPUWIRE_TOKEN)")
    p.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    _add_client_tls(p)
    p.add_argument("--rounds", type=int, default=20, metavar="N", help="round trips timed (default %(default)s)")
    p.add_argument("--bytes", default="4M", metavar="SIZE",
                   help="frame size for the bandwidth estimate, 0 to skip (default %(default)s)")

    p = sub.add_parser("smi", help="nvidia-smi-like table of a server's GPUs, through gpuwire's libraries",
                       description=SMI_HELP, formatter_class=fmt)
    p.add_argument("--server", metavar="HOST:PORT[,HOST:PORT...]",
                   help="default: $GPUWIRE_SERVER, else 127.0.0.1:7750; a list shows every server's GPUs, the "
                        "first's first, as a program sees them")
    p.add_argument("--token-file", metavar="FILE", help="file holding the token (default: $GPUWIRE_TOKEN)")
    p.add_argument("--json", action="store_true", help="print the answers as JSON")
    p.add_argument("--no-cuda", action="store_true", help="ask NVML only (no CUDA session, no lease)")
    _add_client_tls(p)

    p = sub.add_parser("top", help="live dashboard of a server (terminal UI)", description=TOP_HELP,
                       formatter_class=fmt)
    p.add_argument("--admin", metavar="HOST:PORT", help="the server's --metrics address (default 127.0.0.1:7751)")
    p.add_argument("--server", metavar="HOST:PORT", help="read the gpuwire port instead (status probe, no log); "
                   "with --once, a comma-separated list shows each server")
    p.add_argument("--token-file", metavar="FILE", help="with --server: the token file (default $GPUWIRE_TOKEN)")
    p.add_argument("--once", action="store_true", help="print one text snapshot and exit")
    p.add_argument("--interval", type=float, default=2.0, metavar="SECONDS", help="refresh (default %(default)s)")
    p.add_argument("--logs", type=int, default=20, metavar="N", help="with --once: log lines shown (default 20)")
    _add_client_tls(p)

    p = sub.add_parser("cache", help="the server's content cache: ls, stats, prune (on the server)",
                       description="List, size up or prune the server's content cache of uploads "
                                   "(model weights, kernel images; docs/cache.md).", formatter_class=fmt)
    csub = p.add_subparsers(dest="cache_command", metavar="ACTION")
    for name, what in (("ls", "list entries, most recently used first"), ("stats", "entries and bytes held"),
                       ("prune", "remove entries")):
        cp = csub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        cp.add_argument("--cache-dir", metavar="DIR", help="the cache folder (default: the server's default)")
        cp.add_argument("--config", metavar="FILE", help="take cache_dir/cache_max_bytes from the server's config")
        cp.add_argument("--json", action="store_true", help="print JSON")
        if name == "prune":
            cp.add_argument("--all", action="store_true", help="remove every entry")
            cp.add_argument("--max-bytes", metavar="SIZE", help="remove least recently used entries beyond SIZE")
            cp.add_argument("--older-than-days", type=float, metavar="N", help="remove entries unused for N days")
            cp.add_argument("--verify", action="store_true", help="re-hash every entry; remove those that differ")

    from gpuwire.slurm.cli import add_parser as add_slurm_parser

    add_slurm_parser(sub)
    sub.add_parser("version", help="print gpuwire's version",
                   description="Print gpuwire's version and exit.", formatter_class=fmt)
    return parser


def _server(args: argparse.Namespace) -> int:
    from gpuwire import config
    from gpuwire.log import Logger
    from gpuwire.server import run_server

    if args.print_config:
        sys.stdout.write(config.example())
        return 0
    flags = {name: getattr(args, name, None) for name in config.SERVER_OPTIONS}
    try:
        cfg = config.server_config(flags, args.config)
    except config.ConfigError as e:
        print(f"gpuwire server: {e}", file=sys.stderr)
        return 2
    return run_server(cfg, Logger(level=cfg.log_level, fmt=cfg.log_format))


def _lease_env(args: argparse.Namespace, env) -> str | None:
    """Put `gpuwire run`'s lease and token options where the client library reads them."""
    from gpuwire.leases import parse_size

    if args.exclusive:
        env["GPUWIRE_LEASE"] = "exclusive"
    if args.no_wait:
        env["GPUWIRE_NO_WAIT"] = "1"
    if args.mem_cap:
        try:
            env["GPUWIRE_MEM_CAP"] = str(parse_size(args.mem_cap))
        except ValueError as e:
            return f"--mem-cap: {e}"
    if args.gpu is not None:
        if args.gpu < 0:
            return f"--gpu {args.gpu}: a GPU index is 0 or more"
        env["GPUWIRE_GPU"] = str(args.gpu)
    if args.gpus is not None:
        if args.gpu is not None:
            return f"--gpu {args.gpu} and --gpus {args.gpus}: a lease is on one GPU or on any N GPUs, not both"
        env["GPUWIRE_GPUS"] = str(args.gpus)
    if args.token_file:
        env["GPUWIRE_TOKEN_FILE"] = os.path.abspath(os.path.expanduser(args.token_file))
    if args.compile_cache:
        env["GPUWIRE_COMPILE_CACHE"] = (args.compile_cache if args.compile_cache == "off"
                                        else os.path.abspath(args.compile_cache))
    return None


def _tokens_path(args: argparse.Namespace):
    from pathlib import Path

    from gpuwire import auth, config

    tokens_file, state_dir = args.tokens_file, args.state_dir
    if args.config and not tokens_file and not state_dir:
        cfg = config.load(args.config)
        tokens_file, state_dir = cfg.get("tokens_file"), cfg.get("state_dir")
    if tokens_file:
        return Path(tokens_file).expanduser()
    return (Path(state_dir).expanduser() if state_dir else auth.default_state_dir()) / auth.TOKENS_FILE


def _token(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import time

    from gpuwire import auth, config

    if not args.token_command:
        parser.parse_args(["token", "--help"])
        return 2
    try:
        store = auth.TokenStore(_tokens_path(args))
        if args.token_command == "create":
            token, entry = store.create(args.name)
            print(token)
            print(f"gpuwire token: created token {entry.id}{f' ({entry.name})' if entry.name else ''} in "
                  f"{store.path}; this is the only time it is shown. On the client: export GPUWIRE_TOKEN=<it>, "
                  f"or put it in a file (mode 600) named by GPUWIRE_TOKEN_FILE.", file=sys.stderr)
        elif args.token_command == "list":
            entries = store.entries()
            if not entries:
                print(f"no tokens in {store.path}", file=sys.stderr)
            for e in entries:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created))
                print(f"{e.id}  {when}  {e.name}".rstrip())
        elif args.token_command == "revoke":
            gone = store.revoke(args.which)
            if not gone:
                print(f"gpuwire token: no token with id or name {args.which!r} in {store.path}", file=sys.stderr)
                return 1
            for e in gone:
                print(f"revoked {e.id}{f' ({e.name})' if e.name else ''}")
    except (auth.AuthError, config.ConfigError, OSError) as e:
        print(f"gpuwire token: {_error_line(e)}", file=sys.stderr)
        return 1
    return 0


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the user asked for something that cannot be done (a bad address,
    file or setting, a server that is not there): one line, never a traceback."""
    from gpuwire import address, auth, config, paths, tls
    from gpuwire import driver as drivers

    return (address.AddressError, auth.AuthError, config.ConfigError, paths.NativeMissing, drivers.DriverError,
            tls.TLSError, OSError)


def _error_line(e: BaseException) -> str:
    if isinstance(e, OSError) and not e.args[1:]:
        return str(e) or type(e).__name__
    if isinstance(e, OSError):
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror or e}"
    return str(e) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    name = f"gpuwire {args.command}" if args.command else "gpuwire"
    try:
        return _dispatch(parser, args)
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`gpuwire status | head`): nothing more to say
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    except _expected_errors() as e:
        print(f"{name}: {_error_line(e)}", file=sys.stderr)
        return 1


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    cmd = args.command
    err = check_numbers(args)
    if err is None and cmd in ("run", "status", "smi", "top"):
        err = check_files(args)
    if err:
        print(f"gpuwire {cmd}: {err}", file=sys.stderr)
        return 2
    if cmd in ("run", "status", "smi", "top"):
        _tls_env(args, os.environ)
    if cmd == "server":
        return _server(args)
    if cmd == "run":
        from gpuwire.runner import run

        err = _lease_env(args, os.environ)
        if not err and not args.slurm and (args.gres or args.partition or args.time):
            err = "--gres, --partition and --time go with --slurm"
        if not err and args.slurm and args.server:
            err = "--slurm finds the server itself (the job's node's): no --server"
        if err:
            print(f"gpuwire run: {err}", file=sys.stderr)
            return 2
        if args.slurm:
            from gpuwire.slurm.alloc import run_with_slurm

            return run_with_slurm(args.cmd, args.gres, args.partition, args.time, args.stats, args.quiet)
        return run(args.cmd, server=args.server, stats=args.stats, quiet=args.quiet)
    if cmd == "token":
        return _token(args, parser)
    if cmd == "status":
        from gpuwire.leases import parse_size
        from gpuwire.status import main as status_main

        try:
            nbytes = parse_size(args.bytes)
        except ValueError as e:
            print(f"gpuwire status: --bytes: {e}", file=sys.stderr)
            return 2
        return status_main(args.server, args.token_file, args.json, args.rounds, nbytes)
    if cmd == "smi":
        from gpuwire.smi import main as smi_main

        return smi_main(args.server, args.token_file, args.json, cuda=not args.no_cuda)
    if cmd == "top":
        from gpuwire.top import main as top_main

        return top_main(args.admin, args.server, args.token_file, args.once, args.interval, args.logs)
    if cmd == "demo":
        from gpuwire.demo import run_demo

        return run_demo(args.program, args.driver)
    if cmd == "cache":
        from gpuwire.cache import cli as cache_cli

        return cache_cli(args)
    if cmd == "slurm":
        from gpuwire.slurm.cli import main as slurm_main

        return slurm_main(args)
    if cmd == "version":
        print(f"gpuwire {__version__}")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
