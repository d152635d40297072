"""
A message on its way out: a list of segments, each either bytes the
gateway generated, a byte range of the spool, or a byte range of the
spool streamed through a transform (a text body re-encoded with the
banner in front).  Nothing is copied until the relay asks for the next
chunk, and a transformed range is read chunk by chunk like any other.
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol, Sequence, Union

import attrs
from zope.interface import implementer

from secudoc_gateway.interfaces import IMessageSource
from secudoc_gateway.spool import READ_SIZE, Spool


@attrs.frozen
class SpoolRange:
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


class Transform(Protocol):
    """Bytes in, bytes out, with state carried between calls."""

    def feed(self, data: bytes) -> bytes: ...

    def close(self) -> bytes: ...


@attrs.frozen
class Transformed:
    """
    ``range`` of the spool streamed through a fresh transform from
    ``makeTransform`` each time the message is read (a relay may read it
    twice: once per leg, once per retry).  ``estimate`` is the expected
    output length, for ``SIZE=`` (RFC 1870 4: the declared size may be
    an estimate; the server judges the data it receives).
    """

    range: SpoolRange
    makeTransform: Callable[[], Transform]
    estimate: int

    @property
    def size(self) -> int:
        return self.estimate


Segment = Union[bytes, SpoolRange, Transformed]


def _yieldPieces(data: bytes) -> Iterator[bytes]:
    for at in range(0, len(data), READ_SIZE):
        yield data[at : at + READ_SIZE]


@implementer(IMessageSource)
class OutgoingMessage:
    """
    An ``IMessageSource`` over a spool and generated segments.

    ``size`` is exact unless a ``Transformed`` segment is present; then
    it is the sum with that segment's estimate (``exactSize`` says which).
    """

    def __init__(self, spool: Spool, segments: Sequence[Segment]) -> None:
        self._spool = spool
        self.segments = tuple(
            s for s in segments if isinstance(s, Transformed) or (s if isinstance(s, bytes) else s.size)
        )
        self.size = sum(len(s) if isinstance(s, bytes) else s.size for s in self.segments)
        self.exactSize = not any(isinstance(s, Transformed) for s in self.segments)

    def chunks(self) -> Iterator[bytes]:
        for segment in self.segments:
            if isinstance(segment, bytes):
                yield from _yieldPieces(segment)
            elif isinstance(segment, Transformed):
                transform = segment.makeTransform()
                for piece in self._spool.read(segment.range.start, segment.range.end):
                    out = transform.feed(piece)
                    if out:
                        yield from _yieldPieces(out)
                out = transform.close()
                if out:
                    yield from _yieldPieces(out)
            else:
                yield from self._spool.read(segment.start, segment.end)
