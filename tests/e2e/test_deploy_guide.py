"""docs/deploy.md, the README's examples, docs/gpuwire.service and docker/*.Dockerfile
are tested here: their commands run on the CPU stand-in driver in a temporary
folder, or, where they need root, systemd, a container engine or the network,
are parsed and their gpuwire subcommands and flags checked against the real
parser.

A ```sh block in the guide or the README is preceded by an HTML comment
saying what to do with it (docs/deploy.md, "How this guide is tested"):
`<!-- test: run -->`, `<!-- test: server -->` (started in the background),
`<!-- test: alt -->` (run in a folder of its own), `<!-- test: check -->`
(not run)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SRC, free_port

from gpuwire import cli

GUIDE = ROOT / "docs" / "deploy.md"
README = ROOT / "README.md"
UNIT = ROOT / "docs" / "gpuwire.service"
DOCKERFILES = {"server": ROOT / "docker" / "server.Dockerfile", "client": ROOT / "docker" / "client.Dockerfile"}
IMAGES = {"gpuwire-server": "server", "gpuwire-client": "client"}
MODES = ("run", "server", "alt", "check")

# programs that change the host (or need root, systemd, a container engine, a
# package registry): never run, only checked
HOST_ONLY = {"useradd", "groupadd", "usermod", "systemctl", "journalctl", "ufw", "nft", "docker", "apt-get",
             "pip", "pipx", "nvidia-smi", "nvidia-modprobe"}
# programs run where installed, else skipped
OPTIONAL = {"systemd-analyze", "curl"}
# folders of the GPU machine that the run moves under its temporary root
HOST_DIRS = ("/etc/gpuwire", "/var/lib/gpuwire", "/var/cache/gpuwire", "/etc/systemd", "/usr/local/share",
             "/opt/gpuwire")
# the README's placeholders for a CUDA program
CUDA_CHECK = ("python3 -c \"import ctypes; cuda = ctypes.CDLL('libcuda.so.1'); n = ctypes.c_int(); "
              "cuda.cuInit(0); cuda.cuDeviceGetCount(ctypes.byref(n)); print('GPUs:', n.value)\"")
PLACEHOLDERS = {"./my_cuda_app args...": CUDA_CHECK, "python train.py": CUDA_CHECK}


# ---------------------------------------------------------------------------------------------
# reading the documents


def sh_blocks(path: Path) -> list[tuple[str | None, str, int]]:
    """(mode, text, line) of every ```sh block; mode from the comment just before it."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            start, j = i + 1, i + 1
            while lines[j].strip() != "```":
                j += 1
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            m = re.fullmatch(r"<!-- test: (\w+) -->", lines[k].strip()) if k >= 0 else None
            blocks.append((m.group(1) if m else None, "\n".join(lines[start:j]) + "\n", start + 1))
            i = j
        i += 1
    return blocks


