"""
Where the ``[log]`` section sends the gateway's log: a file, or standard
output, as text or as one JSON object a line (for log shippers).

twistd already writes text to standard output (``-n``) or twistd.log;
the default ``path = "-"``, ``format = "text"`` leaves that alone.  Any
other setting adds an observer for as long as the service runs.  Every
line has been through the web site's formatter first, so download
tokens are redacted there as everywhere.
"""

from __future__ import annotations

import sys
from typing import IO, Any, Optional

from twisted.application.service import Service
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
    jsonFileLogObserver,
    textFileLogObserver,
)


def observerFor(format: str, file: IO[str]) -> ILogObserver:
    observer = jsonFileLogObserver(file, recordSeparator="") if format == "json" else textFileLogObserver(file)
    return FilteringLogObserver(observer, [LogLevelFilterPredicate(LogLevel.info)])


class LogService(Service):
    """Adds the configured observer while running."""

    def __init__(self, format: str, path: str, publisher: Any = globalLogPublisher) -> None:
        self.format = format
        self.path = path
        self.publisher = publisher
        self._file: Optional[IO[str]] = None
        self._observer: Optional[ILogObserver] = None

    @property
    def needed(self) -> bool:
        return not (self.path == "-" and self.format == "text")

    def startService(self) -> None:
        super().startService()
        if not self.needed:
            return
        if self.path == "-":
            file = sys.stdout
        else:
            file = self._file = open(self.path, "a", encoding="utf-8", buffering=1)
        self._observer = observerFor(self.format, file)
        self.publisher.addObserver(self._observer)

    def stopService(self) -> None:
        super().stopService()
        if self._observer is not None:
            self.publisher.removeObserver(self._observer)
            self._observer = None
        if self._file is not None:
            self._file.close()
            self._file = None
