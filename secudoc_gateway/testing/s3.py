"""
A real S3 server for the tests: moto in server mode, its own process on
a free port, with signature checking on.

moto lets ``INITIAL_NO_AUTH_ACTION_COUNT`` requests through unsigned;
three bootstrap IAM calls spend them on a user, an inline ``s3:*``
policy and an access key.  From then on every request must carry a
valid SigV4 signature by that key (a wrong secret gets 403
SignatureDoesNotMatch).

``python -m secudoc_gateway.testing.s3 COMMAND...`` runs COMMAND with one server
for the whole run (the Makefile does this), its address and key in the
environment (``ENDPOINT_ENV``, ``KEY_ENV``, ``SECRET_ENV``).  A test
process without them starts its own server on first use.  moto is a
test extra: nothing else in the package imports this module.
"""

from __future__ import annotations

import atexit
import io
import os
import subprocess
import sys
import tempfile
import uuid
from typing import Any, Callable, Optional

import attrs
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from secudoc_gateway.testing.polling import untilBlocking
from secudoc_gateway.testing.ports import accepts, freePort

ENDPOINT_ENV = "SECUDOC_TEST_S3_ENDPOINT"
KEY_ENV = "SECUDOC_TEST_S3_KEY"
SECRET_ENV = "SECUDOC_TEST_S3_SECRET"
STORAGE_ENV = "SECUDOC_TEST_STORAGE"
REGION = "us-east-1"
BOOTSTRAP_CALLS = 3


