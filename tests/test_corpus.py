"""
Every message of the shared real-world corpus through the running
gateway (sent byte for byte with BDAT, relayed into a maildir): no
crash, a final reply of 250, a relayed message that parses, and every
attachment Python's email package finds in the original recoverable
byte for byte, from the relayed message itself or through its link.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
import re
from collections import defaultdict

import treq
from twisted.trial.unittest import TestCase

from secudoc_gateway.testing import DEMO_TENANT, startGateway, writeConfig
from tests.support import (
    CORPUS, asyncTest, corpusPaths, inThread, maildirMessages, sendBDAT, splitEnvelope, storedObjects,
)

LINK = re.compile(r"/t/([A-Za-z0-9_-]{43})")
STATUS = re.compile(r"(protected|passed; reason=[a-z-]+)\Z")


def corpusFiles() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    if CORPUS:
        for path in corpusPaths():
            groups[os.path.basename(path).split("__", 1)[0]].append(path)
    return groups


def payloads(raw: bytes) -> list[bytes]:
    """What Python's email package calls the attachments, decoded."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    found = []
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment" or part.get_filename():
            cte = part.get("content-transfer-encoding")
            if cte is not None and str(cte) != str(cte).strip():
                # email compares the raw value, so "base64 " stays encoded;
                # RFC 2045 allows the blanks, and mail readers decode it.
                part.replace_header("content-transfer-encoding", str(cte).strip())
            payload = part.get_payload(decode=True)
            if payload is not None:
                found.append(payload)
    return found


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CorpusTestsMixin:
    prefix = ""

    @asyncTest
    async def test_corpus(self) -> None:
        files = corpusFiles().get(self.prefix)
        self.assertTrue(files, f"no corpus files for {self.prefix} in {CORPUS}")
        folder = os.path.abspath(self.mktemp())
        gateway = await startGateway(writeConfig(folder, [DEMO_TENANT]))
        self.addCleanup(gateway.stop)
        outbox = os.path.join(folder, "outbox", "example")
        problems = []
        plaintexts: list[tuple[str, bytes]] = []
        for number, path in enumerate(files):
            with open(path, "rb") as f:
                original = f.read()
            before = set(maildirMessages(outbox))
            # A recipient of its own: corpus files that share a Message-ID
            # would otherwise (rightly) be taken for resends of each other.
            code, text = await inThread(sendBDAT, gateway.smtpPort, "alice@example.test",
                                        [f"bob{number}@external.test"], original)
            name = os.path.basename(path)
            if code != 250:
                problems.append(f"{name}: {code} {text!r}")
                continue
            relayed = [m for m in maildirMessages(outbox) if m not in before]
            if len(relayed) != 1:
                problems.append(f"{name}: {len(relayed)} relayed messages")
                continue
            _, _, raw = splitEnvelope(relayed[0])
            recovered = {sha(p) for p in payloads(raw)}
            message = email.message_from_bytes(raw, policy=email.policy.compat32)
            status = message["X-SecuDoc-Status"]
            if message.get_all("X-SecuDoc") != ["1.0"] or not STATUS.match(status or ""):
                problems.append(f"{name}: X-SecuDoc {message.get_all('X-SecuDoc')}, status {status!r}")
            if status == "protected":
                tokens = set()
                for part in message.walk():
                    if part.get_content_type() in ("text/plain", "text/html"):
                        body = part.get_payload(decode=True) or b""
                        tokens.update(LINK.findall(body.decode("utf-8", "replace")))
                if len(tokens) != 1:
                    problems.append(f"{name}: {len(tokens)} links")
                    continue
                [token] = tokens
                n = 0
                while True:
                    response = await treq.get(f"{gateway.webURL}/t/{token}/{n}", persistent=False)
                    content = await response.content()
                    if response.code == 404:
                        break
                    if response.code != 200:
                        problems.append(f"{name}: download {n} answered {response.code}")
                        break
                    recovered.add(sha(content))
                    # An attached message (.eml) carries its own attachments.
                    recovered.update(sha(p) for p in payloads(content))
                    n += 1
            for payload in payloads(original):
                if sha(payload) not in recovered:
                    problems.append(f"{name}: attachment of {len(payload)} bytes not recoverable")
                if len(payload) >= 64:
                    plaintexts.append((name, payload))
        # Nothing in the store is readable without a link: no stored
        # object holds a piece of any attachment's plaintext.
        stored = b"\0".join((await storedObjects(folder)).values())
        for name, payload in plaintexts:
            if any(payload[at:at + 64] in stored for at in (0, len(payload) // 2 - 32, len(payload) - 64)):
                problems.append(f"{name}: plaintext of an attachment found in the store")
        self.assertEqual(problems, [], "\n".join(problems))


def _makeCases() -> None:
    for prefix in corpusFiles():
        cls = type(f"Corpus_{prefix}", (CorpusTestsMixin, TestCase), {"prefix": prefix})
        globals()[cls.__name__] = cls
    if not CORPUS:
        class CorpusMissing(TestCase):
            def test_corpus(self) -> None:
                corpusPaths()  # says why it is skipped

        globals()["CorpusMissing"] = CorpusMissing


_makeCases()
