"""Shared test setup.

Helper modules next to the storage tests import as plain modules. One Ray instance and
one rafka cluster serve every test of the session that needs them (tests/client,
tests/streams): tests make their own topics (named after the test) so they never see
each other's records; tests that need a cluster of their own start it in a separate
Ray namespace.
"""

import os
import re
import sys
import uuid

import pytest

for _helpers in ("storage", "connect"):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), _helpers))

# The README's test command runs the suite on two pytest-xdist workers
# (`-n 2 --dist loadfile`): each worker is a process with its own session, so its own
# Ray instance, shared rafka cluster and temporary directories, and one worker runs all
# of a file (a module fixture starts once). The files whose tests start multi-node Ray
# clusters of their own in a subprocess (ray.cluster_utils.Cluster) are one unit, so
# they run one after another on one worker, never beside each other. The machine lock
# (a dev-machine affair, see the BRIEF) is taken by the controller process alone: the
# workers' command line is not `-m pytest`.
MULTI_NODE_UNIT = "multi-node Ray clusters"
MULTI_NODE_FILES = {"tests/faults/test_faults.py", "tests/faults/test_soak.py", "tests/faults/test_node_join.py"}
# The slowest units, slowest first (seconds in a full serial run, 2026-12-07): the
# workers take them before the rest, so neither ends the run alone with a long file.
# Only a scheduling hint: a file missing here runs after these, in collection order.
SLOW_FIRST = [
    MULTI_NODE_UNIT,                    # ~435 s
    "tests/cli/test_bench.py",          # ~160 s
    "tests/test_examples.py",           # ~140 s
    "tests/wire/test_classic_groups.py",  # ~116 s
    "tests/cli/test_cli_cluster.py",    # ~113 s
    "tests/streams/test_streams_job.py",  # ~109 s
    "tests/client/test_replication.py",   # ~88 s
    "tests/connect/test_example.py",    # ~60 s
    "tests/connect/test_restart.py",    # ~51 s
    "tests/streams/test_runtime.py",    # ~41 s
]


METRICS_REPORT_INTERVAL_MS = 5000


def _unit_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return MULTI_NODE_UNIT if path in MULTI_NODE_FILES else path


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: a run without xdist has no such hook
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with the multi-node files as one unit and the units handed out
    in collection order (which ``pytest_collection_modifyitems`` sorts slowest first)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LoadFileUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit_of(nodeid)

    config.option.loadscopereorder = False  # else the units with the most tests go first
    return LoadFileUnits(config, log)


def pytest_collection_modifyitems(config, items):
    if not hasattr(config, "workerinput"):  # not an xdist worker: a serial run keeps its order
        return
    rank = {unit: index for index, unit in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(_unit_of(item.nodeid), len(rank)))  # stable: a file stays together


@pytest.fixture(scope="session")
def ray_instance():
    import ray

    started = not ray.is_initialized()
    if started:
        # address="local": a fresh instance even if another Ray runs on this machine.
        # Metrics reach the Prometheus endpoint every 5 s instead of every 10 s, so
        # tests/client/test_metrics.py waits less. Not every second: every worker
        # process reports and the metrics agent aggregates at that interval, and at 1 s
        # the agent alone used ~60 mCPU of the two cores all session long.
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", namespace="rafka-tests",
                 _system_config={"metrics_report_interval_ms": METRICS_REPORT_INTERVAL_MS})
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def cluster(ray_instance, tmp_path_factory):
    import rafka

    cluster = rafka.Cluster.start(data_dir=str(tmp_path_factory.mktemp("cluster")), brokers=2,
                                  namespace="rafka-test-shared")
    yield cluster
    cluster.shutdown()


@pytest.fixture
def topic(request) -> str:
    """A fresh topic name for this test (created by the test itself).

    When the test ends, every topic whose name contains this one (the test's own, and
    the changelog and repartition topics of its stream jobs) is deleted from each rafka
    cluster the test used: a replica is an actor process that costs CPU even when idle,
    and a session that kept every test's topics would end with hundreds of them
    starving the brokers' heartbeats on 2 cores.
    """
    name = re.sub(r"[^a-zA-Z0-9._-]", "-", request.node.name)[:80] + "-" + uuid.uuid4().hex[:6]
    yield name
    import rafka

    for value in list(request.node.funcargs.values()):
        if isinstance(value, rafka.Cluster):
            _delete_topics_containing(value, name)


def _delete_topics_containing(cluster, name: str) -> None:
    try:
        admin = cluster.admin()
        for topic in admin.list_topics(include_internal=True):
            if name in topic:
                admin.delete_topic(topic)
    except Exception as error:  # noqa: BLE001 - a cluster the test shut down has nothing to clean
        print(f"conftest: could not delete the topics of {name!r}: {error!r}")


@pytest.fixture(scope="session")
def connect_token() -> str:
    """The REST API token of the session's Connect (docs/security.md)."""
    import secrets

    return secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def connect_runtime(cluster, connect_token, tmp_path_factory):
    """Connect on the shared cluster, its REST API on a free port behind
    ``connect_token``; file connectors may use any file under pytest's temporary
    directory (where every ``tmp_path`` lives)."""
    from rafka.connect import Connect

    runtime = Connect.start(cluster, rest_port=0, rest_token=connect_token,
                            file_roots=[str(tmp_path_factory.getbasetemp())])
    yield runtime
    runtime.shutdown()
