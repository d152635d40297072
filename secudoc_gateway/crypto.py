"""
Tokens, per-file keys and a framed AES-256-GCM stream (SPEC section 7).

Theory of operation
-------------------

A transfer's URL token is the only secret.  The database stores
``tokenHash(token)``; each file's key is ``fileKey(token, transferId,
index)``, HKDF-SHA256 (RFC 5869) bound to the transfer and the file's
position.  Whoever holds the bucket and the database but not a link has
neither the token nor any key.

An attachment can be far larger than memory, so it is sealed in frames
of a fixed plaintext size, each an independent AES-GCM message (NIST SP
800-38D)::

    header = MAGIC (4) | VERSION (1) | frameSize (4, big-endian) | noncePrefix (8)
    frame  = AESGCM(key).encrypt(noncePrefix | counter (4), plaintext,
                                 header | counter (4) | last (1))

Every frame but the last carries exactly ``frameSize`` plaintext bytes;
the last carries fewer (zero when the plaintext is a whole number of
frames, or empty).  A frame's counter is in both its nonce and its
associated data, so a reordered or dropped frame fails to open; the
``last`` flag is authenticated, so a stream cut after a full frame has
no last frame and is refused, and bytes after the last frame make that
frame fail to open.  The header is in every frame's associated data, so
it cannot be altered either.  The 64-bit nonce prefix is random per
stream, so even a key used twice would repeat a nonce only by a
negligible chance.

``Encryptor`` and ``Decryptor`` are fed bytes in pieces of any size and
hold at most about one frame; nothing here does I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from typing import Callable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secudoc_gateway.errors import GatewayError

TOKEN_BYTES = 32
TRANSFER_ID_BYTES = 10  # 80 bits: 16 base32 characters
KEY_BYTES = 32  # AES-256

MAGIC = b"SDGE"
VERSION = 1
FRAME_SIZE = 64 * 1024
MIN_FRAME_SIZE = 1
# Bounds what a (possibly forged) header can make the decryptor buffer.
MAX_FRAME_SIZE = 16 * 1024 * 1024
NONCE_PREFIX_BYTES = 8
TAG_BYTES = 16
MAX_FRAMES = 2**32  # the counter is 4 bytes

_HEADER = struct.Struct(">4sBI8s")
HEADER_SIZE = _HEADER.size
_COUNTER = struct.Struct(">I")

_TOKEN_HASH_PREFIX = b"secudoc-gateway/token-hash/v1\x00"
_HKDF_SALT = b"secudoc-gateway/file-key/v1"
_FORM_KEY_SALT = b"secudoc-gateway/form-key/v1"
_CODE_KEY_SALT = b"secudoc-gateway/code-key/v1"
_SECRET_HASH_PREFIX = b"secudoc-gateway/secret/v1\x00"
GATEWAY_SECRET_BYTES = 32


class DecryptionError(GatewayError):
    """
    The ciphertext cannot be opened: wrong key, altered, reordered,
    truncated, or with bytes after its last frame.
    """


def newToken(randomBytes: Callable[[int], bytes] = os.urandom) -> str:
    """A URL token: 256 random bits, URL-safe base64 without padding (RFC 4648 section 5)."""
    return base64.urlsafe_b64encode(randomBytes(TOKEN_BYTES)).rstrip(b"=").decode("ascii")


def tokenHash(token: str) -> str:
    """
    What the database keys a transfer by.  The token has 256 bits of
    entropy, so a plain (domain-separated) SHA-256 cannot be reversed.
    """
    return hashlib.sha256(_TOKEN_HASH_PREFIX + token.encode("utf-8")).hexdigest()


def newTransferId(randomBytes: Callable[[int], bytes] = os.urandom) -> str:
    """
    A public transfer id for headers and logs: random, independent of the
    token, base32 (RFC 4648 section 6) lower case so it survives any
    case-folding mail system.
    """
    return base64.b32encode(randomBytes(TRANSFER_ID_BYTES)).decode("ascii").lower()


def fileKey(token: str, transferId: str, index: int) -> bytes:
    """
    The AES-256 key of file ``index`` of a transfer (RFC 5869).  The info
    string binds transfer and index, so no two files share a key and a
    file's ciphertext cannot be swapped for another's.
    """
    if index < 0:
        raise ValueError("file index must not be negative")
    tid = transferId.encode("utf-8")
    info = _HKDF_SALT + b"\x00" + struct.pack(">H", len(tid)) + tid + struct.pack(">Q", index)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=_HKDF_SALT, info=info)
    return hkdf.derive(token.encode("utf-8"))


def newGatewaySecret(randomBytes: Callable[[int], bytes] = os.urandom) -> str:
    """The secret every node of a gateway shares (kept in its database), hex."""
    return randomBytes(GATEWAY_SECRET_BYTES).hex()


def formKey(gatewaySecret: str) -> bytes:
    """The key that signs form tokens (CSRF), derived from the gateway's secret (RFC 5869)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=_FORM_KEY_SALT, info=b"csrf")
    return hkdf.derive(bytes.fromhex(gatewaySecret))


