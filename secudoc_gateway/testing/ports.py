"""Loopback ports for tests and benches: one free now, and one that answers."""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Optional


def freePort() -> int:
    """A loopback port free now (the caller's server binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def waitForPort(port: int, process: Optional[subprocess.Popen] = None, timeout: float = 60.0) -> None:
    """Until something accepts on ``port``; fails early when ``process`` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")
