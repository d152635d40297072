"""A counting ESMTP sink in its own process: `python bench/sink.py PORT`."""

import sys

from twisted.internet import reactor

import common  # noqa: F401  (puts the project on sys.path)
from secudoc_gateway.testing.smtp import SinkServerFactory

reactor.listenTCP(int(sys.argv[1]), SinkServerFactory(store=False), interface="127.0.0.1")
reactor.run()
