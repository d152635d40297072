"""
Tests for secudoc_gateway.crypto: tokens, key derivation and the framed
AES-256-GCM stream, fed at every kind of split.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway import crypto
from secudoc_gateway.crypto import (
    HEADER_SIZE,
    TAG_BYTES,
    DecryptionError,
    Decryptor,
    Encryptor,
    ciphertextSize,
    fileKey,
    newToken,
    newTransferId,
    plaintextSize,
    tokenHash,
)

KEY = fileKey("token", "transfer", 0)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the (sorted, clamped) positions in ``cuts``."""
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = []
    start = 0
    for p in points:
        pieces.append(data[start:p])
        start = p
    pieces.append(data[start:])
    return pieces


def encrypt(plain: bytes, frameSize: int, key: bytes = KEY, cuts: list[int] = []) -> bytes:
    enc = Encryptor(key, frameSize)
    return b"".join(enc.feed(p) for p in split(plain, cuts)) + enc.finish()


def decrypt(cipher: bytes, key: bytes = KEY, cuts: list[int] = []) -> bytes:
    dec = Decryptor(key)
    return b"".join(dec.feed(p) for p in split(cipher, cuts)) + dec.finish()


def frames(cipher: bytes, frameSize: int) -> tuple[bytes, list[bytes]]:
    """The header and the sealed frames of ``cipher``."""
    body = cipher[HEADER_SIZE:]
    size = frameSize + TAG_BYTES
    return cipher[:HEADER_SIZE], [body[i : i + size] for i in range(0, len(body), size)]


class RoundTripTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(
        plain=st.binary(max_size=300),
        frameSize=st.integers(min_value=1, max_value=40),
        encCuts=st.lists(st.integers(min_value=0, max_value=300), max_size=12),
        decCuts=st.lists(st.integers(min_value=0, max_value=600), max_size=12),
    )
    def test_randomChunking(
        self, plain: bytes, frameSize: int, encCuts: list[int], decCuts: list[int]
    ) -> None:
        """Any pieces on either side: the plaintext comes back, the size is predicted."""
        cipher = encrypt(plain, frameSize, cuts=encCuts)
        self.assertEqual(len(cipher), ciphertextSize(len(plain), frameSize))
        self.assertEqual(plaintextSize(len(cipher), frameSize), len(plain))
        self.assertEqual(decrypt(cipher, cuts=decCuts), plain)

    def test_boundarySizes(self) -> None:
        """Sizes around the frame size, with the default 64 KiB frames, whole and byte-split."""
        frame = crypto.FRAME_SIZE
        for size in [0, 1, frame - 1, frame, frame + 1, 3 * frame, 3 * frame + 5]:
            plain = os.urandom(size)
            cipher = encrypt(plain, frame, cuts=list(range(0, size, 9999)))
            self.assertEqual(len(cipher), ciphertextSize(size), size)
            self.assertEqual(plaintextSize(len(cipher)), size)
            self.assertEqual(decrypt(cipher), plain, size)
            self.assertEqual(decrypt(cipher, cuts=list(range(0, len(cipher), 4097))), plain)

    def test_byteByByte(self) -> None:
        plain = os.urandom(100)
        cipher = encrypt(plain, 7, cuts=list(range(100)))
        self.assertEqual(decrypt(cipher, cuts=list(range(len(cipher)))), plain)

    def test_explicitHeader(self) -> None:
        """A caller that writes ``header()`` itself gets frames only from feed/finish."""
        enc = Encryptor(KEY, 16)
        header = enc.header()
        self.assertEqual(len(header), HEADER_SIZE)
        body = enc.feed(b"a" * 40) + enc.finish()
        self.assertFalse(body.startswith(header))
        self.assertEqual(decrypt(header + body), b"a" * 40)

    def test_boundedBuffering(self) -> None:
        """
        Output keeps up with input: the encryptor holds less than a frame,
        the decryptor less than a sealed frame, whatever the stream length.
        """
        frameSize = 64
        plain = os.urandom(frameSize * 50 + 3)
        enc = Encryptor(KEY, frameSize)
        out = b""
        fed = 0
        for piece in split(plain, list(range(0, len(plain), 13))):
            out += enc.feed(piece)
            fed += len(piece)
            self.assertEqual(
                len(out), HEADER_SIZE + (fed // frameSize) * (frameSize + TAG_BYTES)
            )
        out += enc.finish()
        dec = Decryptor(KEY)
        got = b""
        fed = 0
        for piece in split(out, list(range(0, len(out), 29))):
            got += dec.feed(piece)
            fed += len(piece)
            complete = max(0, fed - HEADER_SIZE) // (frameSize + TAG_BYTES)
            self.assertEqual(len(got), complete * frameSize)
        self.assertEqual(got + dec.finish(), plain)

    def test_nonceDiffersPerStream(self) -> None:
        """The same plaintext under the same key never gives the same ciphertext."""
        self.assertNotEqual(encrypt(b"same", 16), encrypt(b"same", 16))

    def test_frameSizeBounds(self) -> None:
        self.assertRaises(ValueError, Encryptor, KEY, 0)
        self.assertRaises(ValueError, Encryptor, KEY, crypto.MAX_FRAME_SIZE + 1)
        self.assertRaises(ValueError, ciphertextSize, -1)

    def test_feedAfterFinish(self) -> None:
        enc = Encryptor(KEY, 16)
        enc.finish()
        self.assertRaises(ValueError, enc.feed, b"x")
        dec = Decryptor(KEY)
        dec.feed(encrypt(b"abc", 16))
        dec.finish()
        self.assertRaises(DecryptionError, dec.feed, b"")
        self.assertRaises(DecryptionError, dec.finish)


class TamperTests(SynchronousTestCase):
    """Every way of altering a stream is refused (SPEC 7: integrity of the stored files)."""

    def assertRefused(self, cipher: bytes, key: bytes = KEY) -> DecryptionError:
        return self.assertRaises(DecryptionError, decrypt, cipher, key)

    def test_everyBitFlip(self) -> None:
        cipher = encrypt(os.urandom(50), 16)
        for i in range(len(cipher)):
            for bit in (0x01, 0x80):
                bad = bytearray(cipher)
                bad[i] ^= bit
                self.assertRefused(bytes(bad))

    def test_everyTruncation(self) -> None:
        for size in (0, 15, 16, 48, 50):
            cipher = encrypt(os.urandom(size), 16)
            for n in range(len(cipher)):
                self.assertRefused(cipher[:n])

    def test_truncatedAtFrameBoundary(self) -> None:
        """A stream cut after a whole frame has no last frame."""
        cipher = encrypt(os.urandom(48), 16)
        header, sealed = frames(cipher, 16)
        self.assertEqual(len(sealed), 4)  # three full frames and an empty last one
        self.assertEqual(len(sealed[-1]), TAG_BYTES)
        error = self.assertRefused(header + b"".join(sealed[:-1]))
        self.assertIn("no last frame", str(error))

    def test_reorderedFrames(self) -> None:
        cipher = encrypt(os.urandom(50), 16)
        header, sealed = frames(cipher, 16)
        sealed[0], sealed[1] = sealed[1], sealed[0]
        self.assertRefused(header + b"".join(sealed))

    def test_droppedFrame(self) -> None:
        cipher = encrypt(os.urandom(50), 16)
        header, sealed = frames(cipher, 16)
        del sealed[1]
        self.assertRefused(header + b"".join(sealed))

    def test_duplicatedFrame(self) -> None:
        cipher = encrypt(os.urandom(50), 16)
        header, sealed = frames(cipher, 16)
        sealed.insert(1, sealed[0])
        self.assertRefused(header + b"".join(sealed))

    def test_lastFrameFlagged(self) -> None:
        """
        The last flag is authenticated: a final frame sealed without it is
        refused, and the same frame sealed with it opens (control).
        """
        header = Encryptor(KEY, 16).header()
        prefix = header[9:17]

        def seal(counter: int, data: bytes, last: bool) -> bytes:
            aad = header + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
            return AESGCM(KEY).encrypt(prefix + counter.to_bytes(4, "big"), data, aad)

        full = seal(0, b"f" * 16, False)
        self.assertEqual(decrypt(header + full + seal(1, b"abc", True)), b"f" * 16 + b"abc")
        self.assertRefused(header + full + seal(1, b"abc", False))
        self.assertRefused(header + seal(0, b"f" * 16, True) + seal(1, b"abc", True))

    def test_trailingData(self) -> None:
        for size in (0, 10, 16, 50):
            cipher = encrypt(os.urandom(size), 16)
            header, sealed = frames(cipher, 16)
            self.assertRefused(cipher + b"\x00")
            self.assertRefused(cipher + sealed[-1])
            self.assertRefused(cipher + os.urandom(16 + TAG_BYTES))
            self.assertRefused(cipher + cipher)

    def test_framesFromAnotherStream(self) -> None:
        """Same key, different nonce prefix: frames cannot be spliced between streams."""
        a = encrypt(os.urandom(50), 16)
        b = encrypt(os.urandom(50), 16)
        headerA, framesA = frames(a, 16)
        _, framesB = frames(b, 16)
        self.assertRefused(headerA + framesA[0] + framesB[1] + b"".join(framesA[2:]))

    def test_wrongKey(self) -> None:
        cipher = encrypt(b"secret attachment", 16)
        error = self.assertRefused(cipher, fileKey("token", "transfer", 1))
        self.assertIn("frame 0", str(error))
        self.assertRefused(cipher, fileKey("other", "transfer", 0))

    def test_badHeader(self) -> None:
        cipher = encrypt(b"x" * 40, 16)
        self.assertIn("magic", str(self.assertRefused(b"XXXX" + cipher[4:])))
        self.assertIn("version", str(self.assertRefused(cipher[:4] + b"\x02" + cipher[5:])))
        # Another frame size changes the framing and the associated data.
        self.assertRefused(cipher[:5] + (32).to_bytes(4, "big") + cipher[9:])

    def test_forgedHugeFrameSize(self) -> None:
        """A header cannot make the decryptor buffer more than MAX_FRAME_SIZE."""
        cipher = encrypt(b"x", 16)
        forged = cipher[:5] + (2**32 - 1).to_bytes(4, "big") + cipher[9:]
        self.assertIn("out of range", str(self.assertRefused(forged)))

    def test_failedStaysFailed(self) -> None:
        cipher = bytearray(encrypt(os.urandom(40), 16))
        cipher[HEADER_SIZE] ^= 1
        dec = Decryptor(KEY)
        self.assertRaises(DecryptionError, dec.feed, bytes(cipher))
        self.assertRaises(DecryptionError, dec.feed, b"")
        self.assertRaises(DecryptionError, dec.finish)


class SizeTests(SynchronousTestCase):
    @given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=2**20))
    def test_inverse(self, size: int, frameSize: int) -> None:
        self.assertEqual(plaintextSize(ciphertextSize(size, frameSize), frameSize), size)

    def test_everyStoredSize(self) -> None:
        """Each stored size is either refused or maps to the one plaintext size that makes it."""
        frameSize = 8
        valid = set()
        for c in range(0, 200):
            try:
                p = plaintextSize(c, frameSize)
            except DecryptionError:
                continue
            self.assertEqual(ciphertextSize(p, frameSize), c)
            valid.add(p)
        self.assertEqual(valid, set(range(len(valid))))
        self.assertRaises(DecryptionError, plaintextSize, HEADER_SIZE + TAG_BYTES - 1, 8)
        self.assertRaises(DecryptionError, plaintextSize, HEADER_SIZE + TAG_BYTES + 8, 8)

    def test_defaultOverhead(self) -> None:
        """64 KiB frames: 16 bytes a frame plus the header, under 0.03% on a large file."""
        size = 100 * 2**20
        overhead = ciphertextSize(size) - size
        self.assertEqual(overhead, HEADER_SIZE + (size // crypto.FRAME_SIZE + 1) * TAG_BYTES)
        self.assertLess(overhead / size, 0.0003)


class TokenTests(SynchronousTestCase):
    def test_tokenFormat(self) -> None:
        """At least 128 bits (SPEC 7); we use 256, URL-safe base64 without padding."""
        tokens = {newToken() for _ in range(2000)}
        self.assertEqual(len(tokens), 2000)
        for token in tokens:
            self.assertRegex(token, r"\A[A-Za-z0-9_-]{43}\Z")
            self.assertEqual(len(base64.urlsafe_b64decode(token + "=")), 32)

    def test_tokenEntropy(self) -> None:
        """Every base64 symbol shows up, each bit position is set about half the time."""
        raw = b"".join(base64.urlsafe_b64decode(newToken() + "=") for _ in range(2000))
        ones = [sum((byte >> bit) & 1 for byte in raw) for bit in range(8)]
        for count in ones:
            # 64,000 samples a bit position: 0.5 +- 2.5% is over 12 sigma wide.
            self.assertTrue(0.475 < count / (len(raw)) < 0.525, ones)
        self.assertEqual(
            set("".join(newToken() for _ in range(200))),
            set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        )

    def test_tokenHash(self) -> None:
        token = newToken()
        digest = tokenHash(token)
        self.assertRegex(digest, r"\A[0-9a-f]{64}\Z")
        self.assertEqual(digest, tokenHash(token))
        self.assertNotEqual(digest, tokenHash(newToken()))
        # Domain-separated: not the bare SHA-256 of the token.
        self.assertNotEqual(digest, hashlib.sha256(token.encode()).hexdigest())
        self.assertNotIn(token, digest)

    def test_transferId(self) -> None:
        ids = {newTransferId() for _ in range(2000)}
        self.assertEqual(len(ids), 2000)
        for tid in ids:
            self.assertRegex(tid, r"\A[a-z2-7]{16}\Z")

    def test_fileKeys(self) -> None:
        """32-byte keys, stable, and different for each file, transfer and token."""
        token = newToken()
        tid = newTransferId()
        key = fileKey(token, tid, 0)
        self.assertEqual(len(key), 32)
        self.assertEqual(key, fileKey(token, tid, 0))
        keys = {fileKey(token, tid, i) for i in range(100)}
        keys |= {fileKey(newToken(), tid, 0) for _ in range(20)}
        keys |= {fileKey(token, newTransferId(), 0) for _ in range(20)}
        self.assertEqual(len(keys), 140)
        self.assertNotIn(hashlib.sha256(token.encode()).digest(), keys)
        self.assertRaises(ValueError, fileKey, token, tid, -1)

    def test_decryptsOnlyWithTheToken(self) -> None:
        """ARCHITECTURE "Decrypt only with the link": the stored hash is no key."""
        token = newToken()
        tid = newTransferId()
        cipher = encrypt(b"payslip", 32, fileKey(token, tid, 0))
        self.assertEqual(decrypt(cipher, fileKey(token, tid, 0)), b"payslip")
        self.assertRaises(DecryptionError, decrypt, cipher, fileKey(tokenHash(token), tid, 0))
        self.assertRaises(
            DecryptionError, decrypt, cipher, bytes.fromhex(tokenHash(token))
        )


class ImportTests(SynchronousTestCase):
    def test_noTwisted(self) -> None:
        """crypto is a sans-I/O module: importing it imports nothing from Twisted."""
        code = (
            "import sys, secudoc_gateway.crypto;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted'))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
        )
        self.assertEqual(out.stdout.strip(), "[]")


class SourceTests(SynchronousTestCase):
    """The random source is a parameter: a fixed one gives the same bytes every run."""

    @staticmethod
    def fixed(n: int) -> bytes:
        return bytes(range(n))

    def test_tokenAndTransferId(self) -> None:
        self.assertEqual(newToken(self.fixed), base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode())
        self.assertEqual(newTransferId(self.fixed), "aaaqeayeaudaocaj")  # base32 of 0..9
        self.assertNotEqual(newToken(), newToken())

    def test_encryptorNoncePrefix(self) -> None:
        """The same key, plaintext and source: the same ciphertext, and it opens."""
        key = fileKey(newToken(), newTransferId(), 0)

        def seal() -> bytes:
            encryptor = Encryptor(key, randomBytes=self.fixed)
            return encryptor.feed(b"data " * 100) + encryptor.finish()

        sealed = seal()
        self.assertEqual(seal(), sealed)
        decryptor = Decryptor(key)
        self.assertEqual(decryptor.feed(sealed) + decryptor.finish(), b"data " * 100)
        random = Encryptor(key)
        self.assertNotEqual(random.feed(b"data " * 100) + random.finish(), sealed)
