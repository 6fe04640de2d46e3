"""Client tokens and the challenge-response that checks them (docs/server.md).

A token is `ID.SECRET`: ID is 16 hex digits (public, names the token), SECRET
64 hex digits (256 random bits). The server stores, per token, only
key = SHA-256(whole token text), in a JSON file readable by its owner alone.
After HELLO the server sends a 32-byte random nonce (OP_CHALLENGE); the client
answers (OP_PROOF) with ID and HMAC-SHA256(key, nonce || "gpuwire-auth-v1").
The token itself never crosses the wire, and a recorded proof is worthless for
the next connection (fresh nonce).

The stored key is enough to forge proofs, so it is as sensitive as a password
hash without stretching: salting and slow hashing protect low-entropy
passwords from guessing, but a 256-bit random token cannot be guessed from
SHA-256(token), so the one thing to guard is the file (mode 0600).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gpuwire import paths, protocol

LABEL = b"gpuwire-auth-v1"
TOKEN_RE = re.compile(r"^([0-9a-f]{16})\.([0-9a-f]{64})$")
TOKENS_FILE = "tokens.json"


class AuthError(Exception):
    pass


def default_state_dir(env: dict[str, str] | None = None) -> Path:
    """$GPUWIRE_STATE_DIR, else /var/lib/gpuwire for root, else $XDG_STATE_HOME/gpuwire
    (~/.local/state/gpuwire)."""
    env = os.environ if env is None else env
    if env.get("GPUWIRE_STATE_DIR"):
        return Path(env["GPUWIRE_STATE_DIR"]).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/gpuwire")
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "gpuwire"


def key_of(token: str) -> bytes:
    return hashlib.sha256(token.strip().encode("ascii", "replace")).digest()


def mac(key: bytes, nonce: bytes) -> bytes:
    return hmac.new(key, nonce + LABEL, hashlib.sha256).digest()


def make_proof(token: str, nonce: bytes) -> bytes:
    """The OP_PROOF payload a client sends for `token`: 16-byte ASCII id + 32-byte MAC."""
    token = token.strip()
    m = TOKEN_RE.match(token)
    if not m:
        raise AuthError("malformed gpuwire token: expected 16 hex digits, '.', 64 hex digits "
                        "(as printed by `gpuwire token create`)")
    return m.group(1).encode("ascii") + mac(key_of(token), nonce)


def is_loopback(host: str) -> bool:
    """Whether listening on `host` stays on this machine ('' and 0.0.0.0 do not)."""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:  # a name: loopback only if every address it resolves to is
            addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None)}
        except OSError:
            return False
        return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


@dataclass
class TokenEntry:
    id: str
    name: str
    created: float
    key: bytes
    # Slurm (gpuwire/slurm, docs/scale-out.md): "admin" may only mint and revoke job
    # tokens; "job" is bound to one job's GPUs (server indexes) until `expires` (0: never)
    role: str = ""
    job: str = ""
    gpus: tuple[int, ...] = ()
    expires: float = 0.0

    def expired(self, now: float | None = None) -> bool:
        return bool(self.expires) and (time.time() if now is None else now) >= self.expires


class TokenStore:
    """The tokens file. Readers reload it when it changes on disk, so
    `gpuwire token revoke` takes effect on a running server at the next connection."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: dict[str, TokenEntry] = {}

    # --- reading ------------------------------------------------------------

    def _load_locked(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._entries, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text())
            entries = {}
            for t in data.get("tokens", []):
                entries[str(t["id"])] = TokenEntry(str(t["id"]), str(t.get("name", "")),
                                                   float(t.get("created", 0)), bytes.fromhex(t["key"]),
                                                   str(t.get("role", "")), str(t.get("job", "")),
                                                   tuple(int(g) for g in t.get("gpus", ())),
                                                   float(t.get("expires", 0)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise AuthError(f"cannot read tokens file {self.path}: {e}") from e
        self._entries, self._stamp = entries, stamp

    def entries(self) -> list[TokenEntry]:
        with self._lock:
            self._load_locked()
            return sorted(self._entries.values(), key=lambda e: e.created)

    def entry(self, token_id: str) -> TokenEntry | None:
        """The live entry of a token id (None: unknown, revoked or expired)."""
        with self._lock:
            self._load_locked()
            e = self._entries.get(token_id)
        return None if e is None or e.expired() else e

    def insecure_mode(self) -> str | None:
        """A warning if the file (or its folder) can be read by others, else None."""
        for p in (self.path, self.path.parent):
            try:
                mode = p.stat().st_mode
            except OSError:
                continue
            if mode & 0o077 and p == self.path:
                return f"{p} has mode {mode & 0o777:o}: other users can read the token keys (chmod 600 it)"
        return None

    def verify(self, nonce: bytes, proof: bytes) -> tuple[bool, str, str]:
        """(ok, token id, reason) for an OP_PROOF payload answering `nonce`."""
        if len(proof) != protocol.PROOF_SIZE:
            return False, "?", f"PROOF is {len(proof)} bytes, expected {protocol.PROOF_SIZE}"
        tid = proof[:protocol.TOKEN_ID_SIZE].decode("ascii", "replace")
        with self._lock:
            self._load_locked()
            entry = self._entries.get(tid)
        if entry is not None and entry.expired():
            entry = None
        if entry is None:
            # still compute a MAC so an unknown id costs the same time as a wrong secret
            hmac.compare_digest(mac(b"\0" * 32, nonce), proof[protocol.TOKEN_ID_SIZE:])
            return False, tid, "unknown or revoked token id"
        if not hmac.compare_digest(mac(entry.key, nonce), proof[protocol.TOKEN_ID_SIZE:]):
            return False, tid, "wrong secret for this token id"
        return True, tid, entry.name

    # --- writing (the `gpuwire token` command) --------------------------------

    def _write_locked(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"version": 1, "tokens": [
            {"id": e.id, "name": e.name, "created": e.created, "key": e.key.hex(),
             **({"role": e.role} if e.role else {}), **({"job": e.job} if e.job else {}),
             **({"gpus": list(e.gpus)} if e.gpus else {}), **({"expires": e.expires} if e.expires else {})}
            for e in sorted(self._entries.values(), key=lambda e: e.created)]}
        paths.write_private(self.path, json.dumps(data, indent=1) + "\n")
        self._stamp = None

    def create(self, name: str = "", role: str = "", job: str = "", gpus: tuple[int, ...] = (),
               expires: float = 0.0, check=None) -> tuple[str, TokenEntry]:
        """A new token: returns its text (shown once, never stored) and its entry.
        check(entries), if given, runs under the lock first and may raise (or return
        the GPUs to bind: how a job token's GPUs are picked atomically)."""
        with self._lock:
            self._load_locked()
            if check is not None:
                gpus = check([e for e in self._entries.values() if not e.expired()]) or gpus
            while True:
                tid = secrets.token_hex(8)
                if tid not in self._entries:
                    break
            token = f"{tid}.{secrets.token_hex(32)}"
            entry = TokenEntry(tid, name, time.time(), key_of(token), role, job, tuple(gpus), expires)
            self._entries[tid] = entry
            self._write_locked()
        return token, entry

    def revoke(self, which: str, job: str | None = None) -> list[TokenEntry]:
        """Remove the tokens whose id or name is `which` (a full token text works too),
        or with job=J the tokens bound to Slurm job J, and expired job tokens."""
        if job is not None and not job:
            raise ValueError("revoke(job=...) needs a job id")
        m = TOKEN_RE.match(which.strip())
        if m:
            which = m.group(1)
        with self._lock:
            self._load_locked()
            gone = [e for e in self._entries.values()
                    if (e.job == job if job is not None else which in (e.id, e.name)) or e.expired()]
            for e in gone:
                del self._entries[e.id]
            if gone:
                self._write_locked()
        return gone


def client_token(env: dict[str, str] | None = None, token_file: str | None = None) -> str | None:
    """The token a client uses: --token-file, else $GPUWIRE_TOKEN, else the file
    named by $GPUWIRE_TOKEN_FILE; None if none is set."""
    env = os.environ if env is None else env
    path = token_file or (None if env.get("GPUWIRE_TOKEN") else env.get("GPUWIRE_TOKEN_FILE"))
    if path:
        try:
            return Path(path).expanduser().read_text().strip()
        except OSError as e:
            raise AuthError(f"cannot read token file {path}: {e.strerror or e}") from e
    return env.get("GPUWIRE_TOKEN", "").strip() or None
