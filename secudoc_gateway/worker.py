"""
One worker process of ``--workers`` (``python -m secudoc_gateway.worker``,
started by ``workers.WorkerSupervisor``): the whole gateway, built by
``tap.makeService``, on the listening sockets the parent opened and
handed down as file descriptors from ``FIRST_FD`` on.
"""

from __future__ import annotations

import signal

if __name__ == "__main__":
    # First of all: a terminal's Ctrl-C reaches the worker too, but its
    # parent decides when it stops (it sends SIGTERM), also while it starts.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Optional  # noqa: E402

from secudoc_gateway.workers import FIRST_FD, READY, stopOnce  # noqa: E402


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


def runWorker(configPath: str, listenerCount: int, parent: int, number: int = 0,
              readyFD: Optional[int] = None) -> int:
    """
    A worker's life: the whole gateway on the inherited listening
    sockets, its log lines tagged ``worker=number``; once it serves it
    says so on ``readyFD``, for the parent's one ready line.
    """
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from secudoc_gateway.tap import loadOrExit, makeService

    _stopWithParent()
    if os.getppid() != parent:  # it died before the line above
        return 1
    config = loadOrExit(configPath)
    service = makeService(config, reactor, adoptedFDs=list(range(FIRST_FD, FIRST_FD + listenerCount)),
                          worker=number)

    def tellParent() -> None:
        if readyFD is not None:
            try:
                os.write(readyFD, READY)
                os.close(readyFD)
            except OSError:
                pass  # the parent is going: it stops this worker too

    service.announce = tellParent
    # The configured log (text or JSON lines) is the only observer, as under twistd.
    globalLogBeginner.beginLoggingTo([service.logs.takeOver()])
    # The parent owns Ctrl-C (it sends SIGTERM); one stop for any number of SIGTERMs.
    reactor.callWhenRunning(stopOnce, reactor, (signal.SIGTERM,), (signal.SIGINT,))
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
    parser.add_argument("--number", type=int, default=0, help="this worker's number, in each of its log lines")
    parser.add_argument("--ready-fd", type=int, default=None, help="where to say that it serves")
    args = parser.parse_args(argv)
    return runWorker(args.config, args.listeners, args.parent, args.number, args.ready_fd)


if __name__ == "__main__":
    sys.exit(main())
