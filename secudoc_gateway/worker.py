"""
One worker process of ``--workers`` (``python -m secudoc_gateway.worker``,
started by ``workers.WorkerSupervisor``): the whole gateway, built by
``tap.makeService``, on the listening sockets the parent opened and
handed down as file descriptors from ``FIRST_FD`` on.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Optional

from secudoc_gateway.workers import FIRST_FD


def _stopWithParent() -> None:
    """
    Linux: SIGTERM this worker when its parent dies (even by SIGKILL),
    so no orphan keeps serving on the parent's sockets.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return


def runWorker(configPath: str, listenerCount: int, parent: int) -> int:
    """A worker's life: the whole gateway on the inherited listening sockets."""
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from secudoc_gateway.tap import loadOrExit, makeService

    _stopWithParent()
    if os.getppid() != parent:  # it died before the line above
        return 1
    config = loadOrExit(configPath)
    service = makeService(config, reactor, adoptedFDs=list(range(FIRST_FD, FIRST_FD + listenerCount)))
    # The configured log (text or JSON lines) is the only observer, as under twistd.
    globalLogBeginner.beginLoggingTo([service.logs.takeOver()])
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="secudoc_gateway.worker",
                                     description="One worker of --workers (started by the parent).")
    parser.add_argument("--config", required=True)
    parser.add_argument("--listeners", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    return runWorker(args.config, args.listeners, args.parent)


if __name__ == "__main__":
    sys.exit(main())
