"""
The one way tests and benches wait: poll a condition until it holds or
a deadline passes.  A wait only waits; the outcome is the condition's,
so a slow machine makes a test slower, never wrong.  ``until`` polls on
a running reactor (trial tests), ``untilBlocking`` in a plain thread
(tests that drive other processes); both stop early with the log when a
process they wait on has exited.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional


class _Deadline:
    """``timeout`` seconds from now, and what the failure says."""

    def __init__(self, what: str, timeout: float, process: Any = None, context: Optional[Callable[[], str]] = None):
        self.what = what
        self.timeout = timeout
        self.process = process
        self.context = context
        self.end = time.monotonic() + timeout

    def check(self) -> None:
        """Fail when the process has exited or the time is over."""
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"the process exited ({self.process.returncode}) waiting for {self.what}"
                                 + self._context())
        if time.monotonic() > self.end:
            raise AssertionError(f"not within {self.timeout:g} s: {self.what}" + self._context())

    def _context(self) -> str:
        return "" if self.context is None else ":\n" + self.context()


async def until(condition: Callable[[], Any], what: str, timeout: float = 10.0, interval: float = 0.02,
                process: Any = None, context: Optional[Callable[[], str]] = None) -> None:
    """Poll ``condition`` (a function, plain or async) on the reactor until it is true."""
    from twisted.internet import reactor, task

    deadline = _Deadline(what, timeout, process, context)
    while True:
        result = condition()
        if hasattr(result, "__await__"):
            result = await result
        if result:
            return
        deadline.check()
        await task.deferLater(reactor, interval, lambda: None)


def untilBlocking(condition: Callable[[], Any], what: str, timeout: float = 10.0, interval: float = 0.05,
                  process: Any = None, context: Optional[Callable[[], str]] = None) -> None:
    """Poll ``condition`` in this thread until it is true (no reactor runs here)."""
    deadline = _Deadline(what, timeout, process, context)
    while not condition():
        deadline.check()
        time.sleep(interval)
