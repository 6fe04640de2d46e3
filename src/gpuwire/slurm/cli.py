"""`gpuwire slurm ...`: the commands slurm.conf points at and their helpers
(hooks.py does the work; docs/scale-out.md shows the slurm.conf lines)."""

from __future__ import annotations

import argparse
import os
import sys

SLURM_HELP = """\
Slurm integration (docs/scale-out.md). slurm.conf runs these through small
wrapper scripts (Slurm passes no arguments to a prolog):
  Prolog=      gpuwire slurm prolog       mint the job's token on a gpuwire server
  Epilog=      gpuwire slurm epilog       revoke it: its sessions end, its leases go
  TaskProlog=  gpuwire slurm task-prolog  a licence job's tasks get remote GPUs
Their settings: --config, else $GPUWIRE_SLURM_CONFIG, else /etc/gpuwire/slurm.toml.
`admin-token` makes, on a GPU server, the token the prologs authenticate with;
`credentials` and `attach` are what `gpuwire run --slurm` runs; `sweep` (cron,
any node) revokes the tokens of jobs that ended while an epilog could not."""


def add_parser(sub) -> None:
    p = sub.add_parser("slurm", help="Slurm prolog, epilog and task prolog; admin token (docs/scale-out.md)",
                       description=SLURM_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = p.add_subparsers(dest="slurm_command", metavar="ACTION")
    for name, what in (("prolog", "Slurm Prolog: mint the job's token (as root, on each node of the job)"),
                       ("epilog", "Slurm Epilog: revoke the job's tokens (as root, after the job)"),
                       ("task-prolog", "Slurm TaskProlog: print export lines for a licence job's task"),
                       ("credentials", "in a step of the job: its gpuwire server and token, as JSON"),
                       ("sweep", "revoke the tokens of jobs that have ended (an epilog could not): for cron")):
        sp = ssub.add_parser(name, help=what, description=what + ".")
        sp.add_argument("--config", metavar="FILE", help="the site's slurm.toml")
    sp = ssub.add_parser("admin-token", help="create the admin token the prologs use (on a GPU server)",
                         description="Create a token that may mint and revoke job tokens (and run no session); "
                                     "print it once.")
    sp.add_argument("--tokens-file", metavar="FILE", help="the server's tokens file (default STATE_DIR/tokens.json)")
    sp.add_argument("--name", default="slurm-admin", help="its label (default %(default)s)")
    sp = ssub.add_parser("attach", help="(used by gpuwire run --slurm inside salloc)")
    sp.add_argument("--stats", metavar="FILE")
    sp.add_argument("--quiet", action="store_true")
    sp.add_argument("cmd", nargs=argparse.REMAINDER)


def main(args: argparse.Namespace) -> int:
    from gpuwire.slurm import hooks

    action = args.slurm_command
    if action is None:
        print("gpuwire slurm: name an action: prolog, epilog, task-prolog, credentials, sweep, admin-token "
              "(see gpuwire slurm --help)", file=sys.stderr)
        return 2
    if action == "attach":
        from gpuwire.slurm.alloc import attach

        return attach(args.cmd, args.stats, args.quiet)
    if action == "admin-token":
        return hooks.admin_token(args.tokens_file, args.name)
    try:
        cfg = hooks.load_config(args.config)
        run = {"prolog": hooks.prolog, "epilog": hooks.epilog, "task-prolog": hooks.task_prolog,
               "credentials": hooks.credentials, "sweep": hooks.sweep}[action]
        return run(cfg, os.environ)
    except hooks.SiteConfigError as e:
        print(f"gpuwire slurm {action}: {e}", file=sys.stderr)
        return 1 if action != "task-prolog" else 0
