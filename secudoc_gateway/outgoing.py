"""
A message on its way out: a list of segments, each either bytes the
gateway generated or a byte range of the spool.  Nothing is copied
until the relay asks for the next chunk.
"""

from __future__ import annotations

from typing import Iterator, Sequence, Union

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


Segment = Union[bytes, SpoolRange]


@implementer(IMessageSource)
class OutgoingMessage:
    """An ``IMessageSource`` over a spool and generated segments."""

    def __init__(self, spool: Spool, segments: Sequence[Segment]) -> None:
        self._spool = spool
        self.segments = tuple(s for s in segments if (s if isinstance(s, bytes) else s.size))
        self.size = sum(len(s) if isinstance(s, bytes) else s.size for s in self.segments)

    def chunks(self) -> Iterator[bytes]:
        for segment in self.segments:
            if isinstance(segment, bytes):
                for at in range(0, len(segment), READ_SIZE):
                    yield segment[at : at + READ_SIZE]
            else:
                yield from self._spool.read(segment.start, segment.end)
