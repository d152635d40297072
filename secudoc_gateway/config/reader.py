"""
The reader under every configuration file.

Theory of operation: each file is read by a ``Table`` reader that takes
keys out of a parsed TOML table one at a time, checks type and range,
and records a problem ``FILE: key: what is wrong`` instead of raising,
so an operator sees every mistake of every file in one run.  Whatever
is left in a table when the reader is done is an unknown key.

Relative paths, in the main file or in a tenant file, are relative to
the main file's folder and are made absolute here (``resolve``), so
nothing later depends on the working directory.
"""

from __future__ import annotations

import difflib
import enum
import os
import re
import tomllib
import urllib.parse
from typing import Any, Optional, Sequence, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""Control characters: none in a one-line text (host name, header, banner)."""


def _typeName(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)


class Table:
    """
    Takes keys out of one TOML table, recording a problem for each bad
    value and returning the default in its place.
    """

    def __init__(self, file: str, prefix: str, data: dict[str, Any], problems: list[str]) -> None:
        self.file = file
        self.prefix = prefix
        self.data = dict(data)
        self.problems = problems
        self.known: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def problem(self, key: str, what: str) -> None:
        self.problems.append(f"{self.file}: {self.key(key)}: {what}")

    def _take(self, key: str, default: T, required: bool) -> tuple[bool, Any]:
        self.known.add(key)
        if key not in self.data:
            if required:
                self.problem(key, "missing (required)")
            return False, default
        return True, self.data.pop(key)

    def string(self, key: str, default: str = "", required: bool = False, nonEmpty: bool = False) -> str:
        present, value = self._take(key, default, required)
        if not present:
            return default
        if not isinstance(value, str):
            self.problem(key, f"must be a string, not {_typeName(value)}")
            return default
        if nonEmpty and not value:
            self.problem(key, "must not be empty")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        present, value = self._take(key, default, False)
        if present and not isinstance(value, bool):
            self.problem(key, f"must be true or false, not {_typeName(value)}")
            return default
        return value

    def integer(self, key: str, default: int, minimum: int = 1) -> int:
        present, value = self._take(key, default, False)
        if not present:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"must be an integer, not {_typeName(value)}")
            return default
        if value < minimum:
            self.problem(key, f"must be at least {minimum}, not {value}")
            return default
        return value

    def seconds(self, key: str, default: float) -> float:
        present, value = self._take(key, default, False)
        if not present:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(key, f"must be a number of seconds, not {_typeName(value)}")
            return default
        if not value > 0 or value == float("inf"):
            self.problem(key, f"must be a positive number of seconds, not {value}")
            return default
        return value

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        value = self.string(key, default)
        if value not in choices:
            allowed = ", ".join(f'"{c}"' for c in choices)
            self.problem(key, f'must be one of {allowed}, not "{value}"')
            return default
        return value

    def enum(self, key: str, default: E) -> E:
        """One of the members of ``default``'s enum, named by its value."""
        kind = type(default)
        return kind(self.choice(key, default.value, [member.value for member in kind]))

    def strings(
        self,
        key: str,
        default: Sequence[str] = (),
        required: bool = False,
        nonEmpty: bool = False,
    ) -> tuple[str, ...]:
        present, value = self._take(key, tuple(default), required)
        if not present:
            return tuple(default)
        if not isinstance(value, list):
            self.problem(key, f"must be an array of strings, not {_typeName(value)}")
            return tuple(default)
        bad = [v for v in value if not isinstance(v, str)]
        if bad:
            self.problem(key, f"must be an array of strings, has {_typeName(bad[0])}")
            return tuple(default)
        if nonEmpty and not value:
            self.problem(key, "must not be empty")
        return tuple(value)

    def table(self, key: str) -> "Table":
        present, value = self._take(key, {}, False)
        if present and not isinstance(value, dict):
            self.problem(key, f"must be a table, not {_typeName(value)}")
            value = {}
        return Table(self.file, f"{self.key(key)}.", value, self.problems)

    def finish(self) -> None:
        for key in sorted(self.data):
            near = difflib.get_close_matches(key, sorted(self.known), n=1)
            self.problem(key, f'unknown key; did you mean "{near[0]}"?' if near else "unknown key")


def readTOML(file: str, problems: list[str]) -> Optional[dict[str, Any]]:
    try:
        with open(file, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        problems.append(f"{file}: (file): cannot read: {e.strerror or e}")
    except tomllib.TOMLDecodeError as e:
        problems.append(f"{file}: (syntax): {e}")
    except UnicodeDecodeError as e:
        problems.append(f"{file}: (syntax): not UTF-8: {e}")
    return None


def resolve(base: str, path: str) -> str:
    """``path`` made absolute against ``base``, the main file's folder."""
    return os.path.abspath(os.path.join(base, os.path.expanduser(path)))


def checkPEM(table: Table, key: str, path: str, needKey: bool) -> None:
    """
    Check that ``path`` is readable PEM with at least one certificate
    and, when ``needKey``, a private key matching the first certificate.
    Certificates are checked now so a bad file is a start-up error, not
    a failed handshake (and a tempfailed message) later.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        table.problem(key, f"cannot read {path}: {e.strerror or e}")
        return
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        table.problem(key, f"{path} has no PEM certificate")
        return
    if not needKey:
        return
    try:
        privateKey = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        table.problem(key, f"{path}: the private key is encrypted")
        return
    except (ValueError, UnsupportedAlgorithm):
        table.problem(key, f"{path} has no PEM private key")
        return
    publicBytes = serialization.PublicFormat.SubjectPublicKeyInfo
    if certificates[0].public_key().public_bytes(
        serialization.Encoding.DER, publicBytes
    ) != privateKey.public_key().public_bytes(serialization.Encoding.DER, publicBytes):
        table.problem(key, f"{path}: the private key does not match the first certificate")


def httpURL(table: Table, key: str, value: str) -> bool:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        table.problem(key, f'must be an http:// or https:// URL, not "{value}"')
        return False
    if parts.query or parts.fragment:
        table.problem(key, f'must have no query or fragment: "{value}"')
        return False
    try:
        parts.port
    except ValueError:
        table.problem(key, f'has a bad port: "{value}"')
        return False
    return True

