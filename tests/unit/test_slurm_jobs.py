"""Job tokens on the server (gpuwire/slurm/jobs.py) and the hooks in auth.py and
leases.py they use: admin requests checked as hostile input, only an admin
token may mint or revoke, a job's GPUs are never given to another live job,
a job token's leases stay inside its GPUs, revoking ends the job's sessions,
and expiry. No server process: a Registry with fake workers stands in."""

from __future__ import annotations

import json
import signal
import time

import pytest

from gpuwire.auth import TokenStore
from gpuwire.leases import LeaseManager, LeaseRefused
from gpuwire.server.state import Registry, Session
from gpuwire.slurm import jobs
from gpuwire.slurm.jobs import AdminError, JobAdmin, lease_scope, parse_request


class Log:
    def __init__(self):
        self.lines = []

    def info(self, msg, **kw):
        self.lines.append((msg, kw))

    error = warn = info


class FakeWorker:
    def __init__(self):
        self.signals = []

    def send_signal(self, sig):
        self.signals.append(sig)

    def wait(self, timeout=None):
        return 0

    def kill(self):
        self.signals.append(signal.SIGKILL)


@pytest.fixture
def store(tmp_path):
    return TokenStore(tmp_path / "tokens.json")


@pytest.fixture
def admin(store):
    token, _ = store.create("slurm-admin", role=jobs.ROLE_ADMIN)
    return token


def ask(jobadmin: JobAdmin, token_id, req) -> dict:
    body = req if isinstance(req, bytes) else json.dumps(req).encode()
    return json.loads(jobadmin.answer(token_id, body))


def tid(token: str) -> str:
    return token.split(".")[0]


@pytest.mark.parametrize("body, words", [
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"op": "drop"}', "op must be"),
    (b'{"op": "mint", "job": 42, "gpus": [0]}', "job must be"),
    (b'{"op": "mint", "job": "4 2", "gpus": [0]}', "job must be"),
    (b'{"op": "mint", "job": "123456789012345678901", "gpus": [0]}', "job must be"),
    (b'{"op": "mint", "job": "1"}', "either gpus"),
    (b'{"op": "mint", "job": "1", "gpus": [0], "count": 1}', "either gpus"),
    (b'{"op": "mint", "job": "1", "gpus": []}', "non-empty"),
    (b'{"op": "mint", "job": "1", "gpus": [4]}', "from 0 to 3"),
    (b'{"op": "mint", "job": "1", "gpus": [-1]}', "from 0 to 3"),
    (b'{"op": "mint", "job": "1", "gpus": [true]}', "from 0 to 3"),
    (b'{"op": "mint", "job": "1", "gpus": [1, 1]}', "repeated"),
    (b'{"op": "mint", "job": "1", "count": 0}', "count must be"),
    (b'{"op": "mint", "job": "1", "count": 5}', "count must be"),
    (b'{"op": "mint", "job": "1", "count": 3, "pool": [0, 1]}', "more than the pool"),
    (b'{"op": "mint", "job": "1", "count": 1, "expires_s": -1}', "expires_s"),
    (b'{"op": "mint", "job": "1", "count": 1, "expires_s": 1e99}', "expires_s"),
    (b'{"op": "revoke"}', "job must be"),
    (b" " * (jobs.REQUEST_MAX + 1), "at most"),
])
def test_malformed_requests_are_refused_with_a_reason(body, words):
    with pytest.raises(AdminError, match=words):
        parse_request(body, gpu_count=4)


def test_only_an_admin_token_is_answered(store, admin):
    ja = JobAdmin(store, Registry(), 2, Log())
    user, _ = store.create("alice")
    for who in (None, tid(user), "0123456789abcdef"):
        reply = ask(ja, who, {"op": "list"})
        assert reply == {"ok": False, "error": reply["error"]} and "admin token" in reply["error"]
    assert ask(ja, tid(admin), {"op": "list"}) == {"ok": True, "jobs": []}
    assert "no tokens file" in ask(JobAdmin(None, Registry(), 2, Log()), tid(admin), {"op": "list"})["error"]


def test_a_minted_token_is_bound_to_its_job_and_gpus(store, admin):
    ja = JobAdmin(store, Registry(), 4, Log())
    r = ask(ja, tid(admin), {"op": "mint", "job": "17", "gpus": [2, 1], "expires_s": 60})
    assert r["ok"] and r["gpus"] == [1, 2] and r["job"] == "17"
    entry = store.entry(r["token_id"])
    assert (entry.role, entry.job, entry.gpus, entry.name) == ("job", "17", (1, 2), "slurm-job-17")
    assert time.time() + 50 < entry.expires <= time.time() + 60
    # it authenticates like any token, and the binding survives a reload of the file
    assert TokenStore(store.path).entry(r["token_id"]).gpus == (1, 2)
    assert [j["job"] for j in ask(ja, tid(admin), {"op": "list"})["jobs"]] == ["17"]


