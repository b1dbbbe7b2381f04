"""examples/postgres_to_parquet.py runs end to end (its own Ray instance, cluster and
PostgreSQL server, in a subprocess) and its checks pass."""

import os
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "postgres_to_parquet.py")


def test_postgres_to_parquet_example_delivers_every_row(tmp_path):
    completed = subprocess.run([sys.executable, EXAMPLE, "--rows", "2000", "--data-dir", str(tmp_path)],
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "OK: all 1,800 orders" in completed.stdout
