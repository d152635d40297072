"""
The attachment planner alone: parser events in, actions out, no store
and no reactor.  The actions are replayed into plain byte strings here,
so a test reads what each file would hold, and the same message split
at every point (and at random points) must give the same files.
"""

from __future__ import annotations

import base64
from typing import Any, Optional

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from secudoc_gateway.ingress.attachments import (
    Action, Close, Copy, Drop, Feed, Open, Planner, RightsProtected,
)
from secudoc_gateway.mime.decode import IdentityDecoder, decoderFor
from secudoc_gateway.mime.parser import BodyData, MIMEParser, PartEnd, PartStart
from secudoc_gateway.mime.structure import MESSAGE, Structure
from tests.tnefdata import TnefFile, tnef, winmailMessage

PDF = b"%PDF-1.4 " + bytes(range(256)) * 3
IMAGE = b"\x89PNG" + b"\x01" * 90
INNER = (b"From: carol@example.test\r\nSubject: inner\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=in\r\n\r\n"
         b"--in\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
         b"--in\r\nContent-Type: application/zip; name=inner.zip\r\n\r\nPK..\r\n--in--\r\n")


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


MIXED = (
    b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: mixed\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
    b"--B\r\nContent-Type: multipart/related; boundary=R\r\n\r\n"
    b"--R\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"<p>Bild: <img src=3D\"cid:img1@x\"></p>\r\n"
    b"--R\r\nContent-Type: image/png; name=logo.png\r\nContent-ID: <img1@x>\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(IMAGE) + b"--R--\r\n"
    b"--B\r\nContent-Type: application/pdf; name=offer.pdf\r\nContent-Disposition: attachment\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(PDF)
    + b"--B\r\nContent-Type: message/rfc822\r\n\r\n" + INNER + b"\r\n--B--\r\n"
)
SIGNED = (
    b"From: alice@example.test\r\nSubject: signed\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=S\r\n\r\n"
    b"--S\r\nContent-Type: multipart/mixed; boundary=M\r\n\r\n"
    b"--M\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n"
    b"--M\r\nContent-Type: application/pdf; name=a.pdf\r\n\r\nPDFDATA\r\n--M--\r\n"
    b"--S\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n\r\nSIG\r\n--S--\r\n"
)
RPMSG = (
    b"From: alice@example.test\r\nSubject: protected\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=P\r\n\r\n"
    b"--P\r\nContent-Type: text/plain\r\n\r\nopen in Outlook\r\n"
    b"--P\r\nContent-Type: application/x-microsoft-rpmsg-message; name=message.rpmsg\r\n\r\nRPMSG\r\n--P--\r\n"
)
def attached(inner: bytes, after: bytes, eol: bytes = b"\r\n") -> bytes:
    """A message with ``inner`` attached, ``after`` following it (its end as the stream has it)."""
    return (b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\nhi\r\n"
            b"--B\r\nContent-Type: message/rfc822\r\n\r\n" + inner + after).replace(b"\r\n", eol)


ATTACHED = [
    # Ends with a line break that belongs to the delimiter, and one that is its own.
    attached(INNER, b"\r\n--B--\r\n"),
    attached(INNER + b"\r\n", b"\r\n--B--"),
    # LF only; bare CR inside.
    attached(INNER.replace(b"hello", b"a\rb"), b"\r\n--B--\r\n", b"\n"),
    # A message attached inside the attached one: only the outer one is a file.
    attached(b"Content-Type: message/rfc822\r\n\r\n" + INNER, b"\r\n--B--\r\n"),
    # The outer delimiter right after a header block, with no body between.
    attached(b"Subject: headers only\r\n", b"--B--\r\n"),
    # No close-delimiter: the message runs to the end of the stream.
    attached(INNER, b""),
    attached(b"Subject: s\r\n\r\nno line break at the end", b""),
]
WINMAIL = winmailMessage(tnef([TnefFile(b"first file", "A.TXT", "first.txt"),
                               TnefFile(b"second" * 40, "B.BIN", "second.bin")]))