def commands(text: str) -> list[str]:
    """Logical commands of a block: continuation lines joined, a here-document kept with
    the command that opens it; comments and blank lines dropped."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        m = re.search(r"<<-?\s*'?(\w+)'?", line)
        if m:
            body = []
            while i < len(lines) and lines[i].strip() != m.group(1):
                body.append(lines[i])
                i += 1
            body.append(lines[i] if i < len(lines) else m.group(1))
            i += 1
            line = line + "\n" + "\n".join(body)
        out.append(line)
    return out


def simple_commands(command: str) -> list[list[str]]:
    """The simple commands of a shell command line (split at && || | ;), redirections and
    here-document bodies left out, `sudo [-u USER]`, `env` and VAR=value prefixes removed."""
    first_line = command.split("\n", 1)[0]
    lex = shlex.shlex(first_line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    result, cur, skip = [], [], False
    for tok in lex:
        if skip:
            skip = False
            continue
        if tok in ("&&", "||", "|", ";", "&"):
            result.append(cur)
            cur = []
        elif tok in (">", ">>", "<", "<<", "<<-", ">&", "2>", "&>"):
            skip = True
        elif tok in ("(", ")"):
            continue
        else:
            cur.append(tok)
    result.append(cur)
    cleaned = []
    for argv in result:
        while argv:
            if argv[0] == "sudo":
                argv = argv[3:] if argv[1:2] == ["-u"] else argv[1:]
            elif argv[0] == "env" or re.fullmatch(r"[A-Za-z_]\w*=.*", argv[0]):
                argv = argv[1:]
            else:
                break
        if argv:
            cleaned.append(argv)
    return cleaned


def gpuwire_args_error(args: list[str]) -> str | None:
    """None if `gpuwire ARGS` parses with the real command line parser, else its message."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            ns = cli.build_parser().parse_args(args)
    except SystemExit as e:
        return None if e.code == 0 else f"gpuwire {shlex.join(args)}: {err.getvalue().strip()}"
    if ns.command is None:
        return f"gpuwire {shlex.join(args)}: no command"
    if ns.command in ("token", "cache") and not getattr(ns, f"{ns.command}_command"):
        return f"gpuwire {shlex.join(args)}: no action"
    return None


DOCKER_RUN_VALUE_OPTS = {"-v", "--volume", "-e", "--env", "-p", "--publish", "--name", "--restart", "--gpus",
                         "--user", "-u", "-w", "--workdir", "--entrypoint", "--network", "--mount", "--env-file"}


def gpuwire_invocations(command: str) -> list[list[str]]:
    """The argument lists gpuwire gets from a command: `gpuwire ...` and `.../bin/gpuwire ...`,
    `docker exec NAME gpuwire ...`, `docker run ... gpuwire-server ARGS` (the image's entry
    point is gpuwire), and the same inside `sh -c '...'`."""
    found = []
    for argv in simple_commands(command):
        if os.path.basename(argv[0]) == "gpuwire":
            found.append(argv[1:])
        elif argv[:2] == ["docker", "exec"] and len(argv) > 3 and argv[3] == "gpuwire":
            found.append(argv[4:])
        elif argv[:2] == ["docker", "run"]:
            i, entrypoint = 2, None
            while i < len(argv) and argv[i].startswith("-"):
                if argv[i] == "--entrypoint":
                    entrypoint = argv[i + 1]
                i += 2 if argv[i] in DOCKER_RUN_VALUE_OPTS else 1
            image, rest = argv[i], argv[i + 1:]
            if entrypoint == "sh" and rest[:1] == ["-c"]:
                found += gpuwire_invocations(rest[1])
            elif IMAGES.get(image) == "server" and entrypoint is None and rest:
                found.append(rest)
    return found


def check_block(text: str, where: str) -> list[str]:
    """Problems of a block: shell syntax (bash -n), gpuwire subcommands and flags."""
    problems = []
    r = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    if r.returncode:
        problems.append(f"{where}: bash -n: {r.stderr.strip()}")
    for cmd in commands(text):
        for args in gpuwire_invocations(cmd):
            err = gpuwire_args_error(args)
            if err:
                problems.append(f"{where}: {err}")
    return problems


# ---------------------------------------------------------------------------------------------
# running the documents' commands


def own_address() -> str | None:
    """A non-loopback IPv4 address of this machine (where a server on 0.0.0.0 is reached
    beyond loopback), or None."""
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for m in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+)/", out):
        with contextlib.suppress(OSError), socket.socket() as s:
            s.bind((m.group(1), 0))
            return m.group(1)
    return None


