"""
The gateway as operators run it: ``twistd -n secudoc-gateway`` in its
own process, on free ports, its standard output and error in files.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Optional

from secudoc_gateway.testing import DEMO_TENANT, writeConfig
from secudoc_gateway.testing.ports import freePort, waitForPort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def waitForGreeting(port: int, process: Optional[subprocess.Popen] = None, timeout: float = 60.0) -> None:
    """
    The SMTP greeting arrives: listeners are bound at start but serve only
    once the database is migrated, so a bound port is not yet a ready one.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"twistd exited with {process.returncode} before greeting on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                if s.recv(3) == b"220":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no greeting on {port}")


def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """A command to its end, with this checkout on the path (for the plugin)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)


class TwistdGateway:
    """
    ``twistd -n`` on a fresh config in ``folder``; ``tenant`` overrides
    the demo tenant's keys, ``**sections`` go to ``writeConfig``.
    """

    def __init__(self, folder: str, tenant: Optional[dict[str, Any]] = None, **sections: Any) -> None:
        self.folder = folder
        self.smtpPort, self.webPort, self.metricsPort = freePort(), freePort(), freePort()
        listen = lambda port: {"listen": [f"tcp:{port}:interface=127.0.0.1"]}
        self.config = writeConfig(
            folder, [dict(DEMO_TENANT, **(tenant or {}))],
            smtp=dict(listen(self.smtpPort), **sections.pop("smtp", {})),
            web=listen(self.webPort), metrics=listen(self.metricsPort), **sections,
        )
        self.stdoutPath = os.path.join(folder, "stdout")
        self.stderrPath = os.path.join(folder, "stderr")
        self.process: Optional[subprocess.Popen] = None

    def start(self, wait: bool = True, fileLimit: Optional[tuple[int, int]] = None) -> "TwistdGateway":
        """``fileLimit``: the (soft, hard) RLIMIT_NOFILE twistd starts under."""
        env = dict(os.environ, PYTHONPATH=ROOT)
        limit = None if fileLimit is None else (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, fileLimit))
        with open(self.stdoutPath, "wb") as out, open(self.stderrPath, "wb") as err:
            self.process = subprocess.Popen(
                [TWISTD, "--nodaemon", "--pidfile=", "secudoc-gateway", "--config", self.config],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=self.folder, preexec_fn=limit,
            )
        if wait:
            for port in (self.smtpPort, self.webPort, self.metricsPort):
                waitForPort(port, self.process)
            waitForGreeting(self.smtpPort, self.process)
        return self

    def wait(self, timeout: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> int:
        """SIGTERM, and the exit status once it is gone."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def output(self) -> tuple[bytes, bytes]:
        with open(self.stdoutPath, "rb") as out, open(self.stderrPath, "rb") as err:
            return out.read(), err.read()