BROKEN = tnef([TnefFile(b"whole", "A.TXT", "whole.txt"), TnefFile(b"cut short" * 20, "B.TXT", "cut.txt")])
TRUNCATED = winmailMessage(BROKEN[:len(BROKEN) - 40])


@attrs.define
class File:
    """What one candidate's file would hold, replayed from the actions."""

    decoder: Any
    exclusive: bool
    data: bytes = b""
    closed: bool = False
    dropped: bool = False


@attrs.define
class Run:
    """One message planned: the planner, its actions in order and the files they make."""

    planner: Planner
    actions: list[Action] = attrs.Factory(list)
    files: dict[int, File] = attrs.Factory(dict)
    leaving: list[tuple[tuple[int, ...], bool]] = attrs.Factory(list)

    def record(self, actions: list[Action], message: bytes) -> None:
        self.actions += actions
        for action in actions:
            _replay(self.files, action, message)

    def summary(self) -> tuple:
        """The outcome, whatever the split: files by slot, attachments, cids, rule 6."""
        files = {slot: (f.data, f.closed, f.dropped, f.exclusive) for slot, f in self.files.items()}
        attachments = [(c.path, c.slot, c.name, c.kind) for c in self.planner.files()]
        return files, attachments, frozenset(self.planner.referencedCids), self.planner.rightsProtected


def plan(message: bytes, splits: tuple[int, ...] = (), minimum: Optional[int] = None,
         active: bool = True) -> Run:
    """Feed ``message`` cut at ``splits`` to a parser, a structure and a planner; replay the actions."""
    structure = Structure()
    run = Run(Planner(structure, active))
    parser = MIMEParser()
    bounds = [0, *sorted(splits), len(message)]
    for close, (a, b) in [(False, bound) for bound in zip(bounds, bounds[1:])] + [(True, (0, 0))]:
        events = parser.close() if close else parser.feed(message[a:b])
        run.planner.window(*parser.window)
        for event in events:
            structure.add(event)
            if isinstance(event, PartStart):
                actions = run.planner.partStart(event)
            elif isinstance(event, BodyData):
                leaving, actions = run.planner.bodyData(event, minimum)
                run.leaving.append((event.path, leaving))
            elif isinstance(event, PartEnd):
                actions = run.planner.partEnd(event)
            else:
                continue
            run.record(actions, message)
        run.record(run.planner.passed(parser.consumed), message)
    return run


def _replay(files: dict[int, File], action: Action, message: bytes) -> None:
    if isinstance(action, RightsProtected):
        return
    slot = action.slot
    if isinstance(action, Open):
        assert slot not in files, f"file {slot} opened twice"
        decoder = (decoderFor(action.encoding) if action.encoding is not None else None) or IdentityDecoder()
        files[slot] = File(decoder, action.exclusive)
        return
    file = files[slot]
    assert not file.closed and not file.dropped, f"file {slot} used after it ended"
    if isinstance(action, Feed):
        assert action.data, "an empty feed"
        file.data += file.decoder.feed(action.data)
    elif isinstance(action, Close):
        file.data += file.decoder.feed(action.tail) + file.decoder.close()
        file.closed = True
    elif isinstance(action, Copy):
        assert file.exclusive, "a copy from the spool outside the object's exclusive turn"
        file.data += file.decoder.feed(message[action.start:action.end]) + file.decoder.close()
        file.closed = True
    elif isinstance(action, Drop):
        file.dropped = True


