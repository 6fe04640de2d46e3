"""The `gpuwire` command line (also `python -m gpuwire`)."""

from __future__ import annotations

import argparse
import sys

from gpuwire import __version__

DESCRIPTION = """\
gpuwire makes a GPU on another machine look local: an unmodified CUDA
application runs on a machine without a GPU, and every CUDA driver call it
makes is executed by a gpuwire server on a GPU machine across the network."""

EPILOG = """\
examples:
  gpuwire server --listen 0.0.0.0:7750          # on the GPU machine
  gpuwire run --server gpu-box:7750 -- ./app    # on the client machine
  gpuwire demo                                  # both, on this machine

run `gpuwire COMMAND --help` for each command's options."""

SERVER_HELP = """\
Serve CUDA to gpuwire clients. For every client process that connects, the
server checks its handshake and starts one data-plane worker process
(gpuwire-worker) that executes the client's calls on the driver. Stop it with
Ctrl-C or SIGTERM: it stops accepting, ends its workers and exits 0.
Log lines go to stderr, one per event: `time level session=ID key=value... message`."""

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
other variables read by the client library:
  GPUWIRE_DEBUG    set to 1 for a trace of the client's activity on stderr"""

DEMO_HELP = """\
Show gpuwire working on this machine: start a server in this process on a free
loopback port (the real GPU if one works, else the CPU stand-in driver, a test
double), run the test program build/programs/vector_add_shared through
`gpuwire run`, print its output and a summary of the traffic, and exit with
the program's status. Build the program first with ./scripts/setup."""


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="gpuwire", description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"gpuwire {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("server", help="serve CUDA to gpuwire clients (run on the GPU machine)",
                       description=SERVER_HELP, formatter_class=fmt)
    p.add_argument("--listen", default="127.0.0.1:7750", metavar="HOST:PORT",
                   help="address to listen on (default %(default)s; 0.0.0.0:7750 for every interface; "
                        "port 0 picks a free port, logged at start)")
    p.add_argument("--driver", default="auto", metavar="auto|standin|nvidia|PATH",
                   help="driver the workers use: auto (default) = the real NVIDIA driver if it works, else "
                        "the CPU stand-in driver (a test double, loudly logged); standin; nvidia (fail if "
                        "none works); or the path of a libcuda-compatible library")
    p.add_argument("--max-sessions", type=int, default=256, metavar="N",
                   help="refuse clients beyond N concurrent connections (default %(default)s)")
    p.add_argument("--handshake-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="drop a client that has not sent its HELLO within this time (default %(default)s)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARN", "ERROR"],
                   help="least severe log level written (default %(default)s)")

    p = sub.add_parser("run", help="run a command with its CUDA calls sent to a gpuwire server",
                       description=RUN_HELP, formatter_class=fmt,
                       usage="gpuwire run [-h] [--server HOST:PORT] [--stats FILE] -- CMD [ARGS...]")
    p.add_argument("--server", metavar="HOST:PORT",
                   help="the gpuwire server (default: $GPUWIRE_SERVER, else 127.0.0.1:7750)")
    p.add_argument("--stats", metavar="FILE",
                   help="have the client library write call/round-trip/byte counts to FILE as JSON at exit")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD ARGS...", help="the command to run, after --")

    p = sub.add_parser("demo", help="run a CUDA test program through a local server, end to end",
                       description=DEMO_HELP, formatter_class=fmt)
    p.add_argument("--program", metavar="PATH",
                   help="CUDA program to run instead of build/programs/vector_add_shared")
    p.add_argument("--driver", default="auto", metavar="auto|standin|nvidia|PATH",
                   help="driver for the demo server (default %(default)s)")

    sub.add_parser("version", help="print gpuwire's version",
                   description="Print gpuwire's version and exit.", formatter_class=fmt)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "server":
        from gpuwire.log import Logger
        from gpuwire.server import run_server

        return run_server(args.listen, args.driver, Logger(level=args.log_level), max_sessions=args.max_sessions,
                          handshake_timeout=args.handshake_timeout)
    if args.command == "run":
        from gpuwire.runner import run

        return run(args.cmd, server=args.server, stats=args.stats)
    if args.command == "demo":
        from gpuwire.demo import run_demo

        return run_demo(args.program, args.driver)
    if args.command == "version":
        print(f"gpuwire {__version__}")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