class Setting:
    """Where the documents' machine names, ports and folders point during a run."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.root = tmp / "root"
        self.home = tmp / "home"
        self.work = tmp / "work"
        for d in (self.root, self.home, self.work):
            d.mkdir()
        self.ip = own_address()
        self.loopback_only = self.ip is None
        self.ip = self.ip or "127.0.0.1"
        self.port, self.mport = free_port(), free_port()
        # what the check-only install steps would have made: gpuwire on PATH and in /opt/gpuwire
        bindir = self.root / "bin"
        venv_bin = self.root / "opt" / "gpuwire" / "bin"
        for d in (bindir, venv_bin):
            d.mkdir(parents=True)
            (d / "gpuwire").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m gpuwire \"$@\"\n")
            (d / "gpuwire").chmod(0o755)
        (self.work / "docs").symlink_to(ROOT / "docs")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPUWIRE_") and k != "LD_AUDIT"}
        env.update(HOME=str(self.home), PATH=f"{self.root / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
                   PYTHONPATH=str(SRC), PYTHONUNBUFFERED="1", XDG_STATE_HOME=str(self.home / ".local" / "state"),
                   XDG_CACHE_HOME=str(self.home / ".cache"),
                   # where root's defaults (/var/lib/gpuwire, /var/cache/gpuwire) would be: never the host's
                   GPUWIRE_STATE_DIR=str(self.root / "default-state"),
                   GPUWIRE_CACHE_DIR=str(self.root / "default-cache"))
        if self.loopback_only:  # no address beyond loopback here: make clients use TLS all the same
            env["GPUWIRE_TLS"] = "1"
        return env

    def rewrite_text(self, text: str) -> str:
        for placeholder, real in PLACEHOLDERS.items():
            text = text.replace(placeholder, real)
        for d in HOST_DIRS:
            text = re.sub(rf"(?<![\w./]){re.escape(d)}(?=[/\s\"':]|$)", str(self.root) + d, text, flags=re.M)
        text = re.sub(r"\b7750\b", str(self.port), text)
        text = re.sub(r"\b7751\b", str(self.mport), text)
        text = text.replace("--driver nvidia", "--driver standin").replace('driver = "nvidia"', 'driver = "standin"')
        return text

    def rewrite_command(self, cmd: str) -> str:
        """One command as this machine runs it (see docs/deploy.md, "How this guide is tested")."""
        argv = simple_commands(cmd)
        program = os.path.basename(argv[0][0]) if argv and argv[0] else ""
        if program in HOST_ONLY or (program.startswith("python") and "venv" in cmd and "/opt/" in cmd):
            return f": checked only: {program}"
        if program in OPTIONAL and not shutil.which(program):
            return f": {program} is not installed here"
        if program == "chgrp":
            return ": no gpuwire group here"
        cmd = re.sub(r"(^|&& |\| |; )sudo -u gpuwire ", r"\1", cmd)
        cmd = re.sub(r"(^|&& |\| |; )sudo ", r"\1", cmd)
        if program == "install":
            cmd = re.sub(r" -[og] \S+", "", cmd.split("\n", 1)[0]) + cmd[len(cmd.split("\n", 1)[0]):]
        m = re.match(r"scp gpu-box:(\S+) (\S+)$", cmd)
        if m:
            cmd = f"cp {m.group(1)} {m.group(2)}"
        m = re.match(r"ssh gpu-box (.+)$", cmd)
        if m:
            cmd = m.group(1)
        cmd = self.rewrite_text(cmd)
        return re.sub(r"\bgpu-box\b|\b192\.0\.2\.10\b", self.ip, cmd)

    def script(self, blocks: list[tuple[str, str, int]], name: str) -> str:
        """One bash script that runs the blocks in order (servers in the background)."""
        out = ["set -euo pipefail", "servers=()",
               "stop_servers() { for p in \"${servers[@]}\"; do kill -TERM \"$p\" 2>/dev/null || true; "
               "done; for p in \"${servers[@]}\"; do wait \"$p\" || echo \"server $p exit status $?\"; done; }",
               "trap stop_servers EXIT"]
        for n, (mode, text, line) in enumerate(blocks):
            cmds = [self.rewrite_command(c) for c in commands(text)]
            out.append(f"echo '### {name} line {line} ({mode})'")
            if mode == "run":
                out += cmds
            elif mode == "alt":
                out.append(f"(mkdir -p alt-{n} && cd alt-{n}")
                out += cmds
                out.append(")")
            elif mode == "server":
                for i, c in enumerate(cmds):
                    log = f"server-{n}-{i}.log"
                    out.append(f"{c} > {log} 2>&1 &")
                    out.append("servers+=($!)")
                    out.append(f"for _ in $(seq 600); do grep -q 'listening on' {log} && break; "
                               f"kill -0 $! 2>/dev/null || {{ cat {log}; exit 1; }}; sleep 0.1; done")
                    out.append(f"grep -q 'listening on' {log} || {{ cat {log}; exit 1; }}")
        out.append("echo '### done'")
        return "\n".join(out) + "\n"

    def run(self, blocks, name: str, timeout: float = 240) -> subprocess.CompletedProcess:
        script = self.script(blocks, name)
        (self.tmp / f"{name}.sh").write_text(script)
        proc = subprocess.Popen(["bash", str(self.tmp / f"{name}.sh")], cwd=self.work, env=self.env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail(f"{name} did not finish within {timeout} s:\n{out}")
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def run_blocks(path: Path) -> list[tuple[str, str, int]]:
    return [b for b in sh_blocks(path) if b[0] in ("run", "server", "alt")]


# ---------------------------------------------------------------------------------------------
# the guide


def test_every_guide_block_says_how_it_is_tested():
    blocks = sh_blocks(GUIDE)
    assert len(blocks) >= 15
    bad = [line for mode, _, line in blocks if mode not in MODES]
    assert not bad, f"docs/deploy.md: ```sh blocks without <!-- test: {'|'.join(MODES)} --> at lines {bad}"
    text = GUIDE.read_text()
    assert text.count("```sh") == len(blocks), "a ```sh fence the test did not read"


@pytest.mark.parametrize("path", [GUIDE, README], ids=["deploy.md", "README.md"])
def test_every_command_parses_and_uses_real_gpuwire_flags(path):
    problems = []
    for mode, text, line in sh_blocks(path):
        problems += check_block(text, f"{path.name} line {line} ({mode})")
    assert not problems, "\n".join(problems)


def test_the_checker_catches_a_wrong_flag():
    assert gpuwire_args_error(["server", "--listen", "0.0.0.0:7750"]) is None
    assert gpuwire_args_error(["server", "--no-such-flag"])
    assert gpuwire_args_error(["statuz"])
    assert gpuwire_args_error(["token"])
    bad = "docker run --rm -v s:/var/lib/gpuwire gpuwire-server token create --nmae laptop > t"
    assert gpuwire_invocations(bad) == [["token", "create", "--nmae", "laptop"]]
    assert check_block(bad + "\n", "x")
    assert check_block("sudo -u gpuwire /opt/gpuwire/bin/gpuwire server --bogus\n", "x")


def test_the_guide_runs_on_the_standin(tmp_path):
    s = Setting(tmp_path)
    r = s.run(run_blocks(GUIDE), "deploy")
    assert r.returncode == 0 and "### done" in r.stdout, r.stdout
    out = r.stdout
    # what the commands printed: the token list, TLS status, smi, top, the program, the CA check
    assert re.search(r"^[0-9a-f]{16}  \S+ \S+  laptop$", out, re.M), out
    assert out.count(f"gpuwire server {s.ip}:{s.port}: reachable (TLS") >= 3, out
    assert "gpuwire CPU stand-in" in out and "Driver Version:" in out, out
    assert "GPUs: 1" in out, out
    assert re.search(rf"^gpuwire \S+ on 0\.0\.0\.0:{s.port} ", out, re.M), out
    assert "server.pem: OK" in out, out
    if shutil.which("curl"):
        assert re.search(r"^gpuwire_sessions_active \d", out, re.M), out
    if shutil.which("systemd-analyze"):
        assert re.search(r"Overall exposure level for gpuwire\.service: [0-4]\.\d OK", out), out
    # the files where the service expects them, with the modes the guide gives
    etc = s.root / "etc" / "gpuwire"
    assert (etc / "server.key").stat().st_mode & 0o777 == 0o640
    assert (s.root / "var" / "lib" / "gpuwire").stat().st_mode & 0o777 == 0o700
    assert (s.root / "var" / "lib" / "gpuwire" / "tokens.json").stat().st_mode & 0o777 == 0o600
    assert (s.home / ".config" / "gpuwire" / "token").stat().st_mode & 0o777 == 0o600
    assert not (s.work / "laptop.token").exists(), "the guide removes the token from the GPU machine"
    assert (s.root / "etc" / "systemd" / "system" / "gpuwire.service").read_text() == UNIT.read_text()
    assert "server exit status" not in out, "the server did not exit 0 on SIGTERM:\n" + out


# ---------------------------------------------------------------------------------------------
# the README


def test_readme_first_lines_unchanged_and_true():
    first = README.read_text().splitlines()[:2]
    assert first == ["    ./scripts/setup && .venv/bin/gpuwire demo",
                     "    ./scripts/setup && .venv/bin/python -m pytest -q tests"]
    assert os.access(ROOT / "scripts" / "setup", os.X_OK)
    assert gpuwire_args_error(["demo"]) is None
    for line in first:
        assert not subprocess.run(["bash", "-n"], input=line, text=True).returncode


def test_readme_blocks_say_how_they_are_tested():
    blocks = sh_blocks(README)
    assert len(blocks) >= 3
    assert all(mode in MODES for mode, _, _ in blocks), blocks
    assert README.read_text().count("```sh") == len(blocks)


def test_readme_examples_run_as_written(tmp_path):
    s = Setting(tmp_path)
    blocks = run_blocks(README)
    env_block = ("run", "export GPUWIRE_SERVER=gpu-box:7750 GPUWIRE_TOKEN_FILE=laptop.token "
                        "GPUWIRE_TLS_CA=server.pem\n", 0)
    # the client's second example says the variables are set: set them before the last block
    blocks = blocks[:-1] + [env_block] + blocks[-1:]
    r = s.run(blocks, "readme")
    assert r.returncode == 0 and "### done" in r.stdout, r.stdout
    assert r.stdout.count("GPUs: 1") == 2, r.stdout
    assert (s.root / "default-state" / "tokens.json").is_file()  # the default state folder, moved
    assert "server exit status" not in r.stdout, r.stdout


# ---------------------------------------------------------------------------------------------
# the systemd unit


def unit_settings() -> list[tuple[str, str]]:
    out = []
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.append((key, value))
    return out


def test_unit_runs_real_flags_and_points_to_installed_docs():
    settings = unit_settings()
    exec_start = [v for k, v in settings if k == "ExecStart"]
    assert len(exec_start) == 1
    argv = shlex.split(exec_start[0])
    assert argv[0] == "/opt/gpuwire/bin/gpuwire" and gpuwire_args_error(argv[1:]) is None
    guide = GUIDE.read_text()
    docs = [v for k, v in settings if k == "Documentation"]
    assert docs
    for uri in docs:
        assert uri.startswith("file:///"), uri
        path = uri[len("file://"):]
        m = re.search(rf"install -D -m 644 docs/(\S+) {re.escape(path)}$", guide, re.M)
        assert m and (ROOT / "docs" / m.group(1)).is_file(), f"nothing in docs/deploy.md installs {path}"


def test_unit_hardening():
    settings = dict(unit_settings())
    keys = [k for k, _ in unit_settings()]
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "DevicePolicy": "closed", "CapabilityBoundingSet": "",
                       "SystemCallArchitectures": "native", "LockPersonality": "yes", "User": "gpuwire"}.items():
        assert settings.get(key) == value, (key, settings.get(key))
    assert "MemoryDenyWriteExecute" not in keys, "not compatible with the CUDA driver (its JIT)"
    assert "PrivateDevices" not in keys, "it would hide /dev/nvidia*"
    allowed = [v for k, v in unit_settings() if k == "DeviceAllow"]
    for group in ("char-nvidia rw", "char-nvidia-uvm rw", "char-nvidia-caps rw"):
        assert group in allowed
    assert set(settings["ReadWritePaths"].split()) == {"/var/lib/gpuwire", "/var/cache/gpuwire"}
    assert set(settings["RestrictAddressFamilies"].split()) >= {"AF_INET", "AF_INET6", "AF_UNIX"}


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_unit_exposure_below_5():
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)], capture_output=True,
                       text=True, timeout=60)
    m = re.search(r"Overall exposure level for gpuwire\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) < 5.0, r.stdout


# ---------------------------------------------------------------------------------------------
# the Dockerfiles


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments left out."""
    out, cur = [], ""
    for line in path.read_text().splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if cur and line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    assert not cur, f"{path}: a continuation line ends the file"
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(a, str) for a in value), args
    return value


