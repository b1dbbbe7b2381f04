"""The README's examples run as a user runs them: ``python examples/NAME.py`` in a fresh
process (its own embedded Ray and rafka cluster), exiting 0 after its own checks pass.

Each example checks its results itself (quickstart: every record back once, in its key's
partition, in offset order; wordcount and clickstream: every emitted window equals a
plain-Python reference, and every closed window was emitted) and prints "OK" only then.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


@pytest.mark.parametrize("example", ["quickstart.py", "wordcount.py", "clickstream.py"])
def test_example_runs_and_its_checks_pass(example):
    completed = subprocess.run([sys.executable, os.path.join(EXAMPLES, example)],
                               capture_output=True, text=True, timeout=600)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert any(line.startswith("OK") for line in completed.stdout.splitlines()), output
