"""Building a stream job and running it in the TopologyTestDriver loads no Ray: the
Streams DSL validates names with rafka.validation, not the controller actor's module.
In a subprocess, so this test's own imports (and the session's Ray) do not count."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import sys
from rafka.streams import StreamsApp
from rafka.streams.testing import TopologyTestDriver

app = StreamsApp("no-ray-app")
app.source("in", key_format="utf8", value_format="utf8").map_values(lambda v: v.upper()).to("out")
driver = TopologyTestDriver(app)
driver.pipe("in", [(b"k", b"hello", 1_000)])
print(driver.read_output("out", key_format="utf8", value_format="utf8"))
print(sorted(name for name in sys.modules if name == "ray" or name.startswith("rafka.actors")))
"""


def test_building_and_driving_a_streams_app_loads_no_ray():
    completed = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    output, loaded = completed.stdout.strip().splitlines()
    assert "HELLO" in output
    assert loaded == "[]", f"loaded without need: {loaded}"