def final_stage(instrs):
    last_from = max(i for i, (k, _) in enumerate(instrs) if k == "FROM")
    return instrs[last_from:]


KNOWN = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR",
         "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


@pytest.mark.parametrize("which", sorted(DOCKERFILES))
def test_dockerfile_parses_and_its_commands_exist(which):
    instrs = dockerfile_instructions(DOCKERFILES[which])
    assert {k for k, _ in instrs} <= KNOWN
    assert instrs[0][0] in ("ARG", "FROM")
    problems = []
    for key, args in instrs:
        if key == "RUN":
            problems += check_block(args + "\n", f"{which} RUN")
    final = final_stage(instrs)
    entry = [exec_form(a) for k, a in final if k == "ENTRYPOINT"]
    cmd = [exec_form(a) for k, a in final if k == "CMD"]
    assert len(entry) == 1 and len(cmd) == 1
    argv = entry[0] + cmd[0]
    assert argv[0] == "gpuwire"
    err = gpuwire_args_error(argv[1:])
    assert err is None, err
    for key, args in final:
        if key == "HEALTHCHECK":
            hc = exec_form(args[args.index("CMD") + 3:].strip())
            assert hc[0] == "gpuwire"
            err = gpuwire_args_error(hc[1:])
            assert err is None, err
    assert not problems, "\n".join(problems)
    user = [a for k, a in final if k == "USER"]
    assert user and not user[-1].startswith(("0", "root")), "runs as root"


