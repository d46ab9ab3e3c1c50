"""Free ports for a test's or a benchmark's own servers (a broker, a cluster's nodes, the
engines' health endpoints).

A port that ``bind(("127.0.0.1", 0))`` hands out lies in the kernel's ephemeral range: between
the moment it is picked and the moment the server binds it (a broker's JVM takes seconds to
start; a restarted node binds it again minutes later), any client connection on the machine
may take it as its own local port, and the server then fails with "Address already in use".
The ports here lie below that range, where the kernel never hands one out by itself; they are
checked free when picked, and picked at random, so that two test processes rarely pick the same.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: The lowest port handed out here (below it lie well-known services' ports).
LOWEST = 10000


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default 32768 when unreadable)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive ports on 127.0.0.1 that are free now and lie below the
    ephemeral range."""
    high = ephemeral_low() - count
    if high <= LOWEST:
        raise RuntimeError(f"no room below the ephemeral range ({ephemeral_low()}) for {count} ports")
    for _ in range(200):
        base = random.randrange(LOWEST, high)
        if all(_free(p) for p in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found below {ephemeral_low()}")


def free_port() -> int:
    """One port on 127.0.0.1, free now and below the ephemeral range."""
    return free_ports(1)