class Decisions(TestCase):
    """Which parts leave, and how, decided from the events alone."""

    def test_mixed(self) -> None:
        """
        The PDF is decoded into its file; the attached message is stored
        byte-exact as it passes, nothing inside it a candidate; the inline
        image shown by the HTML body's cid: has a file but is no attachment.
        """
        run = plan(MIXED)
        attachments = run.planner.files()
        self.assertEqual([(c.headers.filename, c.kind) for c in attachments],
                         [("offer.pdf", "leaf"), (None, MESSAGE)])
        self.assertEqual(run.planner.referencedCids, {"img1@x"})
        pdf, message = attachments
        self.assertEqual(run.files[pdf.slot].data, PDF)
        part = run.planner.structure[message.path]
        self.assertEqual(run.files[message.slot].data, MIXED[part.bodyStart:part.bodyEnd])
        self.assertFalse(run.files[message.slot].exclusive)
        self.assertFalse(any(isinstance(a, Copy) for a in run.actions))
        self.assertEqual(len(run.planner.candidates), 3)  # image, PDF, message: nothing inside the message
        image = run.planner.candidates[0]
        self.assertEqual(run.files[image.slot].data, IMAGE)
        self.assertTrue(all(f.closed for f in run.files.values()))
        self.assertFalse(run.planner.rightsProtected)

    def test_signedSubtreeHasNoCandidates(self) -> None:
        run = plan(SIGNED)
        self.assertEqual((run.planner.candidates, run.actions), ([], []))

    def test_rightsProtection(self) -> None:
        """The rpmsg part says so once, as an action and in ``rightsProtected``."""
        run = plan(RPMSG)
        self.assertTrue(run.planner.rightsProtected)
        self.assertEqual([a for a in run.actions if isinstance(a, RightsProtected)], [RightsProtected()])

    def test_tnefOpened(self) -> None:
        """Each file inside winmail.dat is a candidate of its own; the part itself is not listed."""
        run = plan(WINMAIL)
        files = run.planner.files()
        self.assertEqual([c.name for c in files], ["first.txt", "second.bin"])
        self.assertEqual([run.files[c.slot].data for c in files], [b"first file", b"second" * 40])
        self.assertTrue(run.planner.candidates[0].opened)
        self.assertNotIn(run.planner.candidates[0].slot, run.files)

    def test_tnefIncompleteCopied(self) -> None:
        """
        A stream cut short: the whole file is kept, the cut one dropped,
        and the part itself copied from the spool, decoded, as it is.
        """
        run = plan(TRUNCATED)
        part = run.planner.candidates[0]
        self.assertFalse(part.opened)
        self.assertEqual([c.name for c in run.planner.files()], [None, "whole.txt"])
        self.assertEqual(run.files[part.slot].data, BROKEN[:len(BROKEN) - 40])
        self.assertTrue(run.files[part.slot].exclusive)
        self.assertEqual([type(a) for a in run.actions if isinstance(a, (Drop, Copy))], [Drop, Copy])

    def test_slotNeverGivenTwice(self) -> None:
        """
        A file after a dropped one gets a slot of its own: two files under
        one key (the slot's) would be two streams sealed alike.
        """
        after = (b"--tnef\r\nContent-Type: application/pdf; name=after.pdf\r\n\r\nPDF\r\n--tnef--\r\n")
        run = plan(TRUNCATED.removesuffix(b"--tnef--\r\n") + after)
        [dropped] = [a.slot for a in run.actions if isinstance(a, Drop)]
        opened = [a.slot for a in run.actions if isinstance(a, Open)]
        self.assertEqual(len(opened), len(set(opened)))
        self.assertEqual([c.name or c.headers.filename for c in run.planner.files()],
                         ["winmail.dat", "whole.txt", "after.pdf"])
        self.assertNotIn(dropped, [c.slot for c in run.planner.files()])
        self.assertEqual(run.files[run.planner.files()[2].slot].data, b"PDF")

    def test_actionsArePlainData(self) -> None:
        """
        Every action is a frozen value of plain data (numbers, bytes,
        text): nothing in one is an object the driver could change.
        """
        plain = (int, bytes, str, bool, type(None))
        for message in [MIXED, RPMSG, WINMAIL, TRUNCATED, *ATTACHED]:
            for action in plan(message).actions:
                self.assertTrue(attrs.has(type(action)))
                self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, action, "slot", 0)
                for field in attrs.fields(type(action)):
                    self.assertIsInstance(getattr(action, field.name), plain, (action, field.name))
                hash(action)

    def test_inactiveFindsCandidatesOpensNothing(self) -> None:
        """Without a store the candidates are still found, and no file is asked for."""
        run = plan(MIXED, active=False)
        self.assertEqual(len(run.planner.candidates), 3)
        self.assertEqual(run.actions, [])

    def test_stopped(self) -> None:
        """After ``stop`` nothing is opened, fed, closed or copied."""
        structure = Structure()
        planner = Planner(structure)
        after: list[Action] = []
        for event in MIMEParser().feed(MIXED):
            structure.add(event)
            if isinstance(event, PartStart):
                actions = planner.partStart(event)
            elif isinstance(event, BodyData):
                actions = planner.bodyData(event)[1]
            elif isinstance(event, PartEnd):
                actions = planner.partEnd(event)
            else:
                continue
            if not planner.active:
                after += actions
            if isinstance(event, PartStart) and event.headers.filename == "offer.pdf":
                planner.stop()
        self.assertEqual((len(planner.candidates), planner.candidates[2].kind), (3, MESSAGE))
        self.assertEqual(after, [])


