"""
Shared by the benches: the gateway as its own process (twistd, exactly
as operators run it), sinks, a raw SMTP client, peak RSS, and the
anchors of ../shared/anchors.md run on the same machine.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterable, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from secudoc_gateway.testing import DEMO_TENANT, writeConfig  # noqa: E402
from secudoc_gateway.testing.ports import freePort, waitForPort  # noqa: E402

PYTHON = sys.executable
TWISTD = os.path.join(os.path.dirname(PYTHON), "twistd")


def peakRSS(pid: int) -> int:
    """VmHWM: the process's peak resident set, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def resetPeakRSS(pid: int) -> None:
    """Linux resets VmHWM to the current RSS when 5 is written to clear_refs."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


class Process:
    def __init__(self, args: list[str], env: Optional[dict] = None, cwd: Optional[str] = None) -> None:
        self.log = tempfile.TemporaryFile()
        self.popen = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=cwd)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")


class Gateway(Process):
    """
    The gateway under twistd, relaying to ``relay``, with ``workers``
    processes and ``database`` (a ``[database]`` table; default SQLite).
    """

    def __init__(self, relay: str, root: str = ROOT, storage: Optional[dict] = None, env: Optional[dict] = None,
                 smtp: Optional[dict] = None, workers: int = 1, database: Optional[dict] = None,
                 scan: Optional[dict] = None, **tenant: object) -> None:
        self.folder = tempfile.mkdtemp(prefix="secudoc-bench-")
        self.smtpPort = freePort()
        self.webPort = freePort()
        config = writeConfig(
            self.folder,
            [dict(DEMO_TENANT, relay=relay, relay_require_tls=False, **tenant)],
            smtp={"listen": [f"tcp:{self.smtpPort}:interface=127.0.0.1"], "command_timeout": 600, **(smtp or {})},
            web={"listen": [f"tcp:{self.webPort}:interface=127.0.0.1"]},
            storage=storage,
            database=database or {"url": "sqlite:gateway.sqlite3"},
            scan=scan,
        )
        env = dict(os.environ, PYTHONPATH=root, **(env or {}))
        # The log on standard output, where the workers write theirs too.  In
        # ``root``: a worker starts with ``python -m``, which imports from the
        # current folder before PYTHONPATH, so elsewhere an earlier revision's
        # workers would run this checkout's code.
        super().__init__([TWISTD, "--nodaemon", "--pidfile=", "secudoc-gateway", "--config", config,
                          "--workers", str(workers)], env=env, cwd=root)
        try:
            waitForPort(self.smtpPort)
            # Every worker adopts the listener before the load starts.
            deadline = time.monotonic() + 60
            while self._listening() < workers:
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers did not start:\n" + self.output()[-3000:])
                time.sleep(0.05)
        except Exception:
            self.stop()
            raise

    def _listening(self) -> int:
        return self.output().count(f"listening on tcp:{self.smtpPort}:")

    def pids(self) -> list[int]:
        """The parent and its workers."""
        return [self.pid] + [int(p) for p in re.findall(r"worker \d+ started \(pid (\d+)\)", self.output())]

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class SMTPSink(Process):
    """Postfix's smtp-sink (counts only), the anchors' sink."""

    def __init__(self) -> None:
        self.port = freePort()
        args = ["smtp-sink", "-c", f"127.0.0.1:{self.port}", "1024"]
        if os.geteuid() == 0:
            args[1:1] = ["-u", "postfix"]
        super().__init__(args)
        waitForPort(self.port)

    def count(self) -> int:
        found = re.findall(r"mesg=(\d+)", self.output())
        return int(found[-1]) if found else 0

    def waitFor(self, n: int, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"sink counted {self.count()} of {n}")
            time.sleep(0.02)
        return time.monotonic()


def have(program: str) -> bool:
    return shutil.which(program) is not None


def smtpSource(port: int, sessions: int, messages: int, size: int,
               sender: str = "alice@example.test", recipient: str = "bob@external.test",
               file: str = "") -> None:
    """Postfix's load generator; ``file`` sends a prepared message instead of ``size`` bytes."""
    content = ["-F", file] if file else ["-l", str(size)]
    subprocess.run(
        ["smtp-source", "-4", "-s", str(sessions), "-m", str(messages), *content,
         "-f", sender, "-t", recipient, f"127.0.0.1:{port}"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )


def sendOne(port: int, chunks: Iterable[bytes], sender: str = "alice@example.test",
            recipient: str = "bob@external.test") -> tuple[float, bytes]:
    """
    One message over a raw socket (the chunks must already be
    dot-stuffed); returns seconds from DATA's 354 to the final reply.
    """
    with socket.create_connection(("127.0.0.1", port)) as s:
        f = s.makefile("rb")

        def reply() -> bytes:
            while True:
                line = f.readline()
                if line[3:4] != b"-":
                    return line

        reply()
        s.sendall(b"EHLO bench.test\r\n")
        reply()
        s.sendall(f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode())
        reply(), reply()
        if not reply().startswith(b"354"):
            raise RuntimeError("DATA refused")
        started = time.monotonic()
        for chunk in chunks:
            s.sendall(chunk)
        s.sendall(b".\r\n")
        final = reply()
        elapsed = time.monotonic() - started
        s.sendall(b"QUIT\r\n")
        return elapsed, final


class PostfixRelay:
    """
    A private Postfix instance (queue on disk) relaying everything to
    ``sinkPort``: the anchor "Postfix 3.7, plain relay".  Needs root and
    Debian's postfix package; ``reason`` says why when it cannot run.
    """

    def __init__(self, sinkPort: int, milter: str = "") -> None:
        """``milter``: a milter address (``inet:127.0.0.1:7357``) every message goes through."""
        self.reason = ""
        self.port = freePort()
        self.folder = tempfile.mkdtemp(prefix="pfbench-")
        if os.geteuid() != 0 or not have("postfix"):
            self.reason = "needs root and Debian's postfix package"
            return
        etc, data, queue = (os.path.join(self.folder, d) for d in ("etc", "data", "queue"))
        for d in (etc, data, queue):
            os.makedirs(d)
        os.chmod(self.folder, 0o755)
        shutil.chown(data, "postfix")
        with open("/etc/postfix/master.cf") as f:
            master = re.sub(r"^smtp\s+inet\s.*$", f"{self.port} inet n - n - - smtpd", f.read(), count=1, flags=re.M)
        with open(os.path.join(etc, "master.cf"), "w") as f:
            f.write(master)
        with open(os.path.join(etc, "main.cf"), "w") as f:
            f.write(
                "compatibility_level = 3.6\n"
                f"queue_directory = {queue}\ndata_directory = {data}\n"
                "mail_owner = postfix\nmyhostname = anchor.localhost\n"
                "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmydestination =\n"
                f"relayhost = [127.0.0.1]:{sinkPort}\nmynetworks = 127.0.0.0/8\n"
                "smtpd_relay_restrictions = permit_mynetworks, reject\n"
                f"maillog_file_prefixes = /var, /dev/stdout, {self.folder}\n"
                f"maillog_file = {self.folder}/maillog\n"
                "smtp_tls_security_level = none\nsmtpd_tls_security_level = none\n"
                + (f"smtpd_milters = {milter}\nmilter_default_action = tempfail\nmilter_protocol = 6\n"
                   if milter else "")
            )
        # postfix -c only accepts folders the default main.cf lists.
        default = "/etc/postfix/main.cf"
        text = open(default).read() if os.path.exists(default) else "compatibility_level = 3.6\n"
        if etc not in text:
            lines = [l for l in text.splitlines() if not l.startswith("alternate_config_directories")]
            lines.append(f"alternate_config_directories = {etc}")
            with open(default, "w") as f:
                f.write("\n".join(lines) + "\n")
        self.etc = etc
        subprocess.run(["postfix", "-c", etc, "set-permissions"], capture_output=True)
        result = subprocess.run(["postfix", "-c", etc, "start"], capture_output=True, text=True)
        try:
            waitForPort(self.port, timeout=15)
        except RuntimeError:
            self.reason = f"postfix did not start: {result.stderr.strip()}"

    def stop(self) -> None:
        if not self.reason:
            subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def row(label: str, value: str, anchor: str = "") -> None:
    print(f"  {label:<44} {value:>14}   {anchor}")


ANCHORS = next((p for p in (os.environ.get("SECUDOC_ANCHORS", ""), os.path.join(ROOT, "..", "shared", "anchors"),
                            "/work/shared/anchors") if p and os.path.isdir(p)), "")
"""The anchors' set-up scripts (beside the checkout, or where SECUDOC_ANCHORS says)."""


class MIMEDefang:
    """
    MIMEDefang with the anchors' filter (``action_replace_with_url`` on
    every attachment), started and stopped by the anchors' own scripts;
    its milter listens on 127.0.0.1:7357.
    """

    address = "inet:127.0.0.1:7357"

    def __init__(self) -> None:
        self.reason = ""
        if not ANCHORS or not have("mimedefang"):
            self.reason = "needs the anchors' scripts and Debian's mimedefang package"
            return
        result = subprocess.run(["bash", os.path.join(ANCHORS, "md_start.sh")], capture_output=True, text=True)
        if result.returncode != 0:
            self.reason = f"md_start.sh failed: {result.stderr.strip()}"

    def stop(self) -> None:
        if not self.reason:
            subprocess.run(["bash", os.path.join(ANCHORS, "md_stop.sh")], capture_output=True)


def profile(pids: list[int], path: str, seconds: float) -> list[subprocess.Popen]:
    """
    py-spy (``pip install py-spy``; root, or ptrace allowed) sampling each
    of ``pids`` for ``seconds`` into ``path.<pid>`` as collapsed stacks,
    GIL-idle samples dropped; ``profileTop`` reads them.
    """
    spy = os.path.join(os.path.dirname(PYTHON), "py-spy")
    return [subprocess.Popen([spy, "record", "--nonblocking", "--format", "raw", "--duration", str(int(seconds)),
                              "--rate", "200", "--pid", str(pid), "--output", f"{path}.{pid}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]


_IDLE = {"Condition.wait", "EPollReactor.doPoll", "Thread._wait_for_tstate_lock"}
"""Leaves of a thread waiting for work, not doing it: left out of the profile."""


def profileTop(path: str, n: int = 15) -> str:
    """
    The top of the profiles ``profile`` wrote, threads waiting for work
    left out: the ``n`` functions with the most samples of their own, and
    the ``n`` with the most in and under them (the frames every stack
    shares, the thread's and reactor's own, are not shown).
    """
    import collections
    import glob

    own: collections.Counter = collections.Counter()
    under: collections.Counter = collections.Counter()
    total = 0
    for name in glob.glob(glob.escape(path) + ".*"):
        with open(name) as f:
            for line in f:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                frames = [re.sub(r" \((.*/)?([^/]+):\d+\)$", r" (\2)", fr) for fr in stack.split(";")[1:]]
                if not frames or frames[-1].split(" (")[0] in _IDLE:
                    continue
                total += int(count)
                own[frames[-1]] += int(count)
                for frame in set(frames):
                    under[frame] += int(count)
    if not total:
        return "  (no samples)\n"
    out = [f"  {total} samples; own time:"]
    out += [f"    {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(n)]
    out.append("  in and under:")
    shared = {"_run_code", "runWorker", "main", "<module>", "ReactorBase.run", "ReactorBase.mainLoop",
              "_run_module_as_main", "Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run",
              "EPollReactor.doPoll", "callWithLogger", "callWithContext", "ThreadedContextTracker.callWithContext",
              "ContextTracker.callWithContext", "_PollLikeMixin._doReadOrWrite"}
    out += [f"    {100 * c / total:5.1f}%  {f}" for f, c in under.most_common(n + len(shared))
            if f.split(" (")[0] not in shared][:n]
    return "\n".join(out) + "\n"
