"""Range headers, dispositions, cookies, CSRF and the languages of pages, without a server."""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from secudoc_gateway import crypto
from secudoc_gateway.web.download import UNSATISFIABLE, byteRange, contentDisposition
from secudoc_gateway.web.pages import csrfToken, csrfValid, pageLanguage, setCookie


class ByteRangeTests(SynchronousTestCase):
    def test_forms(self) -> None:
        for header, expected in (
            (None, None), ("bytes=0-99", (0, 99)), ("bytes=100-", (100, 999)), ("bytes=-100", (900, 999)),
            ("bytes=-5000", (0, 999)), ("bytes=990-5000", (990, 999)), ("bytes=1000-", UNSATISFIABLE),
            ("bytes=-0", UNSATISFIABLE), ("bytes=5-1", None), ("bytes=0-1,5-6", None), ("items=0-1", None),
            ("bytes=-", None), ("bytes=x-1", None), (" bytes = 1 - 2 ", (1, 2)), ("BYTES=0-5", (0, 5)),
        ):
            self.assertEqual(byteRange(header, 1000), expected, header)
        self.assertEqual(byteRange("bytes=0-", 0), UNSATISFIABLE)
        self.assertEqual(byteRange("bytes=-1", 0), UNSATISFIABLE)

    def test_disposition(self) -> None:
        self.assertEqual(contentDisposition("Ünï \"x\".pdf"),
                         b"attachment; filename=\"_n_ _x_.pdf\"; filename*=UTF-8''%C3%9Cn%C3%AF%20%22x%22.pdf")


