"""
The gateway's notice as the rewriter takes it: finished text and ASCII
HTML, rendered elsewhere (``banner``, ``mails``), so the rewriter stays
a pure byte planner that never imports the texts it places.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Banner:
    """``text`` goes on top of a text/plain body, ``html`` after ``<body>``."""

    text: str
    html: str


@attrs.frozen
class TransferTemplate:
    """
    The body of ``content_mode = "transfer"`` (SPEC 6) around the
    original text, which the rewriter streams in between: ``text``
    then the decoded text; ``htmlHead``, the text HTML-escaped,
    ``htmlTail``.  A message whose only text body is HTML gets
    ``htmlInsert`` after that body's ``<body>`` tag and ``textHtmlOnly``
    as its plain side; one without any text body ``textAlone`` and
    ``htmlAlone``.  All HTML here is ASCII.
    """

    text: str
    htmlHead: str
    htmlTail: str
    htmlInsert: str
    textHtmlOnly: str
    textAlone: str
    htmlAlone: str