def test_a_gpu_bound_to_a_live_job_goes_to_no_other(store, admin):
    ja = JobAdmin(store, Registry(), 4, Log())
    assert ask(ja, tid(admin), {"op": "mint", "job": "1", "gpus": [0]})["ok"]
    r = ask(ja, tid(admin), {"op": "mint", "job": "2", "gpus": [0, 1]})
    assert not r["ok"] and "bound to job 1" in r["error"]
    # a licence job gets free GPUs of its pool only
    r = ask(ja, tid(admin), {"op": "mint", "job": "3", "count": 2, "pool": [0, 1, 2]})
    assert r["gpus"] == [1, 2]
    r = ask(ja, tid(admin), {"op": "mint", "job": "4", "count": 1, "pool": [0, 1, 2]})
    assert not r["ok"] and "only 0 of the pool" in r["error"]
    # another node of job 3 gets a token of its own for the same GPUs
    again = ask(ja, tid(admin), {"op": "mint", "job": "3", "count": 2, "pool": [0, 1, 2]})
    assert again["gpus"] == [1, 2] and again["token_id"] != r.get("token_id")
    assert ask(ja, tid(admin), {"op": "revoke", "job": "1"})["revoked"] == 1
    assert ask(ja, tid(admin), {"op": "mint", "job": "4", "count": 1, "pool": [0, 1, 2]})["gpus"] == [0]


def test_revoking_a_job_ends_its_sessions_only(store, admin):
    reg = Registry()
    ja = JobAdmin(store, reg, 2, Log())
    a = ask(ja, tid(admin), {"op": "mint", "job": "5", "gpus": [0]})
    b = ask(ja, tid(admin), {"op": "mint", "job": "6", "gpus": [1]})
    workers = {}
    for sid, token_id in ((1, a["token_id"]), (2, a["token_id"]), (3, b["token_id"])):
        reg.sessions[sid] = Session(sid, "peer", token=token_id)
        reg.workers[sid] = workers[sid] = FakeWorker()
    r = ask(ja, tid(admin), {"op": "revoke", "job": "5"})
    assert r == {"ok": True, "job": "5", "revoked": 1, "sessions_ended": 2}
    assert workers[1].signals[:1] == [signal.SIGTERM] and workers[2].signals[:1] == [signal.SIGTERM]
    assert workers[3].signals == []
    assert store.entry(a["token_id"]) is None and store.entry(b["token_id"]) is not None
    assert ask(ja, tid(admin), {"op": "revoke", "job": "5"})["revoked"] == 0


def test_an_expired_job_token_is_gone(store, admin):
    token, entry = store.create("slurm-job-9", role="job", job="9", gpus=(0,), expires=time.time() - 1)
    assert store.entry(entry.id) is None
    ok, _, reason = store.verify(b"n" * 32, b"0" * 80)
    assert not ok
    from gpuwire.auth import make_proof
    ok, _, reason = store.verify(b"n" * 32, make_proof(token, b"n" * 32))
    assert not ok and "unknown or revoked" in reason
    # its GPU is free for the next job
    ja = JobAdmin(store, Registry(), 1, Log())
    assert ask(ja, tid(admin), {"op": "mint", "job": "10", "gpus": [0]})["ok"]


def test_lease_scope_maps_a_jobs_gpus_to_0_n(store):
    _, job = store.create("j", role="job", job="3", gpus=(1, 3))
    _, user = store.create("u")
    assert lease_scope(None, 2, None) == (2, None, None)
    assert lease_scope(user, 2, None) == (2, None, None)
    assert lease_scope(job, None, None) == (None, None, frozenset({1, 3}))
    assert lease_scope(job, 1, None) == (3, None, frozenset({1, 3}))
    assert lease_scope(job, None, 2) == (None, 2, frozenset({1, 3}))
    with pytest.raises(LeaseRefused, match="has 2 GPUs here"):
        lease_scope(job, 2, None)
    with pytest.raises(LeaseRefused, match="3 GPUs asked"):
        lease_scope(job, None, 3)


def test_leases_within_a_jobs_gpus():
    lm = LeaseManager(4)
    whole = lm.request(True, None, 0, "job 1", within=frozenset({1, 2}))
    assert whole.granted is not None and whole.gpus == frozenset({1, 2})
    other = lm.request(True, None, 0, "job 2", count=2, within=frozenset({0, 3}))
    assert other.granted is not None and other.gpus == frozenset({0, 3})
    lm.release(whole)
    one = lm.request(True, None, 0, "job 1", count=1, within=frozenset({1, 2}))
    assert one.gpus == frozenset({1})
    waiting = lm.request(True, None, 0, "job 2 again", count=1, within=frozenset({0, 3}))
    assert waiting.granted is None  # its job's GPUs are held, though GPU 2 is free
    with pytest.raises(LeaseRefused, match="outside this job's GPUs"):
        lm.request(False, 2, 0, "job 2", within=frozenset({0, 3}))
    with pytest.raises(LeaseRefused, match="outside this job's GPUs"):
        lm.request(False, None, 0, "job 2", count=3, within=frozenset({0, 3}))
