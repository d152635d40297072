"""
The body of ``POST /portal/send`` as it arrives (SPEC 9): parsed by
``formdata`` chunk by chunk, each file through the sink a mail
attachment takes (``ingress.sink.AttachmentSink``: hash, scan, encrypt,
append to the transfer's one object), so no file is ever whole, on
disk or in memory, and nothing waits for the whole body.

Theory of operation
-------------------

The web site hands this receiver the request's body instead of keeping
it (``web.site.Streamed``).  Before the first byte is read the client
is paused while the session is looked up and the upload's buffer is
reserved from the process's ``memory_budget``; a request without a
session is refused (403) at once.  The fields come first (``csrf``,
``recipients``, ``subject``, ``message``, ``expiry_days``); at the
first file part they are checked: a forged token is refused at once,
a wrong recipient makes the rest of the body be read and dropped so the
form can come back with the message.  Each file's bytes go to its sink;
while the store (or clamd) has ``MAX_PENDING_WRITES`` writes
outstanding the transport is paused: the store's pace is the client's.
Past ``max_upload_size`` the answer is 413 at once and what was stored
is removed.  A body that ends early (a cancel, a cut, a stall the
channel ends) removes everything: no object, no row, as the transfer's
row is only written once the body is complete (``send``).
"""

from __future__ import annotations

import re
from typing import Any, Optional

import attrs
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from secudoc_gateway import crypto
from secudoc_gateway.addresses import isMailbox
from secudoc_gateway.config import Tenant
from secudoc_gateway.errors import StorageError
from secudoc_gateway.ingress.context import Context
from secudoc_gateway.ingress.sink import AttachmentSink
from secudoc_gateway.mime.decode import IdentityDecoder
from secudoc_gateway.notices.texts import texts
from secudoc_gateway.portal.formdata import (
    End, Field, FileData, FileEnd, FileStart, FormDataParser, FormError, boundaryOf, safeFileName,
)
from secudoc_gateway.portal.sessions import Session, SessionStore, sessionFormValid, signedIn
from secudoc_gateway.scan import MessageScans
from secudoc_gateway.storage.objects import TransferObject, objectKey
from secudoc_gateway.web.context import WebContext
from secudoc_gateway.web.pages import sameOrigin

log = Logger()

MAX_PENDING_WRITES = 4
"""Store writes not yet acknowledged before the client is paused (as for mail: ``ingress.extractor``)."""
BUFFER = 4 * 65536 + 65536
"""What one upload may hold in memory at most (writes in flight and one received chunk): its reservation."""
FORM_ALLOWANCE = 1024 * 1024
"""Request bytes beyond the files' own: the fields, the part headers, the boundaries."""
MAX_FILES = 200
FIELDS = frozenset(["csrf", "recipients", "subject", "message", "expiry_days"])
MAX_SUBJECT = 500
MAX_MESSAGE = 20000

_SPLIT = re.compile(r"[,;\r\n]+")


def parseRecipients(text: str) -> tuple[list[str], list[str]]:
    """The addresses of the recipients field (commas, semicolons or lines; ``Name <a@b>`` too), and the bad ones."""
    good: list[str] = []
    bad: list[str] = []
    for item in _SPLIT.split(text):
        item = item.strip()
        if not item:
            continue
        if item.endswith(">") and "<" in item:
            item = item[item.rindex("<") + 1:-1].strip()
        if isMailbox(item):
            if item.lower() not in (g.lower() for g in good):
                good.append(item)
        else:
            bad.append(item)
    return good, bad


@attrs.frozen
class SendForm:
    """The fields of a send, checked (``problem``: what to tell the person, else ``None``)."""

    recipients: tuple[str, ...]
    subject: str
    message: str
    expiryDays: int
    problem: Optional[str]


def readForm(fields: dict[bytes, list[bytes]], tenant: Tenant, t: dict[str, str], maxRecipients: int) -> SendForm:
    def value(name: str, limit: int) -> str:
        found = fields.get(name.encode("ascii"))
        return found[0].decode("utf-8", "replace")[:limit] if found else ""

    recipients, bad = parseRecipients(value("recipients", 64000))
    subject = " ".join(value("subject", MAX_SUBJECT).split())
    message = value("message", MAX_MESSAGE)
    days = value("expiry_days", 6).strip()
    maxDays = tenant.link_expiry_days
    expiryDays = int(days) if days.isdigit() else (maxDays if not days else 0)
    problem = None
    if bad:
        problem = t["send_bad_recipients"].format(addresses=", ".join(bad[:10]))
    elif not recipients:
        problem = t["send_no_recipients"]
    elif len(recipients) > maxRecipients:
        problem = t["send_too_many_recipients"].format(count=maxRecipients)
    elif not 1 <= expiryDays <= maxDays:
        problem = t["send_expiry_wrong"].format(days=maxDays)
    return SendForm(tuple(recipients), subject, message, expiryDays, problem)


@attrs.frozen
class UploadedFile:
    """One file of the upload, stored: its sealed stream's place in the object, its slot for the key."""

    slot: int
    name: str
    contentType: str
    sink: AttachmentSink


