"""actors/process.py: the settings of rafka's actor processes."""

import subprocess
import sys

import pytest
import ray

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux prctl")

_READ_THP = ("def thp():\n"
             "    return next((l.split()[1] for l in open('/proc/self/status') if l.startswith('THP_enabled:')), None)\n")


def _python(script: str) -> str:
    return subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout.strip()


def _thp_enabled(_actor=None) -> str | None:
    """The THP_enabled field of this process's /proc status (Linux 5.0+), or None."""
    with open("/proc/self/status") as handle:
        return next((line.split()[1] for line in handle if line.startswith("THP_enabled:")), None)


def test_tune_actor_process_turns_transparent_huge_pages_off_and_import_does_not():
    default = _python(_READ_THP + "print(thp())")
    if default == "None":
        pytest.skip("this kernel's /proc/<pid>/status has no THP_enabled field")
    script = _READ_THP + ("import rafka\n"
                          "from rafka.actors.process import tune_actor_process\n"
                          "imported = thp(); tune_actor_process(); tune_actor_process(); print(imported, thp())\n")
    imported, tuned = _python(script).split()
    assert imported == default  # importing rafka leaves a user's process as it was
    assert tuned == "0"


def test_actors_run_with_transparent_huge_pages_off(cluster, topic):
    if _thp_enabled() is None:
        pytest.skip("this kernel's /proc/<pid>/status has no THP_enabled field")
    cluster.admin().create_topic(topic, partitions=1)
    leader, _ = cluster.metadata.leader(topic, 0)
    assert ray.get(cluster.controller.__ray_call__.remote(_thp_enabled)) == "0"
    assert ray.get(leader.__ray_call__.remote(_thp_enabled)) == "0"
