"""The README's examples run as a user runs them: ``python examples/NAME.py`` in a fresh
process (its own embedded Ray and rafka cluster), exiting 0 after its own checks pass.

Each example checks its results itself (quickstart: every record back once, in its key's
partition, in offset order; wordcount and clickstream: every emitted window equals a
plain-Python reference, and every closed window was emitted) and prints "OK" only then.
Each runs here with a smaller workload than its default (an argument the example
documents): the same checks on fewer records, since the count proves nothing more and
the full sizes cost minutes of CI.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


# The example and its workload argument for the test.
WORKLOADS = {"quickstart.py": ["--records", "10000"], "wordcount.py": ["--lines", "4000"],
             "clickstream.py": ["--clicks", "2000"]}


@pytest.mark.parametrize("example", list(WORKLOADS))
def test_example_runs_and_its_checks_pass(example):
    completed = subprocess.run([sys.executable, os.path.join(EXAMPLES, example), *WORKLOADS[example]],
                               capture_output=True, text=True, timeout=600)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert any(line.startswith("OK") for line in completed.stdout.splitlines()), output
