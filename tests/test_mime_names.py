"""
Tests for secudoc_gateway.mime.names and the Headers accessors built on
it: parameters, RFC 2231 and RFC 2047 names, display cleaning.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.mime.headers import Headers
from secudoc_gateway.mime.names import (
    decodeHeader,
    decodeParams,
    filenameOf,
    parseParams,
    safeFilename,
)


def headers(block: bytes, defaultType: str = "text/plain") -> Headers:
    return Headers.fromBlock(block, defaultType)


class ParamTests(SynchronousTestCase):
    def test_quotedAndPlain(self) -> None:
        main, params = parseParams('text/plain; charset=utf-8; name="a \\"b\\"; c.txt"')
        self.assertEqual(main, "text/plain")
        self.assertEqual(decodeParams(params), {"charset": "utf-8", "name": 'a "b"; c.txt'})

    def test_missingClosingQuote(self) -> None:
        _, params = parseParams('attachment; filename="report.pdf')
        self.assertEqual(decodeParams(params), {"filename": "report.pdf"})

    def test_duplicateFirstWins(self) -> None:
        _, params = parseParams("attachment; filename=a.txt; FILENAME=b.txt")
        self.assertEqual(decodeParams(params), {"filename": "a.txt"})

    def test_junk(self) -> None:
        main, params = parseParams("attachment;; novalue; =x; filename = spaced.txt ")
        self.assertEqual(main, "attachment")
        self.assertEqual(decodeParams(params), {"filename": "spaced.txt"})
        self.assertEqual(parseParams(None), ("", []))


class RFC2231Tests(SynchronousTestCase):
    def test_extended(self) -> None:
        _, params = parseParams("attachment; filename*=UTF-8''%E2%82%AC%20rates.txt")
        self.assertEqual(decodeParams(params)["filename"], "€ rates.txt")

    def test_winsOverPlain(self) -> None:
        _, params = parseParams(
            "attachment; filename=\"fallback.txt\"; filename*=iso-8859-1'nl'caf%E9.txt"
        )
        self.assertEqual(decodeParams(params)["filename"], "café.txt")

    def test_charsetThatIsNoTextEncoding(self) -> None:
        """
        Found by fuzzing: a NUL in the charset made the lookup raise
        ValueError and the whole message fail; a bytes codec (base64,
        zlib) is no charset either.  Both read as unknown.
        """
        for charset in ("utf-8\x00", "base64", "zlib", "rot13"):
            _, params = parseParams(f"attachment; filename*={charset}''%C3%A9t%C3%A9.txt")
            self.assertEqual(decodeParams(params)["filename"], "été.txt", charset)

    def test_continuationsOutOfOrderMixed(self) -> None:
        """RFC 2231 3-4: numbered segments, any order, encoded and plain mixed."""
        _, params = parseParams(
            "attachment; filename*2=\" end.txt\"; filename*0*=utf-8'en'%C3%A9t%C3%A9;"
            " filename*1=-long"
        )
        self.assertEqual(decodeParams(params)["filename"], "été-long end.txt")

    def test_unknownCharset(self) -> None:
        _, params = parseParams("attachment; filename*=x-bogus''na%C3%AFve.txt")
        self.assertEqual(decodeParams(params)["filename"], "naïve.txt")
        _, params = parseParams("attachment; filename*=''%E9.txt")
        self.assertEqual(decodeParams(params)["filename"], "é.txt")


class RFC2047Tests(SynchronousTestCase):
    def test_header(self) -> None:
        self.assertEqual(decodeHeader("=?UTF-8?Q?Factuur_=E2=82=AC_12?= en meer"), "Factuur € 12 en meer")
        self.assertEqual(decodeHeader("=?iso-8859-1?b?Y2Fm6Q==?="), "café")
        self.assertEqual(decodeHeader("plain"), "plain")

    def test_adjacentJoined(self) -> None:
        """RFC 2047 6.2: blanks between encoded-words vanish; split characters survive."""
        self.assertEqual(decodeHeader("=?utf-8?q?a?= \r\n =?utf-8?q?b?="), "ab")
        self.assertEqual(decodeHeader("=?utf-8?b?4oI=?= =?utf-8?b?rA==?="), "€")
        self.assertEqual(decodeHeader("x =?utf-8?q?a?= y"), "x a y")

    def test_unknownCharsetAndLanguage(self) -> None:
        self.assertEqual(decodeHeader("=?x-unknown?q?caf=C3=A9?="), "café")
        self.assertEqual(decodeHeader("=?US-ASCII*EN?Q?pr?=ess"), "press")
        self.assertEqual(decodeHeader("=?utf-8?b?YWJjZA?="), "abcd")
        self.assertEqual(decodeHeader("=?utf-8?b?YWJjZ?="), "abc")

    def test_filenames(self) -> None:
        """Encoded-words inside quotes (Outlook) and, leniently, unquoted."""
        self.assertEqual(
            filenameOf(headers(b'Content-Disposition: attachment;\r\n filename="=?utf-8?B?w6kucGRm?="\r\n')),
            "é.pdf",
        )
        self.assertEqual(
            filenameOf(headers(b"Content-Type: application/pdf;\r\n name==?utf-8?Q?r=C3=A9sum=C3=A9.pdf?=\r\n")),
            "résumé.pdf",
        )


class FilenameTests(SynchronousTestCase):
    def test_dispositionFirst(self) -> None:
        block = b'Content-Type: application/pdf; name="type.pdf"\r\nContent-Disposition: attachment; filename="disp.pdf"\r\n'
        self.assertEqual(filenameOf(headers(block)), "disp.pdf")
        self.assertEqual(filenameOf(headers(b"Content-Type: image/png; name=logo.png\r\n")), "logo.png")

    def test_none(self) -> None:
        self.assertIsNone(filenameOf(headers(b"Content-Type: text/plain\r\n")))
        self.assertIsNone(filenameOf(headers(b'Content-Disposition: attachment; filename=""\r\n')))

    def test_raw8bit(self) -> None:
        """RFC 6532 UTF-8 names, and legacy Latin-1 ones."""
        self.assertEqual(
            filenameOf(headers('Content-Disposition: attachment; filename="één.pdf"\r\n'.encode())),
            "één.pdf",
        )
        self.assertEqual(
            filenameOf(headers('Content-Disposition: attachment; filename="caf\xe9.pdf"\r\n'.encode("latin-1"))),
            "café.pdf",
        )


class HeadersTests(SynchronousTestCase):
    BLOCK = (
        b"Subject: =?utf-8?q?hi?=\r\n"
        b"content-TYPE: Multipart/Mixed;\r\n"
        b'\tboundary="==b 1 "; charset=UTF-8\r\n'
        b"Content-Disposition: INLINE\r\n"
        b"Content-Transfer-Encoding: Base64\r\n"
        b"Content-ID: <logo@x>\r\n"
        b"From nobody\r\n"
    )

    def test_accessors(self) -> None:
        parsed = headers(self.BLOCK)
        self.assertEqual(parsed.fields[1], ("content-TYPE", b" Multipart/Mixed;\r\n\tboundary=\"==b 1 \"; charset=UTF-8"))
        self.assertEqual(parsed.get("Content-Type"), 'Multipart/Mixed;\tboundary="==b 1 "; charset=UTF-8')
        self.assertEqual(parsed.contentType, "multipart/mixed")
        self.assertEqual(parsed.boundary, "==b 1")
        self.assertEqual(parsed.charset, "utf-8")
        self.assertEqual(parsed.disposition, "inline")
        self.assertEqual(parsed.transferEncoding, "base64")
        self.assertEqual(parsed.contentId, "logo@x")
        self.assertIsNone(parsed.filename)
        self.assertEqual(decodeHeader(parsed.get("subject") or ""), "hi")
        self.assertIsNone(parsed.get("x-missing"))
        # The mbox "From " line is no field.
        self.assertEqual([name for name, _ in parsed.fields][-1], "Content-ID")
        self.assertEqual(len(parsed.fields), 5)

    def test_defaults(self) -> None:
        parsed = headers(b"Subject: x\r\n")
        self.assertEqual(parsed.contentType, "text/plain")
        self.assertEqual(parsed.transferEncoding, "7bit")
        self.assertIsNone(parsed.disposition)
        self.assertIsNone(parsed.boundary)
        self.assertEqual(headers(b"", "message/rfc822").contentType, "message/rfc822")
        self.assertEqual(headers(b"Content-Type: garbage\r\n").contentType, "text/plain")

    def test_damagedUTF8(self) -> None:
        """A UTF-8 name cut mid-character stays UTF-8, not mojibake."""
        value = "Картинка".encode() + "ч".encode()[:1]
        parsed = headers(b'Content-Disposition: attachment; filename="' + value + b'"\r\n')
        self.assertEqual(parsed.filename, "Картинка\ufffd")


class CleanTests(SynchronousTestCase):
    def test_safeFilename(self) -> None:
        self.assertEqual(safeFilename("../../etc/passwd"), "_.._etc_passwd")
        self.assertEqual(safeFilename("..\\x.txt"), "_x.txt")
        self.assertEqual(safeFilename(".hidden"), "hidden")
        self.assertEqual(safeFilename(""), "attachment")
        self.assertEqual(safeFilename(None), "attachment")
        self.assertEqual(safeFilename(" \u202e. "), "attachment")
        long = safeFilename("x" * 500 + ".pdf")
        self.assertEqual(len(long), 200)
        self.assertTrue(long.endswith("x.pdf"))
        self.assertEqual(len(safeFilename("y" * 500)), 200)
