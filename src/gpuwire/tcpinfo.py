"""What the server can see of a session's traffic without the worker's help.

The server hands the client's socket to the worker but keeps a duplicate of
the descriptor; both refer to the same kernel socket, so Linux's TCP_INFO on
the duplicate reports the whole session: bytes each way, time since the last
data each way (the idle timeout uses it) and the smoothed RTT. Calls, round
trips and cache hits are known only to the worker and the client.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

# struct tcp_info (linux/tcp.h): offsets of the fields read here.
_LAST_DATA_SENT = 44    # u32 ms
_LAST_DATA_RECV = 52    # u32 ms
_RTT = 68               # u32 us
_BYTES_ACKED = 120      # u64: sent by us and acknowledged by the peer
_BYTES_RECEIVED = 128   # u64
_NEEDED = 136           # Linux >= 4.1 fills at least this much
_SIZE = 256             # ask for more; the kernel fills what it has


@dataclass
class TcpInfo:
    bytes_sent: int        # server -> client, acknowledged
    bytes_received: int    # client -> server
    idle_send_s: float     # since the last data segment we sent
    idle_recv_s: float     # since the last data segment we received
    rtt_s: float

    @property
    def idle_s(self) -> float:
        return min(self.idle_send_s, self.idle_recv_s)


def read(sock: socket.socket) -> TcpInfo | None:
    """TCP_INFO of a connected socket, or None where the platform does not give it."""
    if not hasattr(socket, "TCP_INFO"):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _SIZE)
    except OSError:
        return None
    if len(raw) < _NEEDED:
        return None
    (sent_ms,) = struct.unpack_from("<I", raw, _LAST_DATA_SENT)
    (recv_ms,) = struct.unpack_from("<I", raw, _LAST_DATA_RECV)
    (rtt_us,) = struct.unpack_from("<I", raw, _RTT)
    acked, received = struct.unpack_from("<QQ", raw, _BYTES_ACKED)
    return TcpInfo(acked, received, sent_ms / 1000.0, recv_ms / 1000.0, rtt_us / 1e6)