@attrs.frozen
class S3Server:
    endpoint: str
    key: str
    secret: str

    def client(self, secret: Optional[str] = None):  # -> botocore S3 client
        """A botocore S3 client for checking what the gateway stored (never used by the gateway)."""
        import botocore.session
        from botocore.config import Config

        session = botocore.session.get_session()
        return session.create_client(
            "s3", region_name=REGION, endpoint_url=self.endpoint, aws_access_key_id=self.key,
            aws_secret_access_key=secret or self.secret,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def newBucket(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object in ``bucket``, by key."""
        client = self.client()
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return found

    def uploads(self, bucket: str) -> list[dict]:
        """Multipart uploads in progress in ``bucket``."""
        return self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def testStorage(prefix: str = "") -> dict:
    """The ``[storage]`` table of a test config on the run's server, in a bucket of its own."""
    server = sharedServer()
    return {"backend": "s3", "endpoint": server.endpoint, "bucket": server.newBucket(), "region": REGION,
            "access_key_id_env": KEY_ENV, "secret_access_key_env": SECRET_ENV, "prefix": prefix,
            "part_size": 5 * 1024 * 1024}


class MotoProcess:
    """One moto server process; ``stop`` ends it (a test may stop its own to make the store go down)."""

    def __init__(self, port: Optional[int] = None) -> None:
        self.port = port or freePort()
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(BOOTSTRAP_CALLS), MOTO_PORT=str(self.port))
        self.log = tempfile.TemporaryFile()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._waitUntilListening()

    def _waitUntilListening(self, timeout: float = 60.0) -> None:
        def log() -> str:
            self.log.seek(0)
            return self.log.read().decode(errors="replace")

        untilBlocking(lambda: accepts(self.port), "moto to listen", timeout, process=self.popen, context=log)

    def bootstrap(self) -> S3Server:
        """The three unsigned IAM calls: a user, its s3:* policy, its access key."""
        import boto3

        iam = boto3.client("iam", region_name=REGION, endpoint_url=self.endpoint,
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="gateway")
        iam.put_user_policy(UserName="gateway", PolicyName="s3", PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'))
        key = iam.create_access_key(UserName="gateway")["AccessKey"]
        return S3Server(self.endpoint, key["AccessKeyId"], key["SecretAccessKey"])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class FaultProxy:
    """
    A thin HTTP proxy in front of the S3 server for the faults moto cannot
    make: an answer of our choice to one matching request, or the server
    going down (its port closed, its connections cut).  Every request is
    passed on byte for byte, Host header included, so the signature the
    gateway made is the one the server checks.  Runs in the test's reactor.
    """

    def __init__(self, target: str, reactor: Any, contextFactory: Any = None) -> None:
        self.target = target
        self.requests: list[tuple[str, str]] = []
        self.headers: list[Headers] = []  # of each request, in the same order
        self.faults: list[tuple[Callable[[str, str], bool], int, bytes]] = []
        self.watches: list[tuple[Callable[[str, str], bool], Deferred]] = []
        self.downOn: Optional[Callable[[str, str], bool]] = None
        self._reactor = reactor
        self._agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        self._connections: list[Any] = []
        site = Site(_ProxyResource(self))
        build = site.buildProtocol

        def buildProtocol(address: Any) -> Any:
            protocol = build(address)
            self._connections.append(protocol)
            return protocol

        site.buildProtocol = buildProtocol  # type: ignore[method-assign]
        if contextFactory is None:
            self._port = reactor.listenTCP(0, site, interface="127.0.0.1")
        else:
            self._port = reactor.listenSSL(0, site, contextFactory, interface="127.0.0.1")
        self.port = self._port.getHost().port

    def fail(self, match: Callable[[str, str], bool], code: int = 500, body: bytes = b"") -> None:
        """Answer the next request ``match(method, uri)`` accepts with ``code`` and ``body``, once."""
        self.faults.append((match, code, body))

    def seen(self, match: Callable[[str, str], bool]) -> Deferred:
        """Fires when a request ``match(method, uri)`` accepts arrives."""
        d: Deferred = Deferred()
        self.watches.append((match, d))
        return d

    def down(self) -> Any:
        """The server goes away: nothing listens any more, open connections are cut."""
        for protocol in self._connections:
            transport = getattr(protocol, "transport", None) or getattr(protocol, "_channel", protocol).transport
            if transport is not None:
                transport.abortConnection()
        return self._port.stopListening()

    def answer(self, request: Any) -> Any:
        method, uri = request.method.decode(), request.uri.decode()
        self.requests.append((method, uri))
        self.headers.append(request.requestHeaders.copy())
        for watch in [w for w in self.watches if w[0](method, uri)]:
            self.watches.remove(watch)
            watch[1].callback((method, uri))
        if self.downOn is not None and self.downOn(method, uri):
            self.down()
            return NOT_DONE_YET
        for i, (match, code, body) in enumerate(self.faults):
            if match(method, uri):
                del self.faults[i]
                request.setResponseCode(code)
                request.setHeader(b"content-type", b"application/xml")
                return body
        ensureDeferred(self._forward(request)).addErrback(lambda f: request.transport.abortConnection())
        return NOT_DONE_YET

    async def _forward(self, request: Any) -> None:
        headers = Headers({name: values for name, values in request.requestHeaders.getAllRawHeaders()
                           if name.lower() not in (b"content-length", b"connection")})
        content = request.content.read()
        producer = FileBodyProducer(io.BytesIO(content)) if content else None
        response = await self._agent.request(request.method, (self.target + request.uri.decode()).encode(),
                                             headers, producer)
        body = await readBody(response) if request.method != b"HEAD" else b""
        request.setResponseCode(response.code)
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() not in (b"transfer-encoding", b"connection", b"date", b"server"):
                request.responseHeaders.setRawHeaders(name, values)
        if request.method != b"HEAD":
            request.responseHeaders.setRawHeaders(b"content-length", [str(len(body)).encode()])
            request.write(body)
        request.finish()


class _ProxyResource(Resource):
    isLeaf = True

    def __init__(self, proxy: FaultProxy) -> None:
        super().__init__()
        self.proxy = proxy

    def render(self, request: Any) -> Any:
        return self.proxy.answer(request)


_shared: Optional[S3Server] = None


def sharedServer() -> S3Server:
    """The run's server (from the environment), else one started for this process."""
    global _shared
    if _shared is None:
        if os.environ.get(ENDPOINT_ENV):
            _shared = S3Server(os.environ[ENDPOINT_ENV], os.environ[KEY_ENV], os.environ[SECRET_ENV])
        else:
            process = MotoProcess()
            atexit.register(process.stop)
            _shared = process.bootstrap()
            os.environ.update({ENDPOINT_ENV: _shared.endpoint, KEY_ENV: _shared.key, SECRET_ENV: _shared.secret})
    return _shared


def main(argv: list[str]) -> int:
    """Run ``argv`` with one moto server for all of it."""
    process = MotoProcess()
    try:
        server = process.bootstrap()
        env = dict(os.environ, **{ENDPOINT_ENV: server.endpoint, KEY_ENV: server.key, SECRET_ENV: server.secret})
        return subprocess.call(argv, env=env)
    finally:
        process.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
