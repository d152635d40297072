"""Shared by the end-to-end tests: coroutine tests and blocking clients in threads."""

from __future__ import annotations

import email
import email.message
import email.policy
import functools
import os
import smtplib
import ssl
from typing import Any, Callable, Coroutine, Optional

from twisted.internet import defer, threads
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.mime.facts import HeaderFacts, headerFacts
from secudoc_gateway.testing.polling import until, untilBlocking  # noqa: F401 (the tests' one way to wait)
from secudoc_gateway.mime.headers import Headers


def asyncTest(f: Callable[..., Coroutine]) -> Callable[..., defer.Deferred]:
    """Let trial run an ``async def`` test method."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> defer.Deferred:
        return defer.ensureDeferred(f(*args, **kwargs))

    return wrapper


def facts(*pairs: tuple[str, str]) -> HeaderFacts:
    """What policy reads from a top header block of these fields."""
    block = b"".join(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape") for name, value in pairs)
    return headerFacts(Headers.fromBlock(block))


class _HeadersReadOnce(email.policy.EmailPolicy):
    """
    ``email.policy.default``, each distinct header parsed once: Python's
    parser asks for a part's Content-Type several times and parses it
    anew each time, which was most of the corpus tests' time.  Header
    objects are immutable strings, so sharing them changes no result.
    """

    @functools.lru_cache(maxsize=16384)
    def header_fetch_parse(self, name: str, value: str) -> Any:
        return super().header_fetch_parse(name, value)


_READ_ONCE = _HeadersReadOnce()


def pythonEmail(raw: bytes) -> email.message.EmailMessage:
    """``raw`` as Python's email reads it with ``policy.default`` (the reference the tests compare with)."""
    return email.message_from_bytes(raw, policy=_READ_ONCE)  # type: ignore[return-value]


def withAttachments(*files: tuple[str, bytes], subject: str = "Files", messageId: Optional[str] = None,
                    sender: str = "alice@example.test") -> bytes:
    """A message to bob@external.test with ``files`` attached (application/octet-stream), as bytes."""
    message = email.message.EmailMessage()
    message["From"] = sender
    message["To"] = "bob@external.test"
    message["Subject"] = subject
    if messageId is not None:
        message["Message-ID"] = messageId
    message.set_content("See attached.\n")
    for name, data in files:
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return message.as_bytes()


def inThread(f: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred:
    return threads.deferToThread(f, *args, **kwargs)


def sendMail(
    port: int,
    sender: str,
    recipients: list[str],
    message: bytes,
    startTLS: bool = False,
    caFile: Optional[str] = None,
    timeout: float = 30,
) -> tuple[int, bytes]:
    """
    Send with Python's smtplib (blocking: run it with ``inThread``);
    returns the final reply to the data, or the refusal of an earlier
    command.
    """
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as client:
        client.ehlo("client.test")
        if startTLS:
            context = ssl.create_default_context(cafile=caFile)
            context.check_hostname = False if caFile is None else True
            if caFile is None:
                context.verify_mode = ssl.CERT_NONE
            client.starttls(context=context)
            client.ehlo("client.test")
        try:
            code, text = client.mail(sender)
            if code != 250:
                return code, text
            for r in recipients:
                code, text = client.rcpt(r)
                if code not in (250, 251):
                    return code, text
            return client.data(message)
        except smtplib.SMTPResponseException as e:
            return e.smtp_code, e.smtp_error


def storageOf(folder: str) -> dict:
    """The ``[storage]`` table of the config ``writeConfig`` wrote in ``folder``."""
    import tomllib

    with open(os.path.join(folder, "gateway.toml"), "rb") as f:
        return tomllib.load(f)["storage"]


async def storedObjects(folder: str) -> dict[str, bytes]:
    """
    Every object the gateway configured in ``folder`` stores, by key:
    what is really in its folder or bucket.
    """
    storage = storageOf(folder)
    if storage.get("backend") == "s3":
        from secudoc_gateway.testing.s3 import sharedServer

        return await threads.deferToThread(sharedServer().objects, storage["bucket"])
    root = os.path.join(folder, "objects")
    found = {}
    for base, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(base, name), "rb") as f:
                found[os.path.relpath(os.path.join(base, name), root)] = f.read()
    return found


