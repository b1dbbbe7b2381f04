"""StreamsJob's supervision without Ray: fake worker handles stand in for the actors,
so these tests check which workers the job kills and starts, not Ray itself."""

from __future__ import annotations

import pytest

from rafka.errors import RequestTimeoutError
from rafka.streams import StreamsApp, runtime


class FakeWorker:
    """A worker handle: ``stats.remote()`` / ``stop.remote()`` return refs for FakeRay.get."""

    def __init__(self, name: str, events: list) -> None:
        self.name = name
        self.answers = True
        self.stats = type("Method", (), {"remote": lambda _self: ("stats", self)})()
        self.stop = type("Method", (), {"remote": lambda _self, *args: ("stop", self)})()
        events.append(("start", name))

    def __repr__(self) -> str:
        return f"FakeWorker({self.name})"


class FakeRay:
    """Stands in for both ``ray`` (remote, kill) and ``rpc`` (get) in streams.runtime."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.started: list[FakeWorker] = []
        self.fail_kills: set[str] = set()

    def remote(self, cls):
        fake = self

        class Options:
            def options(self, **options):
                return self

            def remote(self, *args):
                worker = FakeWorker(f"w{len(fake.started)}", fake.events)
                fake.started.append(worker)
                return worker

        return Options()

    def kill(self, worker: FakeWorker, no_restart: bool = False) -> None:
        assert no_restart, "a worker must be killed for good: Ray would restart it (max_restarts=-1)"
        if worker.name in self.fail_kills:
            self.fail_kills.discard(worker.name)
            raise RuntimeError("kill failed")
        self.events.append(("kill", worker.name))

    def get(self, ref, timeout_s=None):
        if isinstance(ref, list):
            return [self.get(r, timeout_s) for r in ref]
        what, worker = ref
        if not worker.answers:
            raise RequestTimeoutError(f"{worker.name} did not answer")
        if what == "stop":
            self.events.append(("stop", worker.name))
            return True
        return {"tasks": [], "records": 0, "fatal": None}


@pytest.fixture
def fake_ray(monkeypatch):
    fake = FakeRay()
    monkeypatch.setattr(runtime, "ray", fake)
    monkeypatch.setattr(runtime, "rpc", fake)
    monkeypatch.setattr(runtime, "prepare_topics", lambda cluster, compiled: {"in": 2})
    monkeypatch.setattr(runtime, "SUPERVISE_INTERVAL_S", 3600)  # the test runs the rounds itself
    return fake


def start_job(workers: int):
    app = StreamsApp("supervised")
    app.source("in").to("out")
    cluster = type("FakeCluster", (), {"namespace": "test"})()
    return runtime.StreamsJob(cluster, app, workers=workers)


def test_supervisor_kills_a_worker_that_does_not_answer_before_replacing_it(fake_ray):
    job = start_job(workers=2)
    first, second = job._workers
    first.answers = False  # stats times out: slow, hung, or being restarted by Ray
    job._check_workers()
    replacement = job._workers[0]
    assert replacement is not first and job._workers[1] is second
    assert fake_ray.events[-2:] == [("kill", "w0"), ("start", replacement.name)]
    job.stop()
    assert {name for event, name in fake_ray.events if event == "kill"} == {"w0", "w1", replacement.name}
    assert {name for event, name in fake_ray.events if event == "stop"} == {"w1", replacement.name}


def test_stop_kills_every_worker_it_started_even_after_a_failed_kill(fake_ray):
    job = start_job(workers=1)
    (first,) = job._workers
    first.answers = False
    fake_ray.fail_kills.add("w0")  # the supervisor's kill fails; stop() must try again
    job._check_workers()
    assert ("kill", "w0") not in fake_ray.events
    job.stop()
    assert {name for event, name in fake_ray.events if event == "kill"} == {w.name for w in fake_ray.started}
    assert not job._started


def test_stop_kills_workers_that_do_not_answer_their_stop_call(fake_ray):
    job = start_job(workers=2)
    for worker in job._workers:
        worker.answers = False
    job.stop()
    assert {name for event, name in fake_ray.events if event == "kill"} == {"w0", "w1"}
    job._check_workers()  # a round after stop() starts nothing
    assert len(fake_ray.started) == 2
