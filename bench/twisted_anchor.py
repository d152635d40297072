"""
The anchor "Twisted stock smtp.ESMTP, counting bytes only": what stock
Twisted does receiving the same message.  `python bench/twisted_anchor.py PORT`.
"""

import sys

from twisted.internet import defer, reactor
from twisted.mail import smtp
from zope.interface import implementer


@implementer(smtp.IMessage)
class Counter:
    size = 0

    def lineReceived(self, line: bytes) -> None:
        Counter.size += len(line) + 2

    def eomReceived(self) -> defer.Deferred:
        return defer.succeed(b"counted")

    def connectionLost(self) -> None:
        pass


@implementer(smtp.IMessageDelivery)
class Delivery:
    def receivedHeader(self, helo, origin, recipients):
        return None

    def validateFrom(self, helo, origin):
        return origin

    def validateTo(self, user):
        return Counter


class Factory(smtp.SMTPFactory):
    protocol = smtp.ESMTP

    def buildProtocol(self, addr):
        p = super().buildProtocol(addr)
        p.delivery = Delivery()
        return p


reactor.listenTCP(int(sys.argv[1]), Factory(), interface="127.0.0.1")
reactor.run()
