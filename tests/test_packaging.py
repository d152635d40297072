"""
The wheel as users get it: built from the sources, installed into a
fresh virtual environment far from this checkout, ``twistd
secudoc-gateway`` found through the plugin the wheel ships.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import zipfile

from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway import __version__
from tests.twistd import ROOT

SOURCES = ["setup.cfg", "pyproject.toml", "README.md", "secudoc_gateway", "twisted"]


def call(args: list[str], cwd: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


class WheelTests(SynchronousTestCase):
    def test_installedWheelRunsTwistd(self) -> None:
        work = os.path.abspath(self.mktemp())
        source = os.path.join(work, "source")
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
        names = zipfile.ZipFile(wheel).namelist()
        self.assertIn("twisted/plugins/secudoc_gateway_plugin.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertNotIn("twisted/__init__.py", names)

        venv = os.path.join(work, "venv")
        call([sys.executable, "-m", "venv", venv], cwd=work)
        call([os.path.join(venv, "bin", "pip"), "install", "-q", wheel], cwd=work)
        elsewhere = os.path.join(work, "elsewhere")
        os.makedirs(elsewhere)
        result = call([os.path.join(venv, "bin", "twistd"), "secudoc-gateway", "--help"], cwd=elsewhere)
        self.assertIn("--config=", result.stdout)
        self.assertIn("Main configuration file", result.stdout)
        result = call([os.path.join(venv, "bin", "secudoc-gateway"), "--version"], cwd=elsewhere)
        self.assertEqual(result.stdout.strip(), f"secudoc-gateway {__version__}")