async def deleteObjects(folder: str) -> None:
    """Storage loses every object (or an operator's cleanup went wrong)."""
    storage = storageOf(folder)
    if storage.get("backend") == "s3":
        from secudoc_gateway.testing.s3 import sharedServer

        def delete() -> None:
            client = sharedServer().client()
            for key in sharedServer().objects(storage["bucket"]):
                client.delete_object(Bucket=storage["bucket"], Key=key)

        await threads.deferToThread(delete)
        return
    for base, _, names in os.walk(os.path.join(folder, "objects")):
        for name in names:
            os.unlink(os.path.join(base, name))


async def breakStorage(folder: str) -> None:
    """
    The store goes away under the running gateway: the objects folder
    becomes a file (fs), the bucket is deleted (s3).
    """
    storage = storageOf(folder)
    if storage.get("backend") == "s3":
        from secudoc_gateway.testing.s3 import sharedServer

        await deleteObjects(folder)
        await threads.deferToThread(sharedServer().client().delete_bucket, Bucket=storage["bucket"])
        return
    objects = os.path.join(folder, "objects")
    os.rename(objects, objects + ".gone")
    with open(objects, "w") as f:
        f.write("not a folder")


def databaseRows(config: Any, sql: str, params: tuple = ()) -> list[tuple]:
    """
    Rows of one statement (``?`` placeholders), run straight on the
    database of ``config`` (a ``DatabaseConfig``), SQLite or PostgreSQL:
    what a test checks the gateway wrote.  Blocking, and short.
    """
    from secudoc_gateway.dialect import POSTGRESQL

    if config.kind == "sqlite":
        import sqlite3

        with sqlite3.connect(config.url[len("sqlite:"):]) as connection:
            rows = connection.execute(sql, params).fetchall()
        connection.close()
        return rows
    import psycopg

    password = os.environ[config.password_env] if config.password_env else None
    with psycopg.connect(config.url, password=password, autocommit=True) as connection:
        cursor = connection.execute(POSTGRESQL.statement(sql), params)
        return cursor.fetchall() if cursor.description else []


def maildirMessages(folder: str) -> list[bytes]:
    new = os.path.join(folder, "new")
    if not os.path.isdir(new):
        return []
    out = []
    for name in sorted(os.listdir(new)):
        with open(os.path.join(new, name), "rb") as f:
            out.append(f.read())
    return out


def splitEnvelope(stored: bytes) -> tuple[str, list[str], bytes]:
    """A maildir file's Return-Path, X-Envelope-To lines, and the message after them."""
    sender = ""
    recipients = []
    rest = stored
    while True:
        line, sep, after = rest.partition(b"\n")
        text = line.rstrip(b"\r").decode("utf-8")
        if text.startswith("Return-Path: "):
            sender = text[len("Return-Path: "):].strip("<>")
        elif text.startswith("X-Envelope-To: "):
            recipients.append(text[len("X-Envelope-To: "):])
        else:
            return sender, recipients, rest
        rest = after


