"""A free loopback port for the sandbox's servers, the tests and the benchmarks.

Not one the kernel hands out itself (bind to port 0): those come from the ephemeral range,
where any process's next outgoing connection may take the port between our pick and a
server's bind, or while a killed server is being restarted on it. So: a random port below
the ephemeral range, checked free, never handed out twice by this process. Under
pytest-xdist each worker (and every process it starts) draws from its own slice of that
range, so two workers never race for one port.
"""

from __future__ import annotations

import os
import random
import socket

_LOW, _HIGH = 20_000, 32_000  # below Linux's default ip_local_port_range (32768-60999)
_given: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _range() -> tuple[int, int]:
    low, high = _LOW, min(_HIGH, _ephemeral_low())
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 1:
        size = (high - low) // int(count)
        low += size * (int(worker[2:]) % int(count))
        high = low + size
    return low, high


def free_port() -> int:
    low, high = _range()
    for _ in range(200):
        port = random.randrange(low, high)
        if port not in _given and _bindable(port):
            _given.add(port)
            return port
    with socket.socket() as s:  # a crowded range: fall back to the kernel's pick
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
