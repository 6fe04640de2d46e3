"""GPU servers scheduled by Slurm, for real (docs/scale-out.md): munged,
slurmctld and one slurmd on this machine from a generated slurm.conf, and two
gpuwire servers on the CPU stand-in as the "GPU nodes":
  A  the slurmd node's own server: its GPU is the node's GRES gpu:1;
  B  a server the node reaches over the network: its GPU is the licence rgpu_b:1
     (the node plays a CPU-only node for licence jobs).
Both servers require tokens and hold only an admin token: every client token
is minted by the prolog for one job. The checks: two jobs for one GPU (the
second waits in Slurm's queue, then runs); a job cancelled mid-run (its lease
and worker freed, seen in the server's own state); a licence job whose batch
script knows nothing of gpuwire, run past its time limit (lease freed); and
`gpuwire run --slurm` from a plain shell running a test program.

Slurm's time limits are whole minutes and slurmctld checks them every 30 s:
the time-limit test moves the running job's EndTime to now (`scontrol update
EndTime=now`), so slurmctld ends it as TIMEOUT at its next check.
Skipped when slurmctld, slurmd or munged is not installed (.ci/run installs them).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import GPUWIRE, PROGRAMS_DIR, SRC, free_port, gpuwire_env, start_server

from gpuwire.auth import TokenStore
from gpuwire.slurm import admin_client
from gpuwire.status import probe

DAEMONS = ("munged", "slurmctld", "slurmd", "salloc", "sbatch", "squeue", "scontrol", "scancel", "srun")
MISSING = [d for d in DAEMONS if shutil.which(d) is None and not os.path.exists(f"/usr/sbin/{d}")]
SKIP_WHY = (f"slurmctld, slurmd and munged are not installed ({', '.join(MISSING)} missing; apt-get install "
            f"slurmctld slurmd slurm-client munge, as .ci/run does)" if MISSING
            else "needs root: slurmd runs jobs as their users, munged and slurmctld run as root here")
pytestmark = pytest.mark.skipif(bool(MISSING) or os.geteuid() != 0, reason=SKIP_WHY)

VECTOR_ADD = PROGRAMS_DIR / "vector_add_shared"
# a CUDA client that holds its session (and its lease) until killed
HOLD = ("import ctypes, time\nlib = ctypes.CDLL('libcuda.so.1')\nassert lib.cuInit(0) == 0\n"
        "d = ctypes.c_int(); assert lib.cuDeviceGet(ctypes.byref(d), 0) == 0\n"
        "c = ctypes.c_void_p(); assert lib.cuCtxCreate_v2(ctypes.byref(c), 0, d) == 0\n"
        "print('ready', flush=True)\ntime.sleep(600)\n")
# ... and one that ignores the SIGTERM salloc sends it when the job ends: the server must end its session itself
STUBBORN = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + HOLD


def sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.conf = root / "slurm.conf"
        self.env = gpuwire_env({"SLURM_CONF": str(self.conf), "GPUWIRE_SLURM_CONFIG": str(root / "gpuwire-slurm.toml"),
                                "GPUWIRE_SLURM_REMOTE": f"{sys.executable} -m gpuwire"})
        self.servers = {}
        self.admin = {}

    def slurm(self, *cmd: str, timeout: float = 30, check: bool = True) -> str:
        r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and r.returncode != 0:
            pytest.fail(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}\n{self.logs()}")
        return r.stdout

    def logs(self) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log", "hooks.log"):
            p = self.root / name
            if p.exists():
                out.append(f"--- {name} (tail) ---\n" + "\n".join(p.read_text(errors="replace").splitlines()[-25:]))
        return "\n".join(out)

    def job_state(self, job: str) -> str:
        out = self.slurm("scontrol", "show", "job", "-o", job, check=False)
        m = re.search(r"\bJobState=(\S+)", out)
        return m.group(1) if m else "GONE"

    def wait(self, what: str, cond, timeout: float = 20.0, server=None):
        deadline = time.monotonic() + timeout
        while True:
            got = cond()
            if got:
                return got
            if time.monotonic() > deadline:
                extra = ("\n--- server log (tail) ---\n" + "\n".join(server.log_lines()[-30:])) if server else ""
                pytest.fail(f"not within {timeout} s: {what}\n{self.logs()}{extra}")
            time.sleep(0.2)

    def state(self, name: str) -> dict:
        """The server's own state: its status snapshot and its job tokens."""
        addr = self.servers[name].address
        status = probe(addr, token=self.admin[name], rounds=1, bw_bytes=0)["status"]
        jobs = admin_client.request(addr, self.admin[name], {"op": "list"})["jobs"]
        return {"sessions": [s for s in status["sessions"] if s.get("worker_pid")],
                "held": status["leases"]["held"], "jobs": jobs}

    def stop(self) -> None:
        try:
            subprocess.run(["scancel", "--full", "-u", "root"], env=self.env, timeout=10, capture_output=True)
            time.sleep(1)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for srv in self.servers.values():
            srv.stop()


