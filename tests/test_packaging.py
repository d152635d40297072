"""
The wheel as users get it: built from the sources, installed into a
fresh virtual environment far from this checkout, ``twistd
secudoc-gateway`` found through the plugin the wheel ships; and every
library the wheel's code imports is one it requires.

The fresh environment gets the wheel alone (``--no-deps``) and finds its
dependencies in this checkout's environment (a ``.pth`` line): fetching
and installing them again took most of this test's time, and what it
proved, that the wheel names what it imports, is checked from the
wheel's own metadata instead.
"""

from __future__ import annotations

import ast
import functools
import glob
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile

from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway import __version__
from secudoc_gateway.testing import ROOT

SOURCES = ["setup.cfg", "pyproject.toml", "README.md", "secudoc_gateway", "twisted"]
TWISTD = "from twisted.scripts.twistd import run; run()"  # what the twistd script runs


def call(args: list[str], cwd: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported(source: bytes) -> set[str]:
    """The top-level names a module imports (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@functools.lru_cache(maxsize=None)
def builtWheel() -> str:
    """The wheel, built once for both tests, in trial's working folder."""
    work = os.path.abspath("wheel")
    source = os.path.join(work, "source")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(source)
    for name in SOURCES:  # a copy, so the build writes nothing into the checkout
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(source, name), ignore=shutil.ignore_patterns("__pycache__",
                                                                                            "dropin.cache"))
        else:
            shutil.copy(path, source)
    call([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work, source], cwd=work)
    [wheel] = glob.glob(os.path.join(work, "secudoc_gateway-*.whl"))
    return wheel


class WheelTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.wheel = builtWheel()

    def test_installedWheelRunsTwistd(self) -> None:
        names = zipfile.ZipFile(self.wheel).namelist()
        self.assertIn("twisted/plugins/secudoc_gateway_plugin.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertNotIn("twisted/__init__.py", names)

        work = os.path.abspath(self.mktemp())
        venv = os.path.join(work, "venv")
        call([sys.executable, "-m", "venv", "--without-pip", venv], cwd=ROOT)
        python = os.path.join(venv, "bin", "python")
        call([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index",
              self.wheel], cwd=ROOT)
        [sitePackages] = glob.glob(os.path.join(venv, "lib", "python*", "site-packages"))
        with open(os.path.join(sitePackages, "dependencies.pth"), "w") as f:
            f.write(sysconfig.get_paths()["purelib"] + "\n")  # a plain path: its own .pth files stay unread
        elsewhere = os.path.join(work, "elsewhere")
        os.makedirs(elsewhere)
        result = call([python, "-c", "import secudoc_gateway; print(secudoc_gateway.__file__)"], cwd=elsewhere)
        self.assertTrue(result.stdout.startswith(sitePackages + os.sep), result.stdout)
        result = call([python, "-c", TWISTD, "secudoc-gateway", "--help"], cwd=elsewhere)
        self.assertIn("--config=", result.stdout)
        self.assertIn("Main configuration file", result.stdout)
        result = call([os.path.join(venv, "bin", "secudoc-gateway"), "--version"], cwd=elsewhere)
        self.assertEqual(result.stdout.strip(), f"secudoc-gateway {__version__}")

    def test_requiresWhatItImports(self) -> None:
        """
        Each library the wheel's modules import is in its requirements;
        the shipped testing helpers may use the ``test`` extra's too.
        """
        wheel = zipfile.ZipFile(self.wheel)
        [metadata] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        required: set[str] = set()
        forTests: set[str] = set()
        for line in wheel.read(metadata).decode().splitlines():
            if line.startswith("Requires-Dist:"):
                requirement = line.split(":", 1)[1].strip()
                name = normalized(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
                (forTests if 'extra == "test"' in requirement else required).add(name)
        self.assertIn("twisted", required)
        providers = importlib.metadata.packages_distributions()
        missing = []
        for name in wheel.namelist():
            if not name.endswith(".py"):
                continue
            allowed = required | forTests if name.startswith("secudoc_gateway/testing/") else required
            for module in imported(wheel.read(name)) - set(sys.stdlib_module_names) - {"secudoc_gateway"}:
                if not {normalized(d) for d in providers.get(module, [])} & allowed:
                    missing.append(f"{name}: {module}")
        self.assertEqual(missing, [])
