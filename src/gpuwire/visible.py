"""Which GPUs a worker's driver shows: the server's own CUDA_VISIBLE_DEVICES,
narrowed by the client's lease, then by the client's CUDA_VISIBLE_DEVICES /
CUDA_DEVICE_ORDER (sent in the HELLO's EXT_ENV record), so that a program sees
what the real driver would show it with those variables on a machine with the
leased GPUs. NVML ignores both variables, as the real NVML does.

The client's list is read as the driver reads it: entries are indices into the
GPUs the client may see (or UUIDs / MIG ids), and the list ends at the first
entry that names no such GPU.
"""

from __future__ import annotations

from gpuwire.wire_generated import ENV_FORWARDED


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _index(token: str) -> int | None:
    try:
        return int(token, 10)
    except ValueError:
        return None


def worker_env(server_env: dict[str, str], lease_gpus: frozenset[int] | None, gpu_count: int,
               client: dict[str, str]) -> dict[str, str] | None:
    """The worker's environment, or None when it is the server's own."""
    env = dict(server_env)
    server_list = _split(server_env["CUDA_VISIBLE_DEVICES"]) if "CUDA_VISIBLE_DEVICES" in server_env else None
    base: list[str] | None = server_list  # what the client may see, in server terms; None: everything
    if lease_gpus is not None and 0 < len(lease_gpus) < gpu_count:
        # a lease on some GPUs (one, or "any N"): those alone, in server order, as devices 0..
        base = [server_list[i] if server_list and i < len(server_list) else str(i) for i in sorted(lease_gpus)]
    restricted = base is not None
    wanted = client.get("CUDA_VISIBLE_DEVICES")
    if wanted is not None:
        chosen: list[str] = []
        for token in _split(wanted):
            i = _index(token)
            if base is None:
                if i is not None and i < 0:
                    break
                chosen.append(token)
            elif i is not None:
                if not 0 <= i < len(base):
                    break
                chosen.append(base[i])
            elif token in base:
                chosen.append(token)
            else:
                break  # a UUID the lease does not cover: hidden, and the list ends there
        base = chosen or ["-1"]  # "-1": no device at all
    order = client.get("CUDA_DEVICE_ORDER")
    # The client's order means something only where its indices reach the
    # driver unchanged; translated ones are server indices, in the server's order.
    if order is not None and not restricted:
        env["CUDA_DEVICE_ORDER"] = order
    if base is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(base)
    for name in ENV_FORWARDED:  # the rest: how the driver treats the program's code, the program's own choice
        if name not in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER") and name in client:
            env[name] = client[name]
    return env if env != server_env else None
