"""
Tests for secudoc_gateway.config: defaults, path resolution, and one
test per kind of problem, each checked by its exact message.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from typing import Any, Optional

import secudoc_gateway
from secudoc_gateway import devcert
from secudoc_gateway.config import (
    EXCHANGE_ONLINE_NETWORKS,
    Config,
    OnMalware,
    OnScanError,
    PortalConfig,
    PortalLogin,
    ScanConfig,
    SMTPConfig,
    Tenant,
    loadConfig,
    loadTenants,
    loadUsableConfig,
    reloadTenants,
)
from secudoc_gateway.errors import ConfigError
from twisted.trial.unittest import SynchronousTestCase

GUID = "72F988BF-86F1-41AF-91AB-2D7CD011DB47"

MINIMAL_TENANT: dict[str, Any] = {
    "id": "acme",
    "domains": ["acme.test"],
    "relay": "maildir:../../var/outbox/acme",  # relative to etc/tenants/
    "facility_sender": "noreply@acme.test",
}


def toml(values: dict[str, Any]) -> str:
    """A TOML text for flat keys and one level of tables."""
    lines = []
    tables = []
    for key, value in values.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    for name, table in tables:
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


class Tree:
    """
    A config tree in a temporary folder, laid out like the repository:
    ``etc/gateway.toml``, ``etc/tenants/*.toml``, ``var/tls/gateway.pem``.
    """

    def __init__(self, root: str, certificate: bool = True) -> None:
        self.root = root
        self.etc = os.path.join(root, "etc")
        self.tenants = os.path.join(self.etc, "tenants")
        os.makedirs(self.tenants)
        self.main = os.path.join(self.etc, "gateway.toml")
        self.writeMain("")
        if certificate:
            devcert.issue(None, "mailproxy.localhost").writeTo(os.path.join(root, "var", "tls", "gateway.pem"))

    def writeMain(self, text: str | dict[str, Any]) -> str:
        return self.write(self.main, text)

    def writeTenant(self, name: str, text: str | dict[str, Any]) -> str:
        return self.write(os.path.join(self.tenants, name), text)

    def write(self, path: str, text: str | dict[str, Any], binary: Optional[bytes] = None) -> str:
        if isinstance(text, dict):
            text = toml(text)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(binary if binary is not None else text.encode("utf-8"))
        return path

    def path(self, *parts: str) -> str:
        return os.path.abspath(os.path.join(self.root, *parts))


class ConfigTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.tree = Tree(self.mktemp())

    def problems(self, path: Optional[str] = None) -> list[str]:
        exc = self.assertRaises(ConfigError, loadConfig, path or self.tree.main)
        self.assertEqual(str(exc), "\n".join(exc.problems))
        return exc.problems

    def tenantProblems(self, **keys: Any) -> list[str]:
        """Problems of one tenant file: MINIMAL_TENANT with ``keys`` over it."""
        values = dict(MINIMAL_TENANT)
        values.update(keys)
        self.tenantFile = self.tree.writeTenant("acme.toml", values)
        return self.problems()

    def loadTenant(self, **keys: Any) -> Tenant:
        values = dict(MINIMAL_TENANT)
        values.update(keys)
        self.tree.writeTenant("acme.toml", values)
        (tenant,) = loadConfig(self.tree.main).tenants
        return tenant


class DefaultsTests(ConfigTestCase):
    def test_emptyMainFile(self) -> None:
        """
        An empty main file is the embedded defaults, paths relative to
        the main file's folder, made absolute.
        """
        config = loadConfig(self.tree.main)
        self.assertEqual(
            config,
            Config(
                path=os.path.abspath(self.tree.main),
                smtp=SMTPConfig(tls_certificate=self.tree.path("var", "tls", "gateway.pem")),
                web=config.web.__class__(),
                storage=config.storage.__class__(path=self.tree.path("var", "objects")),
                database=config.database.__class__("sqlite:" + self.tree.path("var", "gateway.sqlite3")),
                tenants=(),
                tenants_path=self.tree.path("etc", "tenants"),
                log=config.log.__class__(),
            ),
        )
        self.assertEqual(config.smtp.listen, ("tcp:2525:interface=127.0.0.1",))
        self.assertEqual(config.smtp.max_message_size, 157286400)
        self.assertEqual(config.smtp.command_timeout, 300)
        self.assertEqual(config.smtp.min_data_rate, 4096)
        self.assertEqual(round(config.smtp.longestTransaction / 3600), 12)
        self.assertEqual(config.web.public_url, "http://127.0.0.1:8080")
        self.assertEqual(config.web.listen, ("tcp:8080:interface=127.0.0.1",))
        self.assertEqual(config.storage.backend, "fs")
        self.assertEqual(config.database.kind, "sqlite")
        self.assertEqual(config.database.url, "sqlite:" + self.tree.path("var", "gateway.sqlite3"))
        self.assertEqual((config.log.format, config.log.path), ("text", "-"))

    def test_tenantDefaults(self) -> None:
        """A tenant file with only the required keys gets every default."""
        tenant = self.loadTenant()
        self.assertEqual(
            tenant,
            Tenant(
                id="acme",
                domains=("acme.test",),
                relay="maildir:" + self.tree.path("var", "outbox", "acme"),
                facility_sender="noreply@acme.test",
                networks=(ipaddress.ip_network("127.0.0.0/8"),),
                source=os.path.join(self.tree.tenants, "acme.toml"),
            ),
        )
        self.assertEqual(tenant.allowed_sources, ("127.0.0.0/8",))
        self.assertEqual(tenant.users, ())
        self.assertEqual(
            (tenant.mode, tenant.content_mode, tenant.auto_create_users, tenant.unknown_sender),
            ("opt-out", "link", "no", "pass"),
        )
        self.assertEqual((tenant.language, tenant.on_error), ("nl", "tempfail"))
        self.assertEqual((tenant.min_attachment_size, tenant.link_expiry_days), (1024, 14))
        self.assertTrue(tenant.relay_require_tls)
        self.assertFalse(tenant.exchange_online)
        self.assertEqual(tenant.relay, "maildir:" + self.tree.path("var", "outbox", "acme"))

    def test_repositoryConfig(self) -> None:
        """
        The repository's own etc/ loads once the development certificate
        exists (made here in a copy, not in the repository's var/).
        """
        repo = os.path.dirname(os.path.dirname(os.path.abspath(secudoc_gateway.__file__)))
        root = self.mktemp()
        shutil.copytree(os.path.join(repo, "etc"), os.path.join(root, "etc"))
        main = os.path.join(root, "etc", "secudoc-gateway.toml")
        self.assertIn("smtp.tls_certificate: cannot read", self.assertRaises(ConfigError, loadConfig, main).problems[0])
        devcert.ensureDevCertificate(os.path.join(root, "var", "tls", "gateway.pem"))
        config = loadConfig(main)
        absRoot = os.path.abspath(root)
        self.assertEqual(config.smtp.tls_certificate, os.path.join(absRoot, "var", "tls", "gateway.pem"))
        self.assertEqual(config.storage.path, os.path.join(absRoot, "var", "objects"))
        (tenant,) = config.tenants
        self.assertEqual(tenant.id, "example")
        self.assertEqual(tenant.domains, ("example.test",))
        self.assertEqual(tenant.relay, "maildir:" + os.path.join(absRoot, "var", "outbox", "example"))
        self.assertEqual(tenant.users, ("*@example.test",))
        self.assertTrue(tenant.allowsSource("127.0.0.1"))


class PathTests(ConfigTestCase):
    def test_relativePaths(self) -> None:
        """
        Every relative path is relative to the folder of the file it is
        in, wherever the process runs: the main file's folder for the
        main file, a tenant file's folder for that tenant file.
        """
        ca = devcert.makeCA()
        tenants = os.path.join(self.tree.root, "tenants.d")
        devcert.issue(None, "gw").writeTo(os.path.join(self.tree.etc, "certs", "gw.pem"))
        devcert.issue(ca, "secudoc.acme.test", client=True).writeTo(os.path.join(tenants, "certs", "client.pem"))
        self.tree.write(os.path.join(tenants, "certs", "ca.pem"), "", binary=ca.certificatePEM())
        self.tree.writeMain(
            {
                "smtp": {"tls_certificate": "certs/gw.pem"},
                "storage": {"path": "data/objects"},
                "database": {"url": "sqlite:data/db.sqlite3"},
                "tenants": {"path": "../tenants.d"},
                "log": {"path": "../log/gateway.log"},
            }
        )
        os.rmdir(self.tree.tenants)
        tenant = dict(MINIMAL_TENANT)
        tenant.update(
            relay="maildir:outbox",
            relay_tls_certificate="certs/client.pem",
            relay_ca_file="certs/ca.pem",
        )
        self.tree.write(os.path.join(self.tree.root, "tenants.d", "acme.toml"), tenant)
        # The main file is given relative to the working directory, which
        # is not its folder.
        self.assertFalse(os.path.isabs(self.tree.main))
        config = loadConfig(self.tree.main)
        self.assertEqual(config.path, self.tree.path("etc", "gateway.toml"))
        self.assertEqual(config.smtp.tls_certificate, self.tree.path("etc", "certs", "gw.pem"))
        self.assertEqual(config.storage.path, self.tree.path("etc", "data", "objects"))
        self.assertEqual(config.database.url, "sqlite:" + self.tree.path("etc", "data", "db.sqlite3"))
        self.assertEqual(config.tenants_path, self.tree.path("tenants.d"))
        self.assertEqual(config.log.path, self.tree.path("log", "gateway.log"))
        (acme,) = config.tenants
        self.assertEqual(acme.relay, "maildir:" + self.tree.path("tenants.d", "outbox"))
        self.assertEqual(acme.relay_tls_certificate, self.tree.path("tenants.d", "certs", "client.pem"))
        self.assertEqual(acme.relay_ca_file, self.tree.path("tenants.d", "certs", "ca.pem"))
        for path in (config.path, config.smtp.tls_certificate, config.storage.path, config.tenants_path):
            self.assertTrue(os.path.isabs(path), path)

    def test_absolutePaths(self) -> None:
        """Absolute paths are kept as they are."""
        pem = self.tree.path("var", "tls", "gateway.pem")
        objects = self.tree.path("elsewhere", "objects")
        self.tree.writeMain(
            {
                "smtp": {"tls_certificate": pem},
                "storage": {"path": objects},
                "database": {"url": "sqlite:/var/lib/secudoc/db.sqlite3"},
                "tenants": {"path": self.tree.path("etc", "tenants")},
            }
        )
        config = loadConfig(self.tree.main)
        self.assertEqual(config.smtp.tls_certificate, pem)
        self.assertEqual(config.storage.path, objects)
        self.assertEqual(config.database.url, "sqlite:/var/lib/secudoc/db.sqlite3")

    def test_tenantFilesNamedFromGivenPath(self) -> None:
        """
        Tenant files are named in problems by joining the tenants folder
        to the main file's path as given, so messages read like the
        command line.
        """
        problems = self.tenantProblems(mode="sometimes")
        expected = os.path.join(os.path.dirname(self.tree.main), "tenants", "acme.toml")
        self.assertFalse(os.path.isabs(expected))
        self.assertEqual(problems, [f'{expected}: mode: must be one of "opt-out", "opt-in", not "sometimes"'])

    def test_onlyTOMLFilesSorted(self) -> None:
        """Every *.toml in the tenants folder is read, sorted; others are ignored."""
        for name, tenantId in (("b.toml", "b"), ("a.toml", "a"), ("c.toml", "c")):
            values = dict(MINIMAL_TENANT, id=tenantId, domains=[f"{tenantId}.test"])
            self.tree.writeTenant(name, values)
        self.tree.writeTenant("README", "not toml at all [")
        self.tree.writeTenant("a.toml.orig", "not toml at all [")
        config = loadConfig(self.tree.main)
        self.assertEqual([t.id for t in config.tenants], ["a", "b", "c"])

    def test_tenantsFolderMissing(self) -> None:
        self.tree.writeMain({"tenants": {"path": "nowhere"}})
        self.assertEqual(
            self.problems(),
            [f"{self.tree.main}: tenants.path: {self.tree.path('etc', 'nowhere')} is not a folder"],
        )


class MainFileProblemTests(ConfigTestCase):
    def test_missingFile(self) -> None:
        missing = os.path.join(self.tree.etc, "absent.toml")
        self.assertEqual(self.problems(missing), [f"{missing}: (file): cannot read: No such file or directory"])

    def test_syntaxError(self) -> None:
        self.tree.writeMain("[smtp]\nmax_recipients = = 3\n")
        (problem,) = self.problems()
        self.assertTrue(problem.startswith(f"{self.tree.main}: (syntax): "), problem)
        self.assertIn("line 2", problem)

    def test_notUTF8(self) -> None:
        self.tree.write(self.tree.main, "", binary=b'[smtp]\nhostname = "\xff"\n')
        (problem,) = self.problems()
        self.assertTrue(problem.startswith(f"{self.tree.main}: (syntax): "), problem)

    def test_unknownKeys(self) -> None:
        """Unknown keys and tables, dotted from the top."""
        self.tree.writeMain({"verbose": True, "smtp": {"max_recipient": 5}, "queue": {"path": "x"}})
        m = self.tree.main
        self.assertEqual(
            self.problems(),
            [f"{m}: queue: unknown key", f"{m}: verbose: unknown key",
             f'{m}: smtp.max_recipient: unknown key; did you mean "max_recipients"?'],
        )

    def test_wrongTypes(self) -> None:
        """A bool is not an int, an int not a string, a string not an array."""
        self.tree.writeMain(
            {
                "smtp": {
                    "max_recipients": True,
                    "hostname": 5,
                    "require_tls": "yes",
                    "listen": "tcp:2525",
                    "command_timeout": "5m",
                    "max_message_size": 1.5,
                },
                "web": {"listen": ["tcp:8080", 8081]},
                "log": "stdout",
            }
        )
        m = self.tree.main
        self.assertEqual(
            self.problems(),
            [
                f"{m}: log: must be a table, not a string",
                f"{m}: smtp.listen: must be an array of strings, not a string",
                f"{m}: smtp.hostname: must be a string, not an integer",
                f"{m}: smtp.require_tls: must be true or false, not a string",
                f"{m}: smtp.max_message_size: must be an integer, not a float",
                f"{m}: smtp.max_recipients: must be an integer, not a boolean",
                f"{m}: smtp.command_timeout: must be a number of seconds, not a string",
                f"{m}: web.listen: must be an array of strings, has an integer",
            ],
        )

    def test_nonPositiveLimits(self) -> None:
        self.tree.writeMain(
            {"smtp": {"max_recipients": 0, "max_connections_per_ip": -3, "data_timeout": 0, "listen": []}}
        )
        m = self.tree.main
        self.assertEqual(
            self.problems(),
            [
                f"{m}: smtp.listen: must not be empty",
                f"{m}: smtp.max_recipients: must be at least 1, not 0",
                f"{m}: smtp.max_connections_per_ip: must be at least 1, not -3",
                f"{m}: smtp.data_timeout: must be a positive number of seconds, not 0",
            ],
        )

    def test_fractionalTimeouts(self) -> None:
        """Timeouts may be fractions of a second (tests use short ones)."""
        self.tree.writeMain({"smtp": {"command_timeout": 0.5, "data_timeout": 2}})
        config = loadConfig(self.tree.main)
        self.assertEqual((config.smtp.command_timeout, config.smtp.data_timeout), (0.5, 2))

    def test_badEnums(self) -> None:
        self.tree.writeMain({"storage": {"backend": "ftp"}, "log": {"format": "xml"}})
        m = self.tree.main
        self.assertEqual(
            self.problems(),
            [
                f'{m}: storage.backend: must be one of "fs", "s3", not "ftp"',
                f'{m}: log.format: must be one of "text", "json", not "xml"',
            ],
        )

    def test_publicURL(self) -> None:
        """public_url is an http(s) URL; a trailing slash is dropped."""
        self.tree.writeMain({"web": {"public_url": "https://files.example.nl/secudoc/"}})
        self.assertEqual(loadConfig(self.tree.main).web.public_url, "https://files.example.nl/secudoc")
        m = self.tree.main
        for url, what in (
            ("ftp://files.example.nl", 'must be an http:// or https:// URL, not "ftp://files.example.nl"'),
            ("files.example.nl", 'must be an http:// or https:// URL, not "files.example.nl"'),
            ("https://files.example.nl/?a=b", 'must have no query or fragment: "https://files.example.nl/?a=b"'),
            ("https://files.example.nl:99999", 'has a bad port: "https://files.example.nl:99999"'),
        ):
            self.tree.writeMain({"web": {"public_url": url}})
            self.assertEqual(self.problems(), [f"{m}: web.public_url: {what}"])

    def test_databaseURL(self) -> None:
        self.tree.writeMain({"database": {"url": "postgresql://secudoc@db.internal:5432/secudoc"}})
        database = loadConfig(self.tree.main).database
        self.assertEqual(database.url, "postgresql://secudoc@db.internal:5432/secudoc")
        self.assertEqual(database.kind, "postgresql")
        m = self.tree.main
        for url, what in (
            ("mysql://db/secudoc", 'must be "sqlite:PATH" or a postgresql:// URL, not "mysql://db/secudoc"'),
            ("gateway.sqlite3", 'must be "sqlite:PATH" or a postgresql:// URL, not "gateway.sqlite3"'),
            ("sqlite:", "sqlite: needs a path"),
            ("sqlite:///x.db", 'must be "sqlite:PATH" (no "//"), not "sqlite:///x.db"'),
            ("postgresql://db:port/x", 'has a bad port: "postgresql://db:port/x"'),
        ):
            self.tree.writeMain({"database": {"url": url}})
            self.assertEqual(self.problems(), [f"{m}: database.url: {what}"])

    def test_databasePool(self) -> None:
        """``password_env`` and ``pool_size``; a password variable that is not set is refused at start."""
        self.tree.writeMain({"database": {"url": "postgresql://secudoc@db.internal/secudoc",
                                          "password_env": "SECUDOC_TEST_UNSET_PASSWORD", "pool_size": 4}})
        database = loadConfig(self.tree.main).database
        self.assertEqual((database.password_env, database.pool_size), ("SECUDOC_TEST_UNSET_PASSWORD", 4))
        e = self.assertRaises(ConfigError, loadUsableConfig, self.tree.main)
        self.assertEqual(e.problems, [f"{loadConfig(self.tree.main).path}: database.password_env:"
                                      " SECUDOC_TEST_UNSET_PASSWORD is not set in the environment"])
        self.patch(os, "environ", dict(os.environ, SECUDOC_TEST_UNSET_PASSWORD="x"))
        self.assertEqual(loadUsableConfig(self.tree.main).database, database)
        self.tree.writeMain({"database": {"pool_size": 0}})
        self.assertEqual(self.problems(), [f"{self.tree.main}: database.pool_size: must be at least 1, not 0"])

    def test_s3RequiresItsKeys(self) -> None:
        """The s3 keys are required with backend s3 only."""
        self.tree.writeMain({"storage": {"backend": "s3", "bucket": "files"}})
        m = self.tree.main
        self.assertEqual(
            self.problems(),
            [
                f"{m}: storage.endpoint: missing (required)",
                f"{m}: storage.region: missing (required)",
                f"{m}: storage.access_key_id_env: missing (required)",
                f"{m}: storage.secret_access_key_env: missing (required)",
            ],
        )
        s3 = {
            "backend": "s3",
            "endpoint": "https://s3.example/",
            "bucket": "files",
            "region": "eu-west-1",
            "access_key_id_env": "S3_KEY",
            "secret_access_key_env": "S3_SECRET",
        }
        self.tree.writeMain({"storage": s3})
        storage = loadConfig(self.tree.main).storage
        self.assertEqual(
            (storage.backend, storage.endpoint, storage.bucket, storage.region),
            ("s3", "https://s3.example", "files", "eu-west-1"),
        )
        self.assertEqual((storage.access_key_id_env, storage.secret_access_key_env), ("S3_KEY", "S3_SECRET"))
        self.tree.writeMain({"storage": dict(s3, endpoint="s3.example")})
        self.assertEqual(
            self.problems(), [f'{m}: storage.endpoint: must be an http:// or https:// URL, not "s3.example"']
        )
        self.assertEqual((storage.prefix, storage.addressing, storage.ca_file, storage.part_size),
                         ("", "path", "", 8388608))
        self.tree.writeMain({"storage": dict(s3, prefix="gw/", addressing="virtual", part_size=5 * 1024 * 1024)})
        storage = loadConfig(self.tree.main).storage
        self.assertEqual((storage.prefix, storage.addressing, storage.part_size), ("gw/", "virtual", 5242880))
        self.tree.writeMain({"storage": dict(s3, addressing="dns", part_size=1024, ca_file="absent.pem")})
        self.assertEqual(self.problems(), [
            f"{m}: storage.ca_file: cannot read {self.tree.path('etc', 'absent.pem')}: No such file or directory",
            f'{m}: storage.addressing: must be one of "path", "virtual", not "dns"',
            f"{m}: storage.part_size: must be at least 5242880, not 1024",
        ])


class CertificateTests(ConfigTestCase):
    def writePEM(self, name: str, data: bytes) -> str:
        return self.tree.write(os.path.join(self.tree.etc, name), "", binary=data)

    def test_missingCertificate(self) -> None:
        self.tree.writeMain({"smtp": {"tls_certificate": "absent.pem"}})
        path = self.tree.path("etc", "absent.pem")
        self.assertEqual(
            self.problems(),
            [f"{self.tree.main}: smtp.tls_certificate: cannot read {path}: No such file or directory"],
        )

    def test_unreadableCertificate(self) -> None:
        """A folder where the file should be cannot be read."""
        os.makedirs(os.path.join(self.tree.etc, "folder.pem"))
        self.tree.writeMain({"smtp": {"tls_certificate": "folder.pem"}})
        (problem,) = self.problems()
        self.assertTrue(problem.startswith(f"{self.tree.main}: smtp.tls_certificate: cannot read "), problem)

    def test_certificateWithoutKey(self) -> None:
        self.writePEM("cert.pem", devcert.issue(None, "gw").certificatePEM())
        self.tree.writeMain({"smtp": {"tls_certificate": "cert.pem"}})
        path = self.tree.path("etc", "cert.pem")
        self.assertEqual(
            self.problems(), [f"{self.tree.main}: smtp.tls_certificate: {path} has no PEM private key"]
        )

    def test_keyWithoutCertificate(self) -> None:
        self.writePEM("key.pem", devcert.issue(None, "gw").keyPEM())
        self.tree.writeMain({"smtp": {"tls_certificate": "key.pem"}})
        path = self.tree.path("etc", "key.pem")
        self.assertEqual(
            self.problems(), [f"{self.tree.main}: smtp.tls_certificate: {path} has no PEM certificate"]
        )

    def test_notPEM(self) -> None:
        self.writePEM("junk.pem", b"hello\n")
        self.tree.writeMain({"smtp": {"tls_certificate": "junk.pem"}})
        path = self.tree.path("etc", "junk.pem")
        self.assertEqual(
            self.problems(), [f"{self.tree.main}: smtp.tls_certificate: {path} has no PEM certificate"]
        )

    def test_keyDoesNotMatch(self) -> None:
        self.writePEM("mixed.pem", devcert.issue(None, "a").certificatePEM() + devcert.issue(None, "b").keyPEM())
        self.tree.writeMain({"smtp": {"tls_certificate": "mixed.pem"}})
        path = self.tree.path("etc", "mixed.pem")
        self.assertEqual(
            self.problems(),
            [f"{self.tree.main}: smtp.tls_certificate: {path}: the private key does not match the first certificate"],
        )

    def test_chainAndKey(self) -> None:
        """A leaf, its chain and the key: the format devcert writes."""
        ca = devcert.makeCA()
        devcert.issue(ca, "gw").writeTo(os.path.join(self.tree.etc, "chain.pem"))
        self.tree.writeMain({"smtp": {"tls_certificate": "chain.pem"}})
        self.assertEqual(loadConfig(self.tree.main).smtp.tls_certificate, self.tree.path("etc", "chain.pem"))

    def test_relayCertificates(self) -> None:
        """relay_tls_certificate needs a key; relay_ca_file only certificates."""
        ca = devcert.makeCA()
        devcert.issue(ca, "secudoc.acme.test", client=True).writeTo(os.path.join(self.tree.tenants, "client.pem"))
        self.tree.write(os.path.join(self.tree.tenants, "ca.pem"), "", binary=ca.certificatePEM())
        tenant = self.loadTenant(relay_tls_certificate="client.pem", relay_ca_file="ca.pem")
        self.assertEqual(tenant.relay_tls_certificate, self.tree.path("etc", "tenants", "client.pem"))
        self.assertEqual(tenant.relay_ca_file, self.tree.path("etc", "tenants", "ca.pem"))

        problems = self.tenantProblems(relay_tls_certificate="ca.pem", relay_ca_file="absent.pem")
        self.assertEqual(
            problems,
            [
                f"{self.tenantFile}: relay_tls_certificate: {self.tree.path('etc', 'tenants', 'ca.pem')} has no PEM private key",
                f"{self.tenantFile}: relay_ca_file: cannot read {self.tree.path('etc', 'tenants', 'absent.pem')}: "
                "No such file or directory",
            ],
        )

    def test_relayCAFileWithoutCertificate(self) -> None:
        self.tree.write(os.path.join(self.tree.tenants, "ca.pem"), "", binary=devcert.makeCA().keyPEM())
        self.assertEqual(
            self.tenantProblems(relay_ca_file="ca.pem"),
            [f"{self.tenantFile}: relay_ca_file: {self.tree.path('etc', 'tenants', 'ca.pem')} has no PEM certificate"],
        )


class TenantProblemTests(ConfigTestCase):
    def test_missingRequiredKeys(self) -> None:
        path = self.tree.writeTenant("empty.toml", "")
        self.assertEqual(
            self.problems(),
            [
                f"{path}: id: missing (required)",
                f"{path}: domains: missing (required)",
                f"{path}: relay: missing (required)",
                f"{path}: facility_sender: missing (required)",
            ],
        )

    def test_unknownKey(self) -> None:
        self.assertEqual(
            self.tenantProblems(relay_host="x", content_mod="link"),
            [f'{self.tenantFile}: content_mod: unknown key; did you mean "content_mode"?',
             f'{self.tenantFile}: relay_host: unknown key; did you mean "relay"?'],
        )

    def test_syntaxError(self) -> None:
        path = self.tree.writeTenant("broken.toml", 'id = "broken\n')
        (problem,) = self.problems()
        self.assertTrue(problem.startswith(f"{path}: (syntax): "), problem)

    def test_wrongTypes(self) -> None:
        problems = self.tenantProblems(
            domains="acme.test", confirmation_mail="no", link_expiry_days="14", users=[1], id=3
        )
        f = self.tenantFile
        self.assertEqual(
            problems,
            [
                f"{f}: id: must be a string, not an integer",
                f"{f}: domains: must be an array of strings, not a string",
                f"{f}: confirmation_mail: must be true or false, not a string",
                f"{f}: users: must be an array of strings, has an integer",
                f"{f}: link_expiry_days: must be an integer, not a string",
            ],
        )

    def test_badEnums(self) -> None:
        problems = self.tenantProblems(
            mode="always",
            content_mode="attach",
            auto_create_users="yes",
            unknown_sender="drop",
            language="de",
            on_error="bounce",
        )
        f = self.tenantFile
        self.assertEqual(
            problems,
            [
                f'{f}: mode: must be one of "opt-out", "opt-in", not "always"',
                f'{f}: content_mode: must be one of "link", "transfer", "separate", not "attach"',
                f'{f}: auto_create_users: must be one of "no", "welcome", "silent", not "yes"',
                f'{f}: unknown_sender: must be one of "pass", "reject", not "drop"',
                f'{f}: language: must be one of "nl", "en", not "de"',
                f'{f}: on_error: must be one of "tempfail", "pass", not "bounce"',
            ],
        )

    def test_limits(self) -> None:
        problems = self.tenantProblems(link_expiry_days=0, min_attachment_size=-1)
        self.assertEqual(
            problems,
            [
                f"{self.tenantFile}: min_attachment_size: must be at least 0, not -1",
                f"{self.tenantFile}: link_expiry_days: must be at least 1, not 0",
            ],
        )
        self.assertEqual(self.loadTenant(min_attachment_size=0, link_expiry_days=1).min_attachment_size, 0)

    def test_badCIDR(self) -> None:
        problems = self.tenantProblems(allowed_sources=["10.0.0.0/8", "10.0.0.300/24", "10.0.0.1/8", "exo"])
        f = self.tenantFile
        self.assertEqual(len(problems), 3)
        for problem, value in zip(problems, ["10.0.0.300/24", "10.0.0.1/8", "exo"]):
            self.assertTrue(
                problem.startswith(f'{f}: allowed_sources: "{value}" is not a CIDR or "exchange-online": '), problem
            )

    def test_sources(self) -> None:
        tenant = self.loadTenant(allowed_sources=["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"])
        self.assertEqual(tenant.allowed_sources, ("192.0.2.0/24", "2001:db8::/32", "198.51.100.7"))
        self.assertEqual(
            tenant.networks,
            tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32")),
        )
        self.assertTrue(tenant.allowsSource("192.0.2.200"))
        self.assertTrue(tenant.allowsSource("::ffff:192.0.2.1"))
        self.assertTrue(tenant.allowsSource("2001:db8::25"))
        self.assertTrue(tenant.allowsSource("198.51.100.7"))
        self.assertFalse(tenant.allowsSource("198.51.100.8"))
        self.assertFalse(tenant.allowsSource("127.0.0.1"))
        self.assertFalse(tenant.allowsSource("not an address"))
        self.assertFalse(tenant.allowsSource(""))

    def test_exchangeOnline(self) -> None:
        """The alias stands for EXO's published outbound ranges."""
        tenant = self.loadTenant(allowed_sources=["exchange-online"], microsoft_tenant_id=GUID)
        self.assertTrue(tenant.exchange_online)
        self.assertEqual(tenant.allowed_sources, ("exchange-online",))
        self.assertEqual(tenant.networks, EXCHANGE_ONLINE_NETWORKS)
        self.assertEqual(len(EXCHANGE_ONLINE_NETWORKS), 6)
        for ip in ("40.92.0.1", "40.93.255.254", "40.107.1.1", "52.103.255.1", "104.47.127.1", "2a01:111:f403:c000::1"):
            self.assertTrue(tenant.allowsSource(ip), ip)
        for ip in ("40.94.0.1", "104.47.128.1", "2a01:111:f401::1", "127.0.0.1"):
            self.assertFalse(tenant.allowsSource(ip), ip)

    def test_exchangeOnlineRequiresTenantId(self) -> None:
        self.assertEqual(
            self.tenantProblems(allowed_sources=["exchange-online"]),
            [f'{self.tenantFile}: microsoft_tenant_id: required when allowed_sources has "exchange-online"'],
        )

    def test_badMicrosoftTenantId(self) -> None:
        self.assertEqual(
            self.tenantProblems(microsoft_tenant_id="contoso.onmicrosoft.com"),
            [
                f"{self.tenantFile}: microsoft_tenant_id: must be a GUID "
                '(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), not "contoso.onmicrosoft.com"'
            ],
        )

    def test_relay(self) -> None:
        tenant = self.loadTenant(relay="smtp://acme-test.mail.protection.outlook.com:25")
        self.assertEqual(tenant.relay, "smtp://acme-test.mail.protection.outlook.com:25")
        self.assertEqual(self.loadTenant(relay="smtp://[::1]:2526").relay, "smtp://[::1]:2526")
        for relay in (
            "smtp://relay.example",
            "smtps://relay.example:465",
            "http://relay.example:25",
            "smtp://relay.example:25/path",
            "smtp://user@relay.example:25",
            "smtp://relay.example:port",
            "relay.example:25",
            "maildir:",
        ):
            (problem,) = self.tenantProblems(relay=relay)
            if relay == "maildir:":
                self.assertEqual(problem, f"{self.tenantFile}: relay: maildir: needs a path")
            else:
                self.assertEqual(
                    problem, f'{self.tenantFile}: relay: must be "maildir:PATH" or "smtp://HOST:PORT", not "{relay}"'
                )

    def test_idnaDomains(self) -> None:
        """Domains are lowercase IDNA A-labels; duplicates in one file collapse."""
        tenant = self.loadTenant(domains=["Bücher.Example", "ACME.test", "acme.test.", "XN--BCHER-KVA.example"])
        self.assertEqual(tenant.domains, ("xn--bcher-kva.example", "acme.test"))
        problems = self.tenantProblems(domains=["good.test", "bad_name.test", "-x.test"])
        self.assertEqual(len(problems), 2)
        self.assertTrue(problems[0].startswith(f'{self.tenantFile}: domains: "bad_name.test" is not a valid domain'))
        self.assertTrue(problems[1].startswith(f'{self.tenantFile}: domains: "-x.test" is not a valid domain'))
        self.assertEqual(self.tenantProblems(domains=[]), [f"{self.tenantFile}: domains: must not be empty"])

    def test_addressPatterns(self) -> None:
        """Addresses and patterns keep their shape, domains normalised."""
        tenant = self.loadTenant(
            exclude_senders=["facturen@*", "*@Billing.Acme.test", "Boss@acme.test"],
            exclude_recipients=["*@bücher.example"],
            users=["*@acme.test", "o'brien+tag@acme.test"],
        )
        self.assertEqual(tenant.exclude_senders, ("facturen@*", "*@billing.acme.test", "Boss@acme.test"))
        self.assertEqual(tenant.exclude_recipients, ("*@xn--bcher-kva.example",))
        self.assertEqual(tenant.users, ("*@acme.test", "o'brien+tag@acme.test"))
        bad = ["nobody", "*@*", "@acme.test", "x@", "a b@acme.test", "fac*@acme.test", "x@bad_domain", "<x@acme.test>"]
        problems = self.tenantProblems(exclude_senders=bad)
        self.assertEqual(
            problems,
            [
                f'{self.tenantFile}: exclude_senders: "{value}" is not an address, "name@*" or "*@domain"'
                for value in bad
            ],
        )

    def test_facilitySender(self) -> None:
        self.assertEqual(
            self.tenantProblems(facility_sender="*@acme.test"),
            [f'{self.tenantFile}: facility_sender: must be an address, not "*@acme.test"'],
        )

    def test_requiredHeader(self) -> None:
        tenant = self.loadTenant(required_header="X-Classification: Confidential")
        self.assertEqual(tenant.required_header, "X-Classification: Confidential")
        tenant = self.loadTenant(required_header="X-SecuDoc-Protect")
        self.assertEqual(tenant.required_header, "X-SecuDoc-Protect")
        tenant = self.loadTenant()
        self.assertEqual(tenant.required_header, "")
        for value in ("X Header", ": value", "X-A: b\r\nBcc: x", "Ünicode"):
            self.assertEqual(
                self.tenantProblems(required_header=value),
                [f'{self.tenantFile}: required_header: must be "Name" or "Name: value", not "{value}"'],
            )

    def test_badId(self) -> None:
        self.assertEqual(
            self.tenantProblems(id="acme corp"),
            [f'{self.tenantFile}: id: must be letters, digits, ".", "_" or "-", not "acme corp"'],
        )

    def test_disclaimerOneLine(self) -> None:
        self.assertEqual(self.loadTenant(disclaimer="Vertrouwelijk — alleen voor de geadresseerde").disclaimer[:13], "Vertrouwelijk")
        self.assertEqual(
            self.tenantProblems(disclaimer="line one\nline two"),
            [f"{self.tenantFile}: disclaimer: must be one line without control characters"],
        )

    def test_organisationAndHelpContact(self) -> None:
        """Both shown to recipients: default empty, one line, a string."""
        tenant = self.loadTenant()
        self.assertEqual((tenant.organisation, tenant.help_contact), ("", ""))
        tenant = self.loadTenant(organisation="Van Dijk & Zonen B.V.", help_contact="+31 20 123 4567")
        self.assertEqual((tenant.organisation, tenant.help_contact), ("Van Dijk & Zonen B.V.", "+31 20 123 4567"))
        for key in ("organisation", "help_contact"):
            self.assertEqual(
                self.tenantProblems(**{key: "one\ntwo"}),
                [f"{self.tenantFile}: {key}: must be one line without control characters"],
            )
            self.assertEqual(len(self.tenantProblems(**{key: 3})), 1)


class RecipientSideKeyTests(ConfigTestCase):
    def test_defaults(self) -> None:
        tenant = self.loadTenant()
        self.assertEqual((tenant.organisation, tenant.help_contact, tenant.logo, tenant.recipient_verification,
                          tenant.download_notification), ("", "", "", "none", False))
        self.assertEqual(loadConfig(self.tree.main).web.language, "nl")

    def test_values(self) -> None:
        logo = os.path.abspath(self.tree.write(os.path.join(self.tree.tenants, "logo.svg"), "<svg/>"))
        tenant = self.loadTenant(organisation="Gemeente X", help_contact="+31 20 123 4567", logo="logo.svg",
                                 recipient_verification="email-code", download_notification=True)
        self.assertEqual((tenant.organisation, tenant.help_contact, tenant.logo, tenant.recipient_verification,
                          tenant.download_notification), ("Gemeente X", "+31 20 123 4567", logo, "email-code", True))
        self.tree.writeMain({"web": {"language": "en"}})
        self.assertEqual(loadConfig(self.tree.main).web.language, "en")

    def test_problems(self) -> None:
        self.tree.write(os.path.join(self.tree.tenants, "logo.gif"), "GIF89a")
        problems = self.tenantProblems(organisation="a\nb", logo="logo.gif", recipient_verification="sms",
                                       download_notification="yes")
        f = self.tenantFile
        self.assertEqual(problems, [
            f"{f}: organisation: must be one line without control characters",
            f"{f}: logo: must be a .png or .svg file, not {self.tree.path('etc', 'tenants', 'logo.gif')}",
            f'{f}: recipient_verification: must be one of "none", "email-code", not "sms"',
            f"{f}: download_notification: must be true or false, not a string",
        ])
        self.assertEqual(self.tenantProblems(logo="missing.png"),
                         [f"{self.tenantFile}: logo: cannot read {self.tree.path('etc', 'tenants', 'missing.png')}"])
        self.tree.writeMain({"web": {"language": "de"}})
        self.assertEqual(self.problems()[0], f'{self.tree.main}: web.language: must be one of "nl", "en", not "de"')


class CrossTenantTests(ConfigTestCase):
    def test_domainClaimedTwice(self) -> None:
        """The second file (in name order) is named, with key domains."""
        first = self.tree.writeTenant("a.toml", dict(MINIMAL_TENANT, id="a", domains=["shared.test", "a.test"]))
        second = self.tree.writeTenant("b.toml", dict(MINIMAL_TENANT, id="b", domains=["b.test", "SHARED.test"]))
        self.assertEqual(
            self.problems(), [f'{second}: domains: "shared.test" is already claimed by {first}']
        )

    def test_domainClaimedTwiceIDNA(self) -> None:
        """A U-label and its A-label are one domain."""
        first = self.tree.writeTenant("a.toml", dict(MINIMAL_TENANT, id="a", domains=["bücher.example"]))
        second = self.tree.writeTenant("b.toml", dict(MINIMAL_TENANT, id="b", domains=["xn--bcher-kva.example"]))
        self.assertEqual(
            self.problems(), [f'{second}: domains: "xn--bcher-kva.example" is already claimed by {first}']
        )

    def test_duplicateIds(self) -> None:
        first = self.tree.writeTenant("a.toml", dict(MINIMAL_TENANT, domains=["a.test"]))
        second = self.tree.writeTenant("b.toml", dict(MINIMAL_TENANT, domains=["b.test"]))
        self.assertEqual(self.problems(), [f'{second}: id: "acme" is already the id of {first}'])

    def test_duplicateMicrosoftTenantIds(self) -> None:
        """A null sender's tenant is found by this id, so it must be unique."""
        first = self.tree.writeTenant("a.toml", dict(MINIMAL_TENANT, id="a", domains=["a.test"], microsoft_tenant_id=GUID))
        second = self.tree.writeTenant(
            "b.toml", dict(MINIMAL_TENANT, id="b", domains=["b.test"], microsoft_tenant_id=GUID.lower())
        )
        self.assertEqual(
            self.problems(), [f'{second}: microsoft_tenant_id: "{GUID.lower()}" is already used by {first}']
        )

    def test_severalProblemsAtOnce(self) -> None:
        """Every problem of every file is reported in one run, in file order."""
        self.tree.writeMain({"smtp": {"max_recipients": "many", "tls_certificate": "absent.pem"}, "web": {"x": 1}})
        a = self.tree.writeTenant("a.toml", dict(MINIMAL_TENANT, id="a", domains=["a.test"], mode="x", colour="red"))
        b = self.tree.writeTenant(
            "b.toml", dict(MINIMAL_TENANT, id="b", domains=["a.test"], allowed_sources=["exchange-online", "1.2.3.4/33"])
        )
        c = self.tree.writeTenant("c.toml", "id = [")
        m = self.tree.main
        problems = self.problems()
        self.assertEqual(
            problems[:3],
            [
                f"{m}: smtp.tls_certificate: cannot read {self.tree.path('etc', 'absent.pem')}: No such file or directory",
                f"{m}: smtp.max_recipients: must be an integer, not a string",
                f"{m}: web.x: unknown key",
            ],
        )
        self.assertEqual(problems[3:5], [f'{a}: mode: must be one of "opt-out", "opt-in", not "x"', f"{a}: colour: unknown key"])
        self.assertTrue(problems[5].startswith(f'{b}: allowed_sources: "1.2.3.4/33" is not a CIDR'), problems[5])
        self.assertEqual(
            problems[6:8],
            [
                f'{b}: microsoft_tenant_id: required when allowed_sources has "exchange-online"',
                f'{b}: domains: "a.test" is already claimed by {a}',
            ],
        )
        self.assertTrue(problems[8].startswith(f"{c}: (syntax): "), problems[8])
        self.assertEqual(len(problems), 9)


class ReloadTests(ConfigTestCase):
    def test_loadTenants(self) -> None:
        """The tenant files alone, as a SIGHUP reload reads them."""
        path = self.tree.writeTenant("acme.toml", MINIMAL_TENANT)
        tenants, problems = loadTenants(self.tree.tenants)
        self.assertEqual(problems, [])
        self.assertEqual([(t.id, t.source) for t in tenants], [("acme", path)])
        self.assertEqual(tenants[0].relay, "maildir:" + self.tree.path("var", "outbox", "acme"))
        self.tree.writeTenant("bad.toml", dict(MINIMAL_TENANT, id="bad", domains=["bad.test"], mode="x"))
        tenants, problems = loadTenants(self.tree.tenants)
        self.assertEqual(len(tenants), 2)
        self.assertEqual(problems, [f'{self.tree.tenants}/bad.toml: mode: must be one of "opt-out", "opt-in", not "x"'])

    def test_reloadTenants(self) -> None:
        """A reload reads the tenant folder again, relative paths against it as at start."""
        self.tree.writeTenant("acme.toml", MINIMAL_TENANT)
        config = loadConfig(self.tree.main)
        self.tree.writeTenant("beta.toml", dict(MINIMAL_TENANT, id="beta", domains=["beta.test"], relay="maildir:out"))
        tenants = reloadTenants(config)
        self.assertEqual([t.id for t in tenants], ["acme", "beta"])
        self.assertEqual(tenants[1].relay, "maildir:" + self.tree.path("etc", "tenants", "out"))
        self.assertEqual(tenants[1].source, self.tree.path("etc", "tenants", "beta.toml"))
        self.tree.writeTenant("gamma.toml", dict(MINIMAL_TENANT, id="gamma", domains=["beta.test"]))
        exc = self.assertRaises(ConfigError, reloadTenants, config)
        self.assertEqual(
            exc.problems,
            [
                f'{self.tree.path("etc", "tenants", "gamma.toml")}: domains: "beta.test" is already claimed by '
                f'{self.tree.path("etc", "tenants", "beta.toml")}'
            ],
        )
        shutil.rmtree(self.tree.tenants)
        exc = self.assertRaises(ConfigError, reloadTenants, config)
        self.assertEqual(exc.problems, [f"{config.path}: tenants.path: {config.tenants_path} is not a folder"])


class PortalAndScanKeyTests(ConfigTestCase):
    """SPEC 3's ``[portal]`` and ``[scan]`` sections and the tenant's portal and scanning keys."""

    GROUP = "0B5C1E2A-3D4F-4A6B-8C7D-9E0F1A2B3C4D"

    def test_defaults(self) -> None:
        config = loadConfig(self.tree.main)
        self.assertEqual((config.portal.enabled, config.portal.session_hours, config.portal.idle_minutes,
                          config.portal.max_upload_size, config.portal.trace_days), (True, 8, 60, 2147483648, 30))
        self.assertEqual((config.scan.clamd, config.scan.timeout, config.scan.max_file_size), ("", 60, 104857600))
        tenant = self.loadTenant()
        self.assertEqual((tenant.admins, tenant.portal_login, tenant.saml_metadata_url, tenant.saml_metadata_file,
                          tenant.saml_user_groups, tenant.saml_admin_groups, tenant.on_malware,
                          tenant.on_scan_error), ((), "email-link", "", "", (), (), "reject", "tempfail"))

    def test_values(self) -> None:
        self.tree.writeMain({"portal": {"enabled": False, "session_hours": 2, "idle_minutes": 15,
                                        "max_upload_size": 1000, "trace_days": 7},
                             "scan": {"clamd": "unix:../run/clamd.ctl", "timeout": 5, "max_file_size": 10}})
        config = loadConfig(self.tree.main)
        self.assertEqual(config.portal, PortalConfig(False, 2, 15, 1000, 7))
        self.assertEqual(config.scan, ScanConfig("unix:" + self.tree.path("run", "clamd.ctl"), 5, 10))
        self.tree.writeMain({"scan": {"clamd": "tcp:clamav.internal:3310"}})
        self.assertEqual(loadConfig(self.tree.main).scan.clamd, "tcp:clamav.internal:3310")
        metadata = self.tree.write(self.tree.path("etc", "entra.xml"), "<EntityDescriptor/>")
        tenant = self.loadTenant(admins=["Beheer@Acme.TEST"], portal_login="both", saml_metadata_file=metadata,
                                 saml_user_groups=[self.GROUP], saml_admin_groups=[self.GROUP.lower()],
                                 on_malware="strip", on_scan_error="pass")
        self.assertEqual((tenant.admins, tenant.portal_login, tenant.saml_metadata_file, tenant.saml_user_groups,
                          tenant.saml_admin_groups, tenant.on_malware, tenant.on_scan_error),
                         (("Beheer@acme.test",), PortalLogin.BOTH, metadata, (self.GROUP.lower(),),
                          (self.GROUP.lower(),), OnMalware.STRIP, OnScanError.PASS))
        url = "https://login.microsoftonline.com/x/federationmetadata/2007-06/federationmetadata.xml?appid=y"
        self.assertEqual(self.loadTenant(saml_metadata_url=url.split("?")[0]).saml_metadata_url, url.split("?")[0])

    def test_problems(self) -> None:
        self.tree.writeMain({"portal": {"session_hours": 0, "trace_days": "a month"},
                             "scan": {"clamd": "clamd.sock", "timeout": -1}})
        m = self.tree.main
        self.assertEqual(self.problems(), [
            f"{m}: portal.session_hours: must be at least 1, not 0",
            f"{m}: portal.trace_days: must be an integer, not a string",
            f'{m}: scan.clamd: must be "", "unix:PATH" or "tcp:HOST:PORT", not "clamd.sock"',
            f"{m}: scan.timeout: must be a positive number of seconds, not -1",
        ])
        self.tree.writeMain({"scan": {"clamd": "tcp:host:99999"}})
        self.assertEqual(self.problems(), [f'{m}: scan.clamd: must be "", "unix:PATH" or "tcp:HOST:PORT",'
                                           f' not "tcp:host:99999"'])
        self.tree.writeMain("")
        problems = self.tenantProblems(admins=["*@acme.test"], portal_login="password",
                                       saml_metadata_url="http://idp.test/metadata.xml",
                                       saml_metadata_file="/nonexistent/entra.xml", saml_user_groups=["admins"],
                                       on_malware="quarantine", on_scan_error="ignore")
        f = self.tenantFile
        self.assertEqual(problems, [
            f'{f}: saml_metadata_url: must be an https:// URL, not "http://idp.test/metadata.xml"',
            f"{f}: saml_metadata_file: cannot read /nonexistent/entra.xml",
            f"{f}: saml_metadata_file: set saml_metadata_url or saml_metadata_file, not both",
            f'{f}: admins: "*@acme.test" is not an address',
            f'{f}: portal_login: must be one of "email-link", "saml", "both", not "password"',
            f'{f}: saml_user_groups: "admins" is not a group object id (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)',
            f'{f}: on_malware: must be one of "reject", "strip", not "quarantine"',
            f'{f}: on_scan_error: must be one of "tempfail", "pass", not "ignore"',
        ])
