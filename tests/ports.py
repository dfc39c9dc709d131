"""Ports for the servers a test starts."""

import random
import socket
from pathlib import Path

# Linux's default, where /proc does not say.
EPHEMERAL_LOW = 32768
LOWEST = 10000
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return EPHEMERAL_LOW


def free_port() -> int:
    """A port nothing listens on, below the kernel's ephemeral range and not handed out before
    by this process. A port the kernel picks for `bind(0)` comes from that range, where the
    Temporal dev server's internal services and outgoing connections take theirs too: one of
    them can take it before the test's server binds it."""
    high = max(_ephemeral_low(), LOWEST + 1000)
    for _ in range(200):
        port = random.randrange(LOWEST, high)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port between {LOWEST} and {high}")