class Uploads:
    """
    The send path's collaborators and the site's ``Streamed`` for
    ``/portal/send``: ``receive`` makes each request's ``Upload``.
    """

    def __init__(self, gateway: Context, web: WebContext, sessions: SessionStore, maxUploadSize: int) -> None:
        self.gateway = gateway
        self.web = web
        self.sessions = sessions
        self.maxUploadSize = maxUploadSize
        self.maxBody = maxUploadSize + FORM_ALLOWANCE

    def receive(self, request: Request, length: Optional[int]) -> "Upload":
        return Upload(self, request)


class Upload:
    """One request's body on its way in (module docstring); read by ``send`` once the body is complete."""

    def __init__(self, uploads: Uploads, request: Request) -> None:
        self.uploads = uploads
        self.request = request
        self.fields: dict[bytes, list[bytes]] = {}
        self.error: Optional[FormError] = None
        self.session: Optional[Session] = None
        self.tenant: Optional[Tenant] = None
        self.form: Optional[SendForm] = None
        self.files: list[UploadedFile] = []
        self.storing: list[Deferred] = []
        self.failure: Optional[Failure] = None
        self.total = 0
        self.complete = False
        self.gone = False  # the connection went before the body was complete
        self.token = crypto.newToken()
        self.transferId = crypto.newTransferId()
        self.object: Optional[TransferObject] = None
        scanner = uploads.gateway.scanner
        self.scans: Optional[MessageScans] = scanner.message() if scanner is not None else None
        self._sink: Optional[AttachmentSink] = None
        self._skipping = False  # a file part with no file chosen (an empty name)
        self._ready = False
        self._waiting: list[bytes] = []
        self._holds = 0
        self._pending = 0
        self._reserved = 0
        self._formKey = b""
        self.parser: Optional[FormDataParser] = None
        try:
            self.parser = FormDataParser(boundaryOf(request.getHeader(b"content-type")), maxParts=MAX_FILES + 10)
        except FormError as e:
            self.error = e
        self._hold()
        self._begun: list[Deferred] = []
        self._started = False
        began = ensureDeferred(self._begin()).addErrback(self._beginFailed)
        began.addBoth(self._fireBegun)

    def _fireBegun(self, _: Any) -> None:
        self._started = True
        waiting, self._begun = self._begun, []
        for d in waiting:
            d.callback(None)

    def begun(self) -> Deferred:
        """Fires once the session is known and what came before it is parsed (a small body may beat it)."""
        if self._started:
            return succeed(None)
        d: Deferred = Deferred()
        self._begun.append(d)
        return d

    # -- before the first byte -------------------------------------------------

    async def _begin(self) -> None:
        uploads = self.uploads
        budget = uploads.gateway.budget
        granted: Deferred = Deferred()
        if budget.reserveOrWait(BUFFER, lambda: granted.callback(None)):
            granted.callback(None)
        await granted
        self._reserved = BUFFER
        if self.gone:
            self._releaseBudget()
            return
        session, tenant = await signedIn(uploads.web, uploads.sessions, self.request, uploads.web.secureCookies)
        self._formKey = await uploads.web.access.formKey()
        if session is None or tenant is None:
            self._refuse(403)
            return
        self.session, self.tenant = session, tenant
        self._ready = True
        waiting, self._waiting = self._waiting, []
        for data in waiting:
            self._parse(data)
        self._release()

    def _beginFailed(self, failure: Failure) -> None:
        log.failure("an upload could not begin", failure)
        self._refuse(503)

    # -- the body --------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self.gone:
            return
        if not self._ready:
            self._waiting.append(data)  # what the transport read before it paused: one read at most
            return
        self._parse(data)

    def _parse(self, data: bytes) -> None:
        if self.error is not None or self.parser is None:
            return  # read and dropped: the answer says why once the body is in
        try:
            for event in self.parser.feed(data):
                self._event(event)
        except FormError as e:
            self._fail(e)
        except Exception:
            self._stored(Failure())

    def _event(self, event: Any) -> None:
        if isinstance(event, Field):
            if not self.files and self.form is None and event.name in FIELDS:
                self.fields.setdefault(event.name.encode("ascii"), [event.value.encode("utf-8")])
        elif isinstance(event, FileStart):
            self._openFile(event)
        elif isinstance(event, FileData):
            self._fileData(event.data)
        elif isinstance(event, FileEnd):
            self._closeFile()
        elif isinstance(event, End):
            self.complete = True

    def _checkForm(self) -> bool:
        """At the first file: the token (a forged one is refused now), then the fields."""
        assert self.session is not None and self.tenant is not None
        token = (self.fields.get(b"csrf") or [b""])[0].decode("ascii", "replace")[:64]
        if not (sameOrigin(self.request, self.uploads.web.publicOrigin)
                and sessionFormValid(self._formKey, self.session, token)):
            self._refuse(403)
            return False
        self.form = readForm(self.fields, self.tenant, texts(self.tenant.language),
                             self.uploads.gateway.config.smtp.max_recipients)
        if self.form.problem is not None:
            self.error = FormError(self.form.problem)
            return False
        return True

    def _openFile(self, event: FileStart) -> None:
        if event.name != "file":
            raise FormError(f"an unexpected file field {event.name!r}")
        if self.form is None and not self._checkForm():
            return
        if not event.filename:
            self._skipping = True  # the file input left empty
            return
        name = safeFileName(event.filename)
        if len(self.files) >= MAX_FILES:
            raise FormError(f"more than {MAX_FILES} files")
        if self.object is None:
            store = self.uploads.gateway.store
            if store is None:
                raise StorageError("no object store")
            self.object = TransferObject(store, objectKey(self.transferId))
        slot = len(self.files)
        self._sink = AttachmentSink(self.object, crypto.fileKey(self.token, self.transferId, slot), IdentityDecoder(),
                                    scan=self.scans.open(slot) if self.scans is not None else None)
        contentType = event.contentType if re.fullmatch(r"[\w.+-]+/[\w.+-]+", event.contentType) else ""
        self.files.append(UploadedFile(slot, name, contentType or "application/octet-stream", self._sink))

    def _fileData(self, data: bytes) -> None:
        if self._skipping:
            if data:
                raise FormError("a file part without a file name")
            return
        if self._sink is None:
            return  # the form was refused at this file
        self.total += len(data)
        if self.total > self.uploads.maxUploadSize:
            raise FormError("over max_upload_size", 413)
        self._wrote(self._sink.feed(data))

    def _closeFile(self) -> None:
        if self._skipping:
            self._skipping = False
            return
        sink, self._sink = self._sink, None
        if sink is None:
            return
        finished = sink.finish()
        self._wrote(finished)
        self.storing.append(finished)

    def _wrote(self, d: Optional[Deferred]) -> None:
        """Count the store's outstanding writes; pause the client while there are too many."""
        if d is None:
            return
        d.addErrback(self._stored)
        if d.called:
            return
        self._pending += 1
        if self._pending == MAX_PENDING_WRITES:
            self._hold()

        def acknowledged(result: Any) -> Any:
            self._pending -= 1
            if self._pending == MAX_PENDING_WRITES - 1:
                self._release()
            return result

        d.addBoth(acknowledged)

    def _stored(self, failure: Failure) -> None:
        """A write failed: the upload stops storing; ``send`` answers 503 when the body is in."""
        if self.failure is None:
            self.failure = failure
            log.failure("{id}: storing an upload failed", failure, id=self.transferId)
        self.error = self.error or FormError("storage", 503)
        self.discard()

    # -- endings ---------------------------------------------------------------

    def _fail(self, error: FormError) -> None:
        """A body refused: stop storing and remove what was; 413 at once, else read on and answer then."""
        self.error = error
        self.discard()
        if error.status == 413:
            self._refuse(413)

    def _refuse(self, code: int) -> None:
        """Answer ``code`` now and close (the channel's bodiless refusal); nothing stays."""
        self.error = self.error or FormError("refused", code)
        self.discard()
        channel: Any = self.request.channel
        if channel is not None:
            channel.refuse(code)

    def lost(self) -> None:
        """The connection went before the request was answered."""
        if self.complete and self.error is None:
            return  # the body is in: ``send`` finishes what it began
        self.gone = True
        self.discard()
        self._releaseBudget()

    def discard(self) -> None:
        """Remove the object, whatever was written of it, once its writes settle; scans end."""
        if self.scans is not None:
            self.scans.abort()
        target, self.object = self.object, None
        self._sink = None
        self._unhold()
        if target is None:
            return

        def remove(_: Any) -> None:
            target.discard().addErrback(lambda f: log.failure("removing an upload's object failed", f))

        DeferredList(self.storing, consumeErrors=True).addCallback(remove)

    async def stored(self) -> list[UploadedFile]:
        """Every file complete in the store; ``StorageError`` when one is not."""
        if self.storing:
            await DeferredList(self.storing, consumeErrors=True)
        if self.failure is not None:
            raise StorageError(self.failure.getErrorMessage())
        return self.files

    def done(self) -> None:
        """The request was answered: the buffer's reservation goes back to the budget."""
        self._releaseBudget()

    def _releaseBudget(self) -> None:
        if self._reserved:
            self.uploads.gateway.budget.release(self._reserved)
            self._reserved = 0

    # -- pausing the client ----------------------------------------------------

    def _hold(self) -> None:
        self._holds += 1
        if self._holds == 1:
            transport: Any = self.request.channel.transport if self.request.channel is not None else None
            if transport is not None:
                transport.pauseProducing()

    def _release(self) -> None:
        if self._holds == 0:
            return
        self._holds -= 1
        if self._holds == 0:
            transport: Any = self.request.channel.transport if self.request.channel is not None else None
            if transport is not None:
                transport.resumeProducing()

    def _unhold(self) -> None:
        """Stopped storing: nothing more to wait for, the client may go on (its bytes are dropped)."""
        if self._holds:
            self._holds = 1
            self._release()