class SeekTests(SynchronousTestCase):
    def test_everyRangeOpens(self) -> None:
        """Any window of a stream opens from its frames alone, header read apart."""
        key = os.urandom(32)
        data = os.urandom(1000)
        encryptor = crypto.Encryptor(key, frameSize=64)
        sealed = encryptor.feed(data) + encryptor.finish()
        header = sealed[: crypto.HEADER_SIZE]
        for first in (0, 1, 63, 64, 500, 999):
            decryptor = crypto.Decryptor(key)
            offset, frameStart = decryptor.seek(header, first)
            self.assertEqual(frameStart, first // 64 * 64)
            self.assertEqual(offset, crypto.frameOffset(first // 64, 64))
            self.assertEqual(decryptor.feed(sealed[offset:]) + decryptor.finish(), data[frameStart:])

    def test_wrongFrameRefused(self) -> None:
        key = os.urandom(32)
        encryptor = crypto.Encryptor(key, frameSize=64)
        sealed = encryptor.feed(os.urandom(300)) + encryptor.finish()
        decryptor = crypto.Decryptor(key)
        offset, _ = decryptor.seek(sealed[: crypto.HEADER_SIZE], 64)
        # The ciphertext of frame 2 where frame 1 is expected does not open.
        self.assertRaises(crypto.DecryptionError, decryptor.feed, sealed[offset + 80:offset + 160])


class CookieTests(SynchronousTestCase):
    def request(self, cookies: dict[bytes, bytes]) -> Request:
        request = Request(DummyChannel())
        request.received_cookies = cookies
        return request

    def test_cookieFlags(self) -> None:
        for secure in (False, True):
            request = self.request({})
            setCookie(request, b"sd_session", "abc", "/t/tok", secure)
            [cookie] = request.cookies
            self.assertIn(b"HttpOnly", cookie)
            self.assertIn(b"SameSite=lax", cookie)
            self.assertIn(b"Path=/t/tok", cookie)
            self.assertEqual(b"Secure" in cookie, secure)

    def test_csrfTokenKeptOrMade(self) -> None:
        key = os.urandom(32)
        request = self.request({})
        token = csrfToken(request, key, "code", "T1", "/t/tok", False)
        self.assertEqual(len(request.cookies), 1)
        nonce = request.cookies[0].split(b";")[0].split(b"=", 1)[1]
        self.assertNotEqual(token.encode(), nonce)  # a signature, not the cookie's copy
        again = self.request({b"sd_csrf": nonce})
        self.assertEqual(csrfToken(again, key, "code", "T1", "/t/tok", False), token)
        self.assertEqual(again.cookies, [])
        self.assertNotEqual(csrfToken(again, key, "code", "T2", "/t/tok", False), token)
        self.assertNotEqual(csrfToken(again, key, "verify", "T1", "/t/tok", False), token)

    def test_csrfValid(self) -> None:
        key = os.urandom(32)
        nonce = "N" * 43
        token = crypto.formToken(key, "code", "T1", nonce)
        for origin, field, cookie, subject, expected in (
            (None, token, nonce, "T1", True), (b"null", token, nonce, "T1", True),
            (b"http://gw.test", token, nonce, "T1", True), (b"http://evil.test", token, nonce, "T1", False),
            (None, token, None, "T1", False), (None, token, "M" * 43, "T1", False), (None, None, nonce, "T1", False),
            (None, token, nonce, "T2", False),  # signed for another transfer
            (None, nonce, nonce, "T1", False),  # the double-submit pair a client can make up
            (None, crypto.formToken(os.urandom(32), "code", "T1", nonce), nonce, "T1", False),  # not our key
        ):
            request = self.request({b"sd_csrf": cookie.encode()} if cookie else {})
            if origin is not None:
                request.requestHeaders.setRawHeaders(b"origin", [origin])
            request.args = {b"csrf": [field.encode()]} if field else {}
            self.assertEqual(csrfValid(request, "http://gw.test", key, "code", subject), expected,
                             (origin, field, cookie, subject))
        self.assertFalse(crypto.formTokenValid(key, "code", "T1", "", crypto.formToken(key, "code", "T1", "")))


class LanguageTests(SynchronousTestCase):
    def request(self, query: dict[bytes, list[bytes]], cookies: dict[bytes, bytes], accept: str = "") -> Request:
        request = Request(DummyChannel())
        request.received_cookies = cookies
        request.args = query
        if accept:
            request.requestHeaders.setRawHeaders(b"accept-language", [accept])
        return request

    def test_order(self) -> None:
        """The switch, then what it remembered, then the browser, then the tenant."""
        for query, cookies, accept, expected in (
            ({}, {}, "", "nl"), ({}, {}, "en-GB,en;q=0.9", "en"), ({}, {}, "de", "nl"),
            ({}, {b"sd_lang": b"nl"}, "en", "nl"), ({b"lang": [b"en"]}, {b"sd_lang": b"nl"}, "nl", "en"),
            ({b"lang": [b"xx"]}, {}, "en", "en"), ({}, {b"sd_lang": b"xx"}, "", "nl"),
        ):
            request = self.request(query, cookies, accept)
            self.assertEqual(pageLanguage(request, "nl", "/t/tok"), expected, (query, cookies, accept))

    def test_switchRemembered(self) -> None:
        request = self.request({b"lang": [b"en"]}, {})
        pageLanguage(request, "nl", "/t/tok", True)
        [cookie] = request.cookies
        self.assertTrue(cookie.startswith(b"sd_lang=en;"))
        self.assertIn(b"Path=/t/tok", cookie)
        self.assertIn(b"Secure", cookie)
        self.assertIn(b"SameSite=lax", cookie)


class LogoCacheTests(SynchronousTestCase):
    def test_readOnceThenKept(self) -> None:
        """A logo is read on first use and served from memory; a changed file shows after the recheck."""
        from twisted.internet.task import Clock

        from secudoc_gateway.web.logos import RECHECK, LogoCache

        folder = self.mktemp()
        os.makedirs(folder)
        path = os.path.join(folder, "logo.png")
        with open(path, "wb") as f:
            f.write(b"one")
        clock = Clock()
        cache = LogoCache(clock)
        first = self.successResultOf(Deferred.fromCoroutine(cache.get(path)))
        self.assertEqual((first.data, first.contentType), (b"one", "image/png"))
        os.unlink(path)  # not read again while fresh
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(cache.get(path))).data, b"one")
        with open(path, "wb") as f:
            f.write(b"two")
        os.utime(path, (first.mtime + 10, first.mtime + 10))
        clock.advance(RECHECK)
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(cache.get(path))).data, b"two")
