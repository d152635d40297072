"""
A small TNEF writer ([MS-OXTNEF] 2.1.3) for tests: the streams Outlook
makes for its attachments, built from names and bytes, and the same
wrapped as the ``winmail.dat`` part of a message.
"""

from __future__ import annotations

import base64
import struct
from typing import Optional, Sequence

import attrs

SIGNATURE = 0x223E9F78
LEVEL_MESSAGE, LEVEL_ATTACHMENT = 1, 2
# Full attribute ids: type in the high 16 bits.
ATT_TNEF_VERSION = 0x00089006
ATT_OEM_CODEPAGE = 0x00069007
ATT_MESSAGE_CLASS = 0x00078008
ATT_MSG_PROPS = 0x00069003
ATT_RENDDATA = 0x00069002
ATT_TITLE = 0x00018010
ATT_DATA = 0x0006800F
ATT_ATTACHMENT = 0x00069005
PT_LONG, PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT, PT_BOOLEAN = 0x3, 0x1E, 0x1F, 0x102, 0xD, 0xB


@attrs.frozen
class TnefFile:
    """One attachment: ``title`` is the 8.3 name, ``longName`` goes into the MAPI properties."""

    data: bytes
    title: str = "FILE.BIN"
    longName: Optional[str] = None
    method: int = 1
    dataObject: bytes = b""  # PR_ATTACH_DATA_OBJ, as an embedded message has it


def attribute(level: int, attributeId: int, data: bytes, checksum: Optional[int] = None) -> bytes:
    total = sum(data) & 0xFFFF if checksum is None else checksum
    return struct.pack("<BII", level, attributeId, len(data)) + data + struct.pack("<H", total)


def _counted(kind: int, tag: int, value: bytes) -> bytes:
    return struct.pack("<HHII", kind, tag, 1, len(value)) + value + b"\0" * (-len(value) % 4)


def properties(file: TnefFile) -> bytes:
    """attAttachment: a MAPI property list with a named property, a boolean and the names."""
    props = [
        struct.pack("<HHI", PT_LONG, 0x3705, file.method),
        struct.pack("<HHH2x", PT_BOOLEAN, 0x7FFE, 0),
        # A named property (GUID, kind 1 = string name), then its string value.
        struct.pack("<HH", PT_STRING8, 0x8005) + bytes(16) + struct.pack("<II", 1, 6) + "ab\0".encode("utf-16-le")
        + b"\0\0" + struct.pack("<II", 1, 3) + b"xy\0\0",
        _counted(PT_BINARY, 0x3702, b""),
    ]
    if file.longName is not None:
        props.append(_counted(PT_UNICODE, 0x3707, (file.longName + "\0").encode("utf-16-le")))
    if file.dataObject:
        props.append(_counted(PT_OBJECT, 0x3701, bytes(16) + file.dataObject))
    return struct.pack("<I", len(props)) + b"".join(props)


def tnef(files: Sequence[TnefFile], codepage: int = 1252, body: bytes = b"{\\rtf1 Hallo}") -> bytes:
    out = struct.pack("<IH", SIGNATURE, 0x1234)
    out += attribute(LEVEL_MESSAGE, ATT_TNEF_VERSION, struct.pack("<I", 0x00010000))
    out += attribute(LEVEL_MESSAGE, ATT_OEM_CODEPAGE, struct.pack("<II", codepage, 0))
    out += attribute(LEVEL_MESSAGE, ATT_MESSAGE_CLASS, b"IPM.Microsoft Mail.Note\0")
    out += attribute(LEVEL_MESSAGE, ATT_MSG_PROPS, struct.pack("<I", 1) + _counted(PT_BINARY, 0x1009, body))
    for file in files:
        out += attribute(LEVEL_ATTACHMENT, ATT_RENDDATA, struct.pack("<HIHHI", 1, 0xFFFFFFFF, 1, 1, 0))
        out += attribute(LEVEL_ATTACHMENT, ATT_TITLE, file.title.encode(f"cp{codepage}") + b"\0")
        out += attribute(LEVEL_ATTACHMENT, ATT_DATA, file.data)
        out += attribute(LEVEL_ATTACHMENT, ATT_ATTACHMENT, properties(file))
    return out


def winmailMessage(stream: bytes, text: str = "Zie bijlagen.\r\n", sender: str = "alice@example.test",
                   extra: bytes = b"") -> bytes:
    """A message as Outlook in rich-text mode sends it: text, then winmail.dat, base64."""
    encoded = base64.encodebytes(stream).replace(b"\n", b"\r\n")
    return (
        f"From: Alice <{sender}>\r\nTo: bob@external.test\r\nSubject: Offerte\r\n".encode()
        + b"MIME-Version: 1.0\r\nX-MS-Has-Attach: yes\r\nX-MS-TNEF-Correlator: <x@example.test>\r\n"
        b"Content-Type: multipart/mixed; boundary=\"tnef\"\r\n\r\n"
        b"--tnef\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\n\r\n" + text.encode() + extra
        + b"--tnef\r\nContent-Type: application/ms-tnef; name=\"winmail.dat\"\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"winmail.dat\"\r\n\r\n"
        + encoded + b"--tnef--\r\n"
    )
