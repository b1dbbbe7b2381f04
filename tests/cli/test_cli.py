"""The installed ``rafka`` console script."""

import os
import shutil
import subprocess
import sys

import rafka


def run(*args: str) -> subprocess.CompletedProcess:
    # The script installed next to this interpreter, whether or not its venv is on PATH.
    beside = os.path.join(os.path.dirname(sys.executable), "rafka")
    executable = beside if os.path.exists(beside) else shutil.which("rafka")
    assert executable, "the rafka console script is not installed"
    return subprocess.run([executable, *args], capture_output=True, text=True, timeout=60)


def test_version_prints_the_package_version():
    result = run("--version")
    assert result.returncode == 0
    assert rafka.__version__ in result.stdout


def test_help_describes_the_command():
    result = run("--help")
    assert result.returncode == 0
    assert "rafka" in result.stdout and "--version" in result.stdout