def sendBDAT(port: int, sender: str, recipients: list[str], message: bytes,
             chunkSize: int = 1 << 20, timeout: float = 60) -> tuple[int, bytes]:
    """
    Send ``message`` byte for byte with BDAT (RFC 3030): no dot-stuffing,
    no line-ending repair, so the gateway sees exactly these bytes.
    Blocking: run it with ``inThread``.
    """
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        reader = s.makefile("rb")

        def reply() -> tuple[int, bytes]:
            lines = []
            while True:
                line = reader.readline()
                lines.append(line[4:].rstrip(b"\r\n"))
                if line[3:4] != b"-":
                    return int(line[:3]), b"\n".join(lines)

        reply()
        s.sendall(b"EHLO client.test\r\n")
        reply()
        s.sendall(f"MAIL FROM:<{sender}>\r\n".encode())
        code, text = reply()
        if code != 250:
            return code, text
        for r in recipients:
            s.sendall(f"RCPT TO:<{r}>\r\n".encode())
            code, text = reply()
            if code != 250:
                return code, text
        chunks = [message[i:i + chunkSize] for i in range(0, len(message), chunkSize)] or [b""]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            s.sendall(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
            code, text = reply()
            if not last and code != 250:
                return code, text
        s.sendall(b"QUIT\r\n")
        return code, text


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS_CANDIDATES = [os.environ.get("SECUDOC_CORPUS", ""), os.path.join(_ROOT, "..", "shared", "corpus"),
                     "/work/shared/corpus"]
CORPUS = next((c for c in CORPUS_CANDIDATES if c and os.path.isdir(c)), "")
"""
The shared real-world corpus: test data beside the checkout, never
committed here (its SOURCES.md), or wherever SECUDOC_CORPUS says.
"""


def corpusPaths() -> list[str]:
    """Every corpus message; SkipTest, saying where it looked, when there is no corpus."""
    from twisted.trial.unittest import SkipTest

    if not CORPUS:
        raise SkipTest(f"the shared corpus is not beside this checkout (looked in {CORPUS_CANDIDATES})")
    return sorted(os.path.join(CORPUS, name) for name in os.listdir(CORPUS) if name.endswith(".eml"))


class Browser:
    """
    A web client that keeps its cookies like a browser (one per test
    "browser"), over treq: enough to walk forms end to end.
    """

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}
        self.setCookies: list[str] = []
        self.form = ""

    async def request(self, method: str, path: str, form: Optional[dict[str, str]] = None,
                      headers: Optional[dict[str, str]] = None) -> tuple[int, bytes, Any]:
        import urllib.parse

        from treq.client import HTTPClient
        from twisted.internet import reactor
        from twisted.web.client import Agent, HTTPConnectionPool

        sent = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        data = None
        if form is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
            sent["Origin"] = self.base
            data = urllib.parse.urlencode(form).encode("utf-8")
        sent.update(headers or {})
        # A plain agent: no content decoding, so Content-Length is what the server sent.
        client = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        response = await client.request(method, self.base + path, headers={k: [v] for k, v in sent.items()},
                                        data=data, allow_redirects=False)
        for line in response.headers.getRawHeaders("set-cookie", []):
            self.setCookies.append(line)
            name, _, rest = line.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        body = await response.content()
        import re

        found = re.search(rb'name="csrf" value="([^"]*)"', body)
        if found:
            self.form = found.group(1).decode("ascii")
        return response.code, body, response

    def csrf(self) -> str:
        """The CSRF field of the last page that had a form (its cookie travels with ``cookies``)."""
        return self.form


class TwoNodes(SynchronousTestCase):
    """
    Nodes A and B, two real gateway processes: one config each, the same
    database, storage folder and relay outbox.
    """

    def startNodes(self, database: dict, tenants: Optional[list[dict[str, Any]]] = None) -> None:
        from secudoc_gateway.testing import GatewayProcess, writeConfig
        from secudoc_gateway.testing.ports import freePort

        self.folder = os.path.abspath(self.mktemp())
        self.database = database
        # Every listener on a port picked here: the nodes start at once, and
        # one's "tcp:0" could be given a port the other is about to take.
        ports = [freePort() for _ in range(6)]
        pathA = writeConfig(self.folder, tenants, smtp={"listen": [f"tcp:{ports[0]}:interface=127.0.0.1"]},
                            web={"listen": [f"tcp:{ports[1]}:interface=127.0.0.1"]},
                            metrics={"listen": [f"tcp:{ports[4]}:interface=127.0.0.1"]}, database=database)
        pathB = os.path.join(self.folder, "gateway-b.toml")
        with open(pathA) as f, open(pathB, "w") as g:
            config = f.read()
            for a, b in ((0, 2), (1, 3), (4, 5)):
                config = config.replace(f"tcp:{ports[a]}:", f"tcp:{ports[b]}:")
            g.write(config)
        self.a = GatewayProcess(pathA, ports[0], ports[1])
        self.b = GatewayProcess(pathB, ports[2], ports[3])
        for node in (self.a, self.b):  # both start at once
            self.addCleanup(lambda node=node: node.process is None or node.stop())
            node.launch()
        for node in (self.a, self.b):
            node.ready()

    def relayed(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(splitEnvelope(m)[2], policy=email.policy.default)
                for m in maildirMessages(os.path.join(self.folder, "outbox", "example"))]

    def rows(self, sql: str) -> list[tuple]:
        from secudoc_gateway.config import DatabaseConfig

        return databaseRows(DatabaseConfig(**self.database), sql)
