"""
A throwaway PostgreSQL cluster for tests and benches: Debian's
PostgreSQL binaries, a data folder under a temporary folder, a free
loopback port, ``fsync=off``.  initdb refuses to run as root, so as root
every server command runs as the ``postgres`` user (``runuser``), in a
folder made reachable for it.

The cluster's role ``secudoc`` logs in over TCP with a password
(scram-sha-256), so the gateway's ``password_env`` is exercised too.

    python -m secudoc_gateway.testing.postgres start FOLDER   # prints the env lines
    python -m secudoc_gateway.testing.postgres stop FOLDER
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from typing import Optional

from secudoc_gateway.testing.ports import freePort

ROLE = "secudoc"
# What tests read: the cluster's admin URL (role secudoc, database
# postgres) and the name of the variable holding the password.
URL_ENV = "SECUDOC_TEST_POSTGRESQL"
PASSWORD_ENV = "SECUDOC_TEST_DB_PASSWORD"


def binaries() -> str:
    """The folder of initdb and pg_ctl: Debian's newest, else the PATH's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL's initdb is not installed (Debian: apt-get install postgresql-15)")
    return os.path.dirname(initdb)


class Cluster:
    """One PostgreSQL server in ``folder`` (made when missing)."""

    def __init__(self, folder: str, port: Optional[int] = None, password: Optional[str] = None,
                 durable: bool = False) -> None:
        """``durable``: fsync as in production (benches), else ``fsync=off`` (tests)."""
        self.folder = os.path.abspath(folder)
        self.durable = durable
        self.port = port or freePort()
        self.password = password or secrets.token_urlsafe(16)
        self.data = os.path.join(self.folder, "data")
        self._bin = binaries()

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run(prefix + [os.path.join(self._bin, command[0]), *command[1:]],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.folder)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stdout.decode(errors='replace')}")

    def create(self) -> None:
        """initdb, with the role ``secudoc`` (password ``self.password``) as the superuser."""
        os.makedirs(self.folder, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            # Every folder above must let postgres through.
            parent = self.folder
            while parent != "/":
                parent = os.path.dirname(parent)
                mode = os.stat(parent).st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
        pwfile = os.path.join(self.folder, "password")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run("initdb", "--no-sync", "-D", self.data, "-U", ROLE, f"--pwfile={pwfile}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C")
        os.unlink(pwfile)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=300"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", self.data, "-w", "-t", "60", "-l", os.path.join(self.folder, "log"),
                  "-o", options, "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-w", "-m", "fast", "stop")

    def destroy(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    def environment(self) -> dict[str, str]:
        return {URL_ENV: self.url(), PASSWORD_ENV: self.password}


def freshDatabase(adminURL: str, password: str) -> str:
    """A new, empty database on the cluster of ``adminURL``; returns its URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(adminURL, password=password, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return adminURL.rpartition("/")[0] + "/" + name


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    command, folder = argv
    if command == "start":
        cluster = Cluster(folder)
        cluster.create()
        cluster.start()
        for name, value in cluster.environment().items():
            print(f"{name}={value}")
    else:
        Cluster(folder).destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
