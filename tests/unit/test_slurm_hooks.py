"""The Slurm side (gpuwire/slurm/hooks.py, alloc.py) without Slurm: the site
config checked, what Slurm tells a prolog parsed (SLURM_JOB_GPUS, scontrol's
record, licences, time limits), the job files private to the job's user,
the TaskProlog's export lines, squeue's line as a progress message, the
sweep's choice, and the prolog and epilog against a fake server (which
server, which admin token, what request; a server that does not answer
fails no prolog, since Slurm would drain the node)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from gpuwire.slurm import alloc, hooks
from gpuwire.slurm.hooks import SiteConfigError


def write(tmp_path, text: str):
    p = tmp_path / "slurm.toml"
    p.write_text(text)
    return str(p)


def test_site_config(tmp_path):
    cfg = hooks.load_config(write(tmp_path, f'jobs_dir = "{tmp_path}/jobs"\n[local]\nserver = "127.0.0.1:7750"\n'
                                            f'client_address = "gpu-a:7750"\ngpu_map = [1, 0]\n'
                                            f'[licenses.rgpu_b]\nserver = "gpu-b:7750"\npool = [2, 3]\n'
                                            f'admin_token_file = "{tmp_path}/b.token"\n'))
    assert cfg.local_server == "127.0.0.1:7750" and cfg.client_address == "gpu-a:7750" and cfg.gpu_map == [1, 0]
    assert cfg.licenses["rgpu_b"].server == "gpu-b:7750" and cfg.licenses["rgpu_b"].pool == [2, 3]
    (tmp_path / "b.token").write_text("tok-b\n")
    assert cfg.admin_token("gpu-b:7750") == "tok-b"
    with pytest.raises(SiteConfigError, match="cannot read the admin token"):
        cfg.admin_token("127.0.0.1:7750")  # the site's default file does not exist here


@pytest.mark.parametrize("text, words", [
    ("jobs_dir = 3\n", "must be a string"),
    ("[local]\ngpu_map = [-1]\n", "gpu_map must be"),
    ("[licenses.rgpu_b]\npool = [0]\n", "server .* is required"),
    ('[licenses."a b"]\nserver = "x:1"\n', "licence name"),
    ("local = 3\n", "must be a table"),
    ("not toml [", "not valid TOML"),
])
def test_a_bad_site_config_says_what(tmp_path, text, words):
    with pytest.raises(SiteConfigError, match=words):
        hooks.load_config(write(tmp_path, text))


def test_what_slurm_tells_a_prolog():
    assert hooks.job_gpus({"SLURM_JOB_GPUS": "0,2"}, None) == [0, 2]
    assert hooks.job_gpus({"SLURM_JOB_GPUS": "0,2"}, [3, 2, 1]) == [3, 1]
    assert hooks.job_gpus({}, None) == []
    with pytest.raises(SiteConfigError):
        hooks.job_gpus({"SLURM_JOB_GPUS": "0,x"}, None)
    with pytest.raises(SiteConfigError):
        hooks.job_gpus({"SLURM_JOB_GPUS": "3"}, [0])
    with pytest.raises(SiteConfigError):
        hooks.job_id({"SLURM_JOB_ID": "../1"})
    rec = hooks.parse_job_record("JobId=12 JobName=x Licenses=rgpu_b:2,other TimeLimit=1-02:03:04 JobState=RUNNING")
    assert rec["Licenses"] == "rgpu_b:2,other" and rec["JobState"] == "RUNNING"
    assert hooks.parse_licenses(rec["Licenses"]) == {"rgpu_b": 2, "other": 1}
    assert hooks.parse_licenses("(null)") == {} and hooks.parse_licenses("a:x,b c:1") == {}
    assert hooks.parse_time_limit("1-02:03:04") == 93784 and hooks.parse_time_limit("05:00") == 300
    assert hooks.parse_time_limit("UNLIMITED") is None


def test_job_files_are_the_users_alone_and_the_task_prolog_exports(tmp_path, monkeypatch):
    cfg = hooks.SiteConfig(jobs_dir=tmp_path)
    meta, tok = hooks.job_files(cfg, "12")
    hooks._write_private(tok, "id.secret\n", os.getuid(), os.getgid())
    hooks._write_private(meta, json.dumps({"server": "gpu-b:7750", "export": True, "gpus": [1]}), None, None)
    assert stat.S_IMODE(tok.stat().st_mode) == 0o600 and stat.S_IMODE(meta.stat().st_mode) == 0o600
    assert hooks.read_job(cfg, "12") == ({"server": "gpu-b:7750", "export": True, "gpus": [1]}, "id.secret")
    try:
        got = hooks.task_env(cfg, {"SLURM_JOB_ID": "12", "LD_AUDIT": "/x/other.so"})
    except Exception as e:  # the native audit module is not built here
        pytest.skip(f"native files not built: {e}")
    assert got["GPUWIRE_SERVER"] == "gpu-b:7750" and got["GPUWIRE_TOKEN_FILE"] == str(tok)
    assert got["LD_AUDIT"].startswith("/x/other.so:") and got["LD_AUDIT"].endswith("gpuwire_audit.so")
    # a GRES job on its own GPU node gets nothing exported
    hooks._write_private(meta, json.dumps({"server": "127.0.0.1:7750", "export": False}), None, None)
    assert hooks.task_env(cfg, {"SLURM_JOB_ID": "12"}) == {}
    assert hooks.task_env(cfg, {"SLURM_JOB_ID": "13"}) == {}


def test_salloc_command_and_progress_line():
    cmd = alloc.salloc_command("gpuwire-ab", "gpu:2", "gpu", "10", ["attach", "--", "./app"])
    assert cmd == ["salloc", "--quiet", "--kill-command=TERM", "--job-name=gpuwire-ab", "--gres=gpu:2",
                   "--partition=gpu", "--time=10",
                   "--", "attach", "--", "./app"]
    assert alloc.describe_pending("12|PENDING|Resources\n") == ("12", "pending (Resources)")
    assert alloc.describe_pending("12|RUNNING|None") == ("12", "running")
    assert alloc.describe_pending("garbage") is None


def test_sweep_picks_only_jobs_slurm_says_have_ended():
    states = {"1": "RUNNING", "2": "COMPLETED", "3": "GONE", "4": None, "5": "CANCELLED+", "6": "COMPLETING",
              "7": "TIMEOUT"}
    listed = [{"job": j} for j in states] + [{"job": "../x"}, "junk", {"job": "2"}]
    assert hooks.stale_jobs(listed, states.get) == ["2", "3", "5", "7"]


class FakeAdmin:
    """admin_client.request as a prolog sees it: records requests, answers like a server."""

    def __init__(self, fail: str | None = None):
        self.calls = []
        self.fail = fail

    def __call__(self, server, token, req, **_):
        self.calls.append((server, token, req))
        if self.fail:
            raise hooks.admin_client.AdminRequestFailed(self.fail)
        if req["op"] == "mint":
            gpus = req.get("gpus") or req.get("pool", [0, 1])[:req.get("count", 1)]
            return {"ok": True, "token": "tid.secret", "token_id": "tid", "gpus": list(gpus)}
        return {"ok": True, "revoked": 1, "sessions_ended": 0}


def site(tmp_path) -> hooks.SiteConfig:
    (tmp_path / "admin.token").write_text("admin-a\n")
    (tmp_path / "admin_b.token").write_text("admin-b\n")
    return hooks.SiteConfig(jobs_dir=tmp_path / "jobs", admin_token_file=tmp_path / "admin.token",
                            local_server="127.0.0.1:7750", client_address="gpu-a:7750",
                            licenses={"rgpu_b": hooks.LicenseServer("rgpu_b", "gpu-b:7750", [2, 3],
                                                                    tmp_path / "admin_b.token")})


def test_prolog_and_epilog_of_a_gres_job(tmp_path, monkeypatch):
    cfg, fake = site(tmp_path), FakeAdmin()
    monkeypatch.setattr(hooks.admin_client, "request", fake)
    monkeypatch.setattr(hooks, "job_record", lambda c, j: {"TimeLimit": "00:10:00", "Licenses": "(null)"})
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_GPUS": "1", "SLURM_JOB_UID": str(os.getuid()),
           "SLURM_JOB_GID": str(os.getgid())}
    assert hooks.prolog(cfg, env) == 0
    assert fake.calls == [("127.0.0.1:7750", "admin-a", {"op": "mint", "job": "7", "expires_s": 600 + 3600,
                                                          "gpus": [1]})]
    record, token = hooks.read_job(cfg, "7")
    assert token == "tid.secret" and record["server"] == "gpu-a:7750" and record["export"] is False
    assert hooks.task_env(cfg, {"SLURM_JOB_ID": "7"}) == {}  # a GRES job's tasks have the real GPU
    assert hooks.epilog(cfg, env) == 0
    assert fake.calls[-1] == ("127.0.0.1:7750", "admin-a", {"op": "revoke", "job": "7"})
    assert hooks.read_job(cfg, "7") is None and not list(cfg.jobs_dir.iterdir())


def test_prolog_of_a_licence_job_and_of_a_job_without_gpus(tmp_path, monkeypatch):
    cfg, fake = site(tmp_path), FakeAdmin()
    monkeypatch.setattr(hooks.admin_client, "request", fake)
    monkeypatch.setattr(hooks, "job_record", lambda c, j: {"TimeLimit": "UNLIMITED", "Licenses": "rgpu_b:2"})
    assert hooks.prolog(cfg, {"SLURM_JOB_ID": "8"}) == 0
    assert fake.calls == [("gpu-b:7750", "admin-b", {"op": "mint", "job": "8", "expires_s": 0, "count": 2,
                                                     "pool": [2, 3]})]
    assert hooks.read_job(cfg, "8")[0] == {"job": "8", "server": "gpu-b:7750", "admin_server": "gpu-b:7750",
                                           "kind": "license", "gpus": [2, 3], "export": True}
    assert hooks.epilog(cfg, {"SLURM_JOB_ID": "8"}) == 0
    assert fake.calls[-1][:2] == ("gpu-b:7750", "admin-b")  # the licence's server, not the local one
    monkeypatch.setattr(hooks, "job_record", lambda c, j: {"Licenses": "other:1"})
    fake.calls.clear()
    assert hooks.prolog(cfg, {"SLURM_JOB_ID": "9"}) == 0 and hooks.epilog(cfg, {"SLURM_JOB_ID": "9"}) == 0
    assert fake.calls == []  # nothing of gpuwire's: no request at all


def test_a_server_that_does_not_answer_fails_no_prolog(tmp_path, monkeypatch, capsys):
    cfg = site(tmp_path)
    monkeypatch.setattr(hooks.admin_client, "request", FakeAdmin(fail="cannot reach gpu-a"))
    monkeypatch.setattr(hooks, "job_record", lambda c, j: {})
    assert hooks.prolog(cfg, {"SLURM_JOB_ID": "10", "SLURM_JOB_GPUS": "0"}) == 0  # non-zero would drain the node
    assert "job 10: no token minted: cannot reach gpu-a" in capsys.readouterr().err
    assert hooks.read_job(cfg, "10") is None
    assert hooks.credentials(cfg, {"SLURM_JOB_ID": "10"}) == 1
