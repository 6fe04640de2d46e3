"""The gpuwire server daemon: accepts clients, checks their HELLO, and hands each
connection to its own data-plane worker process (gpuwire-worker).

Standard library only. One thread per connection: it reads the handshake,
authenticates the client (when tokens are required), obtains its GPU lease
(queueing if needed), spawns the worker with the socket, then relays the
worker's log lines until it exits. A status probe gets a JSON answer instead of
a worker. Nothing a client sends can raise out of a connection thread.
docs/server.md describes the control plane.

Its modules, each calling only those below it:
  startup.py    `gpuwire server`: settings checked and resolved, orphans ended, bind, admin endpoint, signals
  daemon.py     the Server object wiring the parts together from one ServerConfig (gpuwire/config.py)
  listener.py   accept loop, keepalive, TLS sniffing and handshake, HELLO, lane hand-over
  admission.py  bounds on unauthenticated connections, tokens, session slots, leases and their queue,
                the status probe
  snapshot.py   the JSON state for the status probe, /status.json, /metrics and `gpuwire top`
  sessions.py   worker spawn, its end and counters, the idle reaper, stopping workers, the orphan sweep
  relay.py      a worker's log lines into the server's log (its "cache stats:" line read in one place)
  state.py      what they share: Session, the Registry of sessions, workers and counters, ContentCache

Only `gpuwire server` (and the demo) import this package; the client commands
use gpuwire.address for addresses.
"""

from gpuwire.server.daemon import Server
from gpuwire.server.startup import run_server

__all__ = ["Server", "run_server"]