def formToken(key: bytes, purpose: str, subject: str, nonce: str) -> str:
    """
    A form's CSRF token: an HMAC over what the form does (``purpose``),
    what it acts on (``subject``: a transfer id, later a portal session)
    and the browser's random ``nonce`` (its cookie).  Each field is
    length-prefixed, so no two triples sign alike.
    """
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for field in (purpose, subject, nonce):
        data = field.encode("utf-8")
        mac.update(struct.pack(">I", len(data)) + data)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


def formTokenValid(key: bytes, purpose: str, subject: str, nonce: str, token: str) -> bool:
    """Whether ``token`` is ours for exactly this purpose, subject and nonce (in constant time)."""
    return bool(nonce) and hmac.compare_digest(formToken(key, purpose, subject, nonce).encode("ascii"),
                                               token.encode("utf-8", "replace"))


def codeHash(token: str, transferId: str, recipient: str, code: str) -> str:
    """The stored form of ``code``: an HMAC under a key only the link holder can derive."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_CODE_KEY_SALT, info=transferId.encode("utf-8"))
    mac = hmac.new(key.derive(token.encode("utf-8")), digestmod=hashlib.sha256)
    mac.update(recipient.encode("utf-8") + b"\x00" + code.encode("ascii", "replace"))
    return mac.hexdigest()


def secretHash(secret: str) -> str:
    """The stored form of a 256-bit secret (a session, a sender's link)."""
    return hashlib.sha256(_SECRET_HASH_PREFIX + secret.encode("utf-8")).hexdigest()


def _checkFrameSize(frameSize: int) -> None:
    if not MIN_FRAME_SIZE <= frameSize <= MAX_FRAME_SIZE:
        raise ValueError(f"frame size must be {MIN_FRAME_SIZE}..{MAX_FRAME_SIZE}, not {frameSize}")


def ciphertextSize(plaintextSize: int, frameSize: int = FRAME_SIZE) -> int:
    """Stored size of a plaintext of ``plaintextSize`` bytes."""
    _checkFrameSize(frameSize)
    if plaintextSize < 0:
        raise ValueError("size must not be negative")
    frames = plaintextSize // frameSize + 1
    return HEADER_SIZE + plaintextSize + frames * TAG_BYTES


def plaintextSize(ciphertextSize: int, frameSize: int = FRAME_SIZE) -> int:
    """
    Plaintext size of a stored object of ``ciphertextSize`` bytes, so a
    download can send ``Content-Length`` before decrypting.  Raises
    ``DecryptionError`` for a size no stream can have.
    """
    _checkFrameSize(frameSize)
    rest = ciphertextSize - HEADER_SIZE - TAG_BYTES
    if rest < 0:
        raise DecryptionError(f"{ciphertextSize} bytes is too short for an encrypted stream")
    full, last = divmod(rest, frameSize + TAG_BYTES)
    if last >= frameSize:
        raise DecryptionError(f"{ciphertextSize} bytes is not a valid encrypted stream size")
    return full * frameSize + last


def frameOffset(frame: int, frameSize: int) -> int:
    """Where frame ``frame``'s ciphertext starts in a stream (a ranged read starts there)."""
    return HEADER_SIZE + frame * (frameSize + TAG_BYTES)


def _aad(header: bytes, counter: int, last: bool) -> bytes:
    return header + _COUNTER.pack(counter) + (b"\x01" if last else b"\x00")


class _Framer:
    """
    Cuts a stream into whole frames of ``size`` bytes.  A partial frame
    waits in one buffer that grows to the frame size once and is then
    reused (no reallocation on the hot path), so a stream shorter than a
    frame (a tiny attachment) never holds a whole frame's buffer.  A
    frame that arrives whole is handed out as a view, never copied.
    Each frame must be used before the next is asked for.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.buffer = bytearray()
        self.fill = 0

    def frames(self, data: bytes) -> Iterator[bytearray | memoryview]:
        size = self.size
        view = memoryview(data)
        end = len(view)
        offset = 0
        if self.fill:
            offset = min(size - self.fill, end)
            self.buffer[self.fill : self.fill + offset] = view[:offset]
            self.fill += offset
            if self.fill < size:
                return
            self.fill = 0
            yield self.buffer
        while end - offset >= size:
            yield view[offset : offset + size]
            offset += size
        if offset < end:
            self.fill = end - offset
            self.buffer[: self.fill] = view[offset:]

    def rest(self) -> memoryview:
        """The partial frame left at the end of the stream."""
        return memoryview(self.buffer)[: self.fill]


class Encryptor:
    """
    Seals a plaintext stream.  ``feed`` returns the header (first call)
    and every whole frame so far; ``finish`` returns the last frame.
    The nonce prefix is drawn from ``randomBytes``.
    """

    def __init__(self, key: bytes, frameSize: int = FRAME_SIZE,
                 randomBytes: Callable[[int], bytes] = os.urandom) -> None:
        _checkFrameSize(frameSize)
        self._aead = AESGCM(key)
        self._frameSize = frameSize
        self._prefix = randomBytes(NONCE_PREFIX_BYTES)
        self._header = _HEADER.pack(MAGIC, VERSION, frameSize, self._prefix)
        self._headerSent = False
        self._framer = _Framer(frameSize)
        self._counter = 0
        self._finished = False

    def header(self) -> bytes:
        """
        The stream header.  Calling it means the caller writes the header
        itself; ``feed`` and ``finish`` then no longer include it.
        """
        self._headerSent = True
        return self._header

    def _seal(self, data: bytes | bytearray | memoryview, last: bool) -> bytes:
        if self._counter >= MAX_FRAMES:
            raise ValueError("stream too long for the frame counter")
        counter = self._counter
        self._counter += 1
        nonce = self._prefix + _COUNTER.pack(counter)
        return self._aead.encrypt(nonce, data, _aad(self._header, counter, last))

    def _start(self) -> list[bytes]:
        if self._finished:
            raise ValueError("encryptor already finished")
        if self._headerSent:
            return []
        self._headerSent = True
        return [self._header]

    def feed(self, data: bytes) -> bytes:
        """Take plaintext; return the ciphertext ready so far."""
        out = self._start()
        out.extend(self._seal(frame, False) for frame in self._framer.frames(data))
        return b"".join(out)

    def finish(self) -> bytes:
        """The last frame (and the header, for an empty stream)."""
        out = self._start()
        out.append(self._seal(self._framer.rest(), True))
        self._finished = True
        self._framer = _Framer(self._frameSize)  # a finished stream holds no buffer
        return b"".join(out)


class Decryptor:
    """
    Opens a stream made by ``Encryptor``.  The frame size comes from the
    header.  ``feed`` returns the plaintext of each whole non-last frame;
    ``finish`` opens the last one.  Any failure raises ``DecryptionError``
    and the decryptor refuses further input.
    """

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._headerBuffer = b""
        self._header: bytes | None = None
        self._prefix = b""
        self._framer: _Framer | None = None  # once the header gives the frame size
        self._counter = 0
        self._done = False

    def _fail(self, message: str) -> DecryptionError:
        self._done = True
        self._framer = None
        return DecryptionError(message)

    def _open(self, data: bytes | bytearray | memoryview, last: bool) -> bytes:
        counter = self._counter
        assert self._header is not None
        nonce = self._prefix + _COUNTER.pack(counter)
        try:
            plain = self._aead.decrypt(nonce, data, _aad(self._header, counter, last))
        except InvalidTag:
            raise self._fail(
                f"frame {counter} does not authenticate (wrong key, altered, or truncated)"
            ) from None
        self._counter += 1
        return plain

    def _readHeader(self, data: bytes) -> bytes | None:
        """Collect the header; return the bytes after it, or None while incomplete."""
        self._headerBuffer += data
        if len(self._headerBuffer) < HEADER_SIZE:
            return None
        header = self._headerBuffer[:HEADER_SIZE]
        rest = self._headerBuffer[HEADER_SIZE:]
        self._headerBuffer = b""
        magic, version, frameSize, prefix = _HEADER.unpack(header)
        if magic != MAGIC:
            raise self._fail("not an encrypted stream (bad magic)")
        if version != VERSION:
            raise self._fail(f"unsupported stream version {version}")
        if not MIN_FRAME_SIZE <= frameSize <= MAX_FRAME_SIZE:
            raise self._fail(f"frame size {frameSize} out of range")
        self._header = header
        self._prefix = prefix
        self._framer = _Framer(frameSize + TAG_BYTES)
        return rest

    def seek(self, header: bytes, position: int) -> tuple[int, int]:
        """
        Open the stream at plaintext byte ``position`` without reading
        what comes before: returns where to read the ciphertext from and
        the plaintext position its first frame starts at (``position``
        rounded down to a frame).  The header, read separately, is still
        checked and bound into every frame.
        """
        if self._header is not None or self._headerBuffer:
            raise ValueError("seek before anything is fed")
        if len(header) != HEADER_SIZE or self._readHeader(header) != b"":
            raise self._fail("truncated: no complete header")
        self._counter = position // self.frameSize
        return frameOffset(self._counter, self.frameSize), self._counter * self.frameSize

    @property
    def frameSize(self) -> int:
        """The plaintext frame size the header gave."""
        if self._framer is None:
            raise ValueError("no header yet")
        return self._framer.size - TAG_BYTES

    def feed(self, data: bytes) -> bytes:
        """Take ciphertext; return the plaintext of every whole frame so far."""
        if self._done:
            raise DecryptionError("decryptor already finished or failed")
        if self._header is None:
            rest = self._readHeader(bytes(data))
            if rest is None:
                return b""
            data = rest
        # A frame of exactly the sealed size is never the last one: the
        # last frame holds less than a whole frame of plaintext.
        assert self._framer is not None
        return b"".join([self._open(frame, False) for frame in self._framer.frames(data)])

    def finish(self) -> bytes:
        """Open the last frame; raise if the stream is cut or has extra bytes."""
        if self._done:
            raise DecryptionError("decryptor already finished or failed")
        if self._header is None:
            raise self._fail("truncated: no complete header")
        assert self._framer is not None
        if self._framer.fill < TAG_BYTES:
            raise self._fail("truncated: no last frame")
        plain = self._open(self._framer.rest(), True)
        self._done = True
        return plain