def test_server_image():
    final = final_stage(dockerfile_instructions(DOCKERFILES["server"]))
    assert re.fullmatch(r"nvidia/cuda:\$\{CUDA_VERSION\}-(base|runtime)-ubuntu24\.04", final[0][1])
    assert re.search(r"^ARG CUDA_VERSION=13\.0\.\d+$", DOCKERFILES["server"].read_text(), re.M)
    volumes = exec_form([a for k, a in final if k == "VOLUME"][0])
    assert set(volumes) == {"/var/lib/gpuwire", "/var/cache/gpuwire"}
    cmd = exec_form([a for k, a in final if k == "CMD"][0])
    assert cmd[:1] == ["server"] and cmd[cmd.index("--driver") + 1] == "nvidia"
    assert any(k == "HEALTHCHECK" and "status" in a for k, a in final)
    assert ("EXPOSE", "7750") in final


def test_client_image_has_no_nvidia_software():
    text = DOCKERFILES["client"].read_text()
    final = final_stage(dockerfile_instructions(DOCKERFILES["client"]))
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", final[0][1])
    body = " ".join(a for k, a in final if k in ("RUN", "ENV", "COPY", "ADD"))
    assert "nvidia" not in body.lower() and "apt-get" not in body
    assert [a for k, a in final if k == "COPY"] == ["--from=build /wheels/ /tmp/wheels/"]
    assert exec_form([a for k, a in final if k == "ENTRYPOINT"][0]) == ["gpuwire", "run", "--"]
    assert "ARG TORCH_SPEC=torch" in text