def _server(root: Path, name: str) -> tuple:
    tokens = root / f"{name}.tokens.json"
    admin, _ = TokenStore(tokens).create("slurm-admin", role="admin")
    (root / f"admin_{name}.token").write_text(admin + "\n")
    os.chmod(root / f"admin_{name}.token", 0o600)
    srv = start_server(root / f"server_{name}.log", extra_args=("--require-auth", "--tokens-file", str(tokens),
                                                                "--queue-interval", "0.5"))
    return srv, admin


def _write_config(c: Cluster, ctld_port: int, slurmd_port: int) -> None:
    root, host = c.root, socket.gethostname().split(".")[0]
    for hook in ("prolog", "epilog", "task-prolog"):
        script = root / f"{hook}.sh"
        script.write_text(f"#!/bin/sh\nexport PYTHONPATH={SRC} GPUWIRE_SLURM_CONFIG={root}/gpuwire-slurm.toml\n"
                          f"export SLURM_CONF={c.conf} PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
                          f"exec {sys.executable} -m gpuwire slurm {hook} 2>>{root}/hooks.log\n")
        script.chmod(0o755)
    (root / "gpuwire-slurm.toml").write_text(
        f'jobs_dir = "{root}/jobs"\nadmin_token_file = "{root}/admin_a.token"\n'
        f'[local]\nserver = "{c.servers["a"].address}"\n'
        f'[licenses.rgpu_b]\nserver = "{c.servers["b"].address}"\nadmin_token_file = "{root}/admin_b.token"\n')
    (root / "gres.conf").write_text("AutoDetect=off\nName=gpu File=/dev/null\n")
    c.conf.write_text(f"""ClusterName=gwtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
Licenses=rgpu_b:1
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
PrologFlags=Alloc
Prolog={root}/prolog.sh
Epilog={root}/epilog.sh
TaskProlog={root}/task-prolog.sh
KillWait=2
MinJobAge=300
SlurmdParameters=config_overrides
NodeName=gpunode NodeHostname={host} NodeAddr=127.0.0.1 CPUs=4 Gres=gpu:1 State=UNKNOWN
PartitionName=gpu Nodes=gpunode Default=YES MaxTime=10 OverSubscribe=YES State=UP
""")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    root.chmod(0o755)
    for d in ("state", "spool", "jobs"):
        (root / d).mkdir()
    c = Cluster(root)
    try:
        for name in ("a", "b"):
            c.servers[name], c.admin[name] = _server(root, name)
        _write_config(c, free_port(), free_port())
        key = root / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        c.procs.append(subprocess.Popen(
            [sbin("munged"), "-F", "--force", f"--socket={root}/munge.sock", f"--key-file={key}",
             f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log", f"--seed-file={root}/munge.seed"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        c.wait("munged's socket", lambda: (root / "munge.sock").exists(), 10)
        for cmd in ([sbin("slurmctld"), "-D", "-i", "-f", str(c.conf)],
                    [sbin("slurmd"), "-D", "-N", "gpunode", "-f", str(c.conf)]):
            c.procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, env=c.env))
        c.wait("the node idle in sinfo", lambda: "idle" in c.slurm("sinfo", "-h", "-o", "%T", check=False), 30)
        yield c
    finally:
        c.stop()


def run_slurm(c: Cluster, *cmd: str, gres: str = "gpu:1") -> subprocess.Popen:
    return subprocess.Popen(GPUWIRE + ["run", "--slurm", "--gres", gres, "--time", "2", "--", *cmd],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=c.env)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def end_group(proc: subprocess.Popen) -> None:
    """Kill what a test left running: gpuwire run, its salloc and CMD (which
    salloc puts in a process group of its own)."""
    if proc.poll() is not None:
        return  # it ended, and salloc with it (or end_group ran already)
    for pid in [proc.pid] + descendants(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    proc.wait()


def hold_a_gpu(c: Cluster, source: str = HOLD) -> subprocess.Popen:
    proc = run_slurm(c, sys.executable, "-c", source)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        end_group(proc)
        pytest.fail(f"the holding client did not start: {line!r}\n{proc.communicate(timeout=30)[1]}\n{c.logs()}")
    return proc


def job_of(c: Cluster, server: str) -> str:
    jobs = c.state(server)["jobs"]
    assert len(jobs) == 1, jobs
    return jobs[0]["job"]


def worker_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def freed(c: Cluster, server: str, pid: int):
    st = c.state(server)
    return not st["held"] and not st["sessions"] and not st["jobs"] and not worker_alive(pid)


def test_run_slurm_from_a_plain_shell(cluster):
    if not VECTOR_ADD.is_file():
        pytest.skip("build/programs/vector_add_shared is not built (make -C tests/programs)")
    r = subprocess.run(GPUWIRE + ["run", "--slurm", "--gres", "gpu:1", "--partition", "gpu", "--time", "1", "--",
                                  str(VECTOR_ADD)], capture_output=True, text=True, timeout=60, env=cluster.env,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "vector_add: n=" in r.stdout and " ok" in r.stdout, \
        f"{r.stdout}\n{r.stderr}\n{cluster.logs()}"
    job = re.search(r"Slurm job (\d+): gpunode, gpuwire server " + re.escape(cluster.servers["a"].address), r.stderr)
    assert job, r.stderr
    # the session ran with the job's token: the server logged it under that token's name
    assert re.search(rf"authenticated .*token_name=slurm-job-{job.group(1)}\b", cluster.servers["a"].log_text())
    record = cluster.slurm("scontrol", "show", "job", "-o", job.group(1))
    assert "Partition=gpu" in record and "TimeLimit=00:01:00" in record and "gpu:1" in record, record
    # CMD ended, so did the job, and the epilog revoked its token
    cluster.wait("the job's end and its token revoked", lambda: cluster.job_state(job.group(1)) == "COMPLETED"
                 and not cluster.state("a")["jobs"], 20, cluster.servers["a"])


def test_two_jobs_for_one_gpu_queue_in_slurm(cluster):
    first = hold_a_gpu(cluster)
    second = None
    try:
        job1 = job_of(cluster, "a")
        held = cluster.state("a")["held"]
        assert len(held) == 1 and held[0]["gpus"] == [0], held
        second = run_slurm(cluster, str(VECTOR_ADD) if VECTOR_ADD.is_file() else sys.executable,
                           *([] if VECTOR_ADD.is_file() else ["-c", HOLD.replace("time.sleep(600)", "")]))
        # Slurm, not gpuwire, holds the second back: it is pending and its prolog has minted nothing
        line = second.stderr.readline()
        assert re.match(r"gpuwire run: waiting for Slurm: job \d+ pending\b", line), line
        assert [j["job"] for j in cluster.state("a")["jobs"]] == [job1]
        first.send_signal(signal.SIGTERM)  # passed on to salloc: it ends job 1, whose CMD gets SIGTERM
        assert first.wait(timeout=30) != 0
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, f"{out}\n{err}\n{cluster.logs()}"
        job2 = re.search(r"Slurm job (\d+):", err)
        assert job2 and job2.group(1) != job1, err
        cluster.wait(f"job {job1} ended", lambda: cluster.job_state(job1) in ("COMPLETED", "CANCELLED", "FAILED"), 20)
    finally:
        for p in (first, second):
            if p is not None:
                end_group(p)
    cluster.wait("GPU 0 free again", lambda: not cluster.state("a")["held"] and not cluster.state("a")["jobs"],
                 20, cluster.servers["a"])


def test_a_cancelled_job_frees_its_lease_and_worker(cluster):
    holder = hold_a_gpu(cluster, STUBBORN)
    try:
        job = job_of(cluster, "a")
        st = cluster.state("a")
        assert len(st["sessions"]) == 1 and st["held"], st
        session = st["sessions"][0]
        assert session["token"] == st["jobs"][0]["token_id"] and session["gpus"] == [0], st
        pid = session["worker_pid"]
        assert worker_alive(pid)
        cluster.slurm("scancel", job)
        cluster.wait("the cancelled job's lease, token and worker freed", lambda: freed(cluster, "a", pid), 20,
                     cluster.servers["a"])
        # COMPLETING until slurmd has finished the epilog, which freed the lease above
        cluster.wait("the job's state CANCELLED", lambda: cluster.job_state(job) == "CANCELLED", 20)
        assert re.search(rf'msg="job tokens revoked" job={job} tokens=1 sessions_ended=1',
                         cluster.servers["a"].log_text())
        assert holder.poll() is None  # the client lives on, without its GPU session
    finally:
        end_group(holder)


def test_a_licence_job_over_its_time_limit_frees_its_lease(cluster):
    """A batch script with no gpuwire in it, on the "CPU-only" node, holding the
    rgpu_b licence: the TaskProlog points its CUDA at server B."""
    out = cluster.root / "licence-job.out"
    script = cluster.root / "hold.py"
    script.write_text(HOLD)
    job = cluster.slurm("sbatch", "--parsable", "-L", "rgpu_b:1", "--time", "1", f"--output={out}",
                        "--wrap", f"{sys.executable} {script}").strip().split(";")[0]
    st = cluster.wait("the licence job's CUDA session on server B",
                      lambda: (s := cluster.state("b"))["sessions"] and s, 30, cluster.servers["b"])
    assert cluster.state("a")["jobs"] == [], "a licence job must not take the GRES server's GPU"
    assert [j["job"] for j in st["jobs"]] == [job] and st["sessions"][0]["token"] == st["jobs"][0]["token_id"]
    pid = st["sessions"][0]["worker_pid"]
    assert "ready" in out.read_text()
    cluster.slurm("scontrol", "update", f"JobId={job}", "EndTime=now")
    cluster.wait("the job timed out", lambda: cluster.job_state(job) == "TIMEOUT", 45)
    cluster.wait("its lease, token and worker freed", lambda: freed(cluster, "b", pid), 20, cluster.servers["b"])


def test_a_job_token_gets_only_its_jobs_gpus_and_admin_tokens_run_nothing(cluster):
    srv = cluster.servers["a"]
    other = admin_client.request(srv.address, cluster.admin["a"], {"op": "mint", "job": "999999", "gpus": [0]})
    try:
        with pytest.raises(admin_client.AdminRequestFailed, match="bound to job 999999"):
            admin_client.request(srv.address, cluster.admin["a"], {"op": "mint", "job": "999998", "gpus": [0]})
        with pytest.raises(admin_client.AdminRequestFailed, match="admin token"):
            admin_client.request(srv.address, other["token"], {"op": "list"})
        env = {k: v for k, v in cluster.env.items() if not k.startswith("SLURM")}
        r = subprocess.run(GPUWIRE + ["run", "--server", srv.address, "--gpu", "1", "--", sys.executable, "-c",
                                      "import ctypes; print(ctypes.CDLL('libcuda.so.1').cuInit(0))"],
                           capture_output=True, text=True, timeout=30, env={**env, "GPUWIRE_TOKEN": other["token"]})
        assert "outside this job's GPUs" in r.stderr or "Slurm job 999999 has 1 GPU" in r.stderr, r.stderr
        r = subprocess.run(GPUWIRE + ["run", "--server", srv.address, "--", sys.executable, "-c",
                                      "import ctypes; print(ctypes.CDLL('libcuda.so.1').cuInit(0))"],
                           capture_output=True, text=True, timeout=30,
                           env={**env, "GPUWIRE_TOKEN": cluster.admin["a"]})
        assert "runs no session" in r.stderr, r.stderr
    finally:
        admin_client.request(srv.address, cluster.admin["a"], {"op": "revoke", "job": "999999"})


def test_sweep_revokes_the_tokens_of_ended_jobs(cluster):
    """An epilog that could not reach the server leaves a token behind: `gpuwire
    slurm sweep` revokes it once Slurm says the job has ended (or never knew it)."""
    srv = cluster.servers["a"]
    admin_client.request(srv.address, cluster.admin["a"], {"op": "mint", "job": "999990", "gpus": [0]})
    r = subprocess.run(GPUWIRE + ["slurm", "sweep"], capture_output=True, text=True, timeout=60, env=cluster.env)
    assert r.returncode == 0 and "job 999990 has ended: revoked 1 token(s)" in r.stderr, r.stderr
    assert cluster.state("a")["jobs"] == []