class Leaving(TestCase):
    """Which bytes are surely leaving: judged before them, only past the minimum."""

    def leaving(self, minimum: Optional[int]) -> dict[tuple[int, ...], list[bool]]:
        """Per part, whether each of its body events was leaving (the message fed 64 bytes at a time)."""
        run = plan(MIXED, tuple(range(64, len(MIXED), 64)), minimum)
        found: dict[tuple[int, ...], list[bool]] = {}
        for path, leaving in run.leaving:
            found.setdefault(path, []).append(leaving)
        return found

    def test_pastMinimum(self) -> None:
        """The PDF's bytes leave once 100 decoded bytes of it went before them, not earlier."""
        pdf = self.leaving(100)[(1,)]
        self.assertEqual(pdf[:2], [False, False])
        self.assertTrue(all(pdf[3:]))
        self.assertTrue(all(self.leaving(0)[(1,)]))

    def test_neverWithoutMinimum(self) -> None:
        self.assertFalse(any(any(found) for found in self.leaving(None).values()))

    def test_othersStay(self) -> None:
        """
        The inline image may be shown by cid: (known only later), the
        HTML body and the attached message are no files fed by the part:
        their bytes never leave early.
        """
        found = self.leaving(0)
        self.assertEqual(sorted(found), [(0, 0), (0, 1), (1,), (2, 0, 0), (2, 0, 1)])
        for path in ((0, 0), (0, 1), (2, 0, 0), (2, 0, 1)):
            self.assertFalse(any(found[path]), path)


class Splits(TestCase):
    """Any split of the stream gives the same files (the parser's promise, kept by the planner)."""

    def test_attachedMessagesEverySplitPoint(self) -> None:
        """An attached message's file is its body as received, whatever the split and however it ends."""
        for message in ATTACHED:
            whole = plan(message)
            [file] = whole.planner.files()
            part = whole.planner.structure[file.path]
            self.assertEqual(whole.files[file.slot].data, message[part.bodyStart:part.bodyEnd])
            self.assertTrue(whole.files[file.slot].closed)
            for at in range(1, len(message)):
                self.assertEqual(plan(message, (at,)).summary(), whole.summary(), f"split at {at}")

    def test_everySplitPoint(self) -> None:
        for message in (MIXED, WINMAIL, TRUNCATED):
            whole = plan(message).summary()
            for at in range(1, len(message)):
                self.assertEqual(plan(message, (at,)).summary(), whole, f"split at {at}")

    @settings(max_examples=60, deadline=None)
    @given(st.sampled_from([MIXED, WINMAIL, TRUNCATED, SIGNED, RPMSG, *ATTACHED]), st.data())
    def test_randomSplits(self, message: bytes, data: Any) -> None:
        splits = data.draw(st.lists(st.integers(1, len(message) - 1), max_size=12))
        self.assertEqual(plan(message, tuple(splits)).summary(), plan(message).summary())
