"""
A throwaway clamd for tests and benches: Debian's ``clamav-daemon``, a
unix socket and a configuration in a temporary folder, and a signature
database given by the caller (the tests' own, ``tests/clamav``: there is
no freshclam without the internet).  With a small database it is
answering within a second; it is started once per test module.

    python -m secudoc_gateway.testing.clamd DATABASE_FOLDER   # runs until interrupted
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Optional

CLAMD = "/usr/sbin/clamd"
STREAM_MAX_LENGTH = 4 * 1024 * 1024
"""The tests' clamd stream limit: small, so a file past it is quick to send."""


def clamdBinary() -> str:
    found = shutil.which("clamd") or (CLAMD if os.path.exists(CLAMD) else None)
    if found is None:
        raise RuntimeError("clamd is not installed (Debian: apt-get install clamav-daemon)")
    return found


class Clamd:
    """One clamd on ``socket`` in ``folder`` (made when missing), reading ``database``."""

    def __init__(self, database: str, folder: Optional[str] = None,
                 streamMaxLength: int = STREAM_MAX_LENGTH, cache: bool = True) -> None:
        self.database = os.path.abspath(database)
        self.folder = os.path.abspath(folder or tempfile.mkdtemp(prefix="secudoc-clamd-"))
        self.socket = os.path.join(self.folder, "clamd.sock")
        self.streamMaxLength = streamMaxLength
        self.cache = cache  # clamd's cache of clean files' hashes (a bench turns it off)
        self.process: Optional[subprocess.Popen] = None

    @property
    def address(self) -> str:
        """The ``[scan] clamd`` value."""
        return "unix:" + self.socket

    def _config(self) -> str:
        path = os.path.join(self.folder, "clamd.conf")
        with open(path, "w") as f:
            f.write(
                f"LocalSocket {self.socket}\n"
                f"DatabaseDirectory {self.database}\n"
                f"TemporaryDirectory {self.folder}\n"
                f"LogFile {os.path.join(self.folder, 'clamd.log')}\n"
                "Foreground yes\n"
                f"StreamMaxLength {self.streamMaxLength}\n"
                "MaxThreads 4\n"
                "SelfCheck 0\n"
                + ("" if self.cache else "DisableCache yes\n")
            )
        return path

    def start(self, timeout: float = 30) -> "Clamd":
        os.makedirs(self.folder, exist_ok=True)
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.process = subprocess.Popen([clamdBinary(), "-c", self._config()],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"clamd did not start: {self.log()[-2000:]}")
            time.sleep(0.05)
        return self

    def answers(self) -> bool:
        """clamd answers PING with PONG."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(self.socket)
                s.sendall(b"zPING\0")
                return s.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill clamd at once (as a crash would) and wait for it."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        try:
            with open(os.path.join(self.folder, "clamd.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    clamd = Clamd(argv[0]).start()
    print(f"clamd = \"{clamd.address}\"", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how this helper is meant to end: clamd is destroyed below
    finally:
        clamd.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
