"""Running a fault scenario script as a test: the scenario needs a Ray cluster of its own
(``ray.cluster_utils.Cluster``), so the test runs the script in a subprocess, as a user
would, and reads the JSON line it prints last."""

from __future__ import annotations

import json
import subprocess
import sys
import time


def run_script(path: str, timeout_s: float) -> dict:
    """The last JSON line ``python path`` printed; AssertionError with its output's tail
    when it failed or printed none."""
    completed = subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=timeout_s)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    assert completed.returncode == 0 and lines, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads(lines[-1])


def print_result(scenario) -> None:
    """A scenario script's main: run ``scenario()`` and print its result, with the time
    it took, as the JSON line ``run_script`` reads."""
    started_s = time.monotonic()
    outcome = scenario()
    outcome["elapsed_s"] = round(time.monotonic() - started_s, 1)
    print(json.dumps(outcome))
