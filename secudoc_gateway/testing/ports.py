"""Loopback ports for tests and benches: one free now, and one that answers."""

from __future__ import annotations

import socket
import subprocess
from typing import Optional

from secudoc_gateway.testing.polling import untilBlocking


def freePort() -> int:
    """A loopback port free now (the caller's server binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepts(port: int) -> bool:
    """Whether something accepts on loopback ``port`` now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def waitForPort(port: int, process: Optional[subprocess.Popen] = None, timeout: float = 60.0) -> None:
    """Until something accepts on ``port``; fails early when ``process`` has exited."""
    untilBlocking(lambda: accepts(port), f"something to listen on {port}", timeout, process=process)
