"""``rafka bench produce|consume|e2e``: throughput and latency, in the spirit of Kafka's
``kafka-producer-perf-test`` and ``kafka-consumer-perf-test``.

Cluster: the running one (``rafka up``, ``--address``), or with ``--embedded`` a
throwaway cluster of ``--brokers`` brokers on a local Ray instance, in a temporary data
directory that is deleted when the command ends. Topic: by default a temporary
``rafka-bench-*`` topic with ``--partitions``, ``--replication-factor`` and ``--config``,
deleted afterwards; with ``--topic``, an existing topic, left in place (produce and e2e
add records to it; e2e expects no other producer on it).

Output: a progress bar on stderr (only on a terminal, not with ``--quiet``); a summary
table (on stdout, or on stderr when ``--json -`` puts the JSON on stdout); ``--json``
with every figure, the effective configuration and the machine; ``--plot FILE.png`` with
throughput over time and a latency histogram. What each figure measures is the contract
of ``rafka.cli.bench_runs``; the JSON carries it in ``latency_ms.measures``.

Bad input fails before any cluster work, as one line on stderr with exit status 1.

This module imports nothing heavy at the top: ``rafka`` imports it for every command,
and Ray must not be imported before ``connection.connect`` has set its authentication
mode. The measuring half (numpy, pyarrow, Ray) is imported once a run starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from typing import Any, Callable, Iterator

import click

import rafka
from rafka.cli import connection
from rafka.cli.common import CONTEXT, address_options, fails_cleanly, parse_configs
from rafka.errors import ClusterError, RafkaError

EMBEDDED_NAMESPACE = "rafka-bench"
SEND_TIME_BYTES = 8  # e2e: the send time (int64 ns) at the head of every value
TEMPORARY_TOPIC_PARTITIONS = 3  # as benchmarks/cluster_bench.py


@dataclasses.dataclass(frozen=True)
class Workload:
    """What to send: the options common to every bench command."""

    records: int
    record_size_bytes: int
    keys: int
    acks: str
    batch_size_bytes: int | None  # None: the producer's default, until with_producer_defaults()
    linger_ms: float | None
    compression: str
    mode: str
    rate_per_s: float | None = None
    producer_process: bool = False  # e2e: the producer in a process of its own

    def validate(self) -> None:
        """Raise ValueError naming the first bad figure (before any cluster work)."""
        for name, value, minimum in (("--records", self.records, 1), ("--record-size", self.record_size_bytes, 1),
                                     ("--keys", self.keys, 0), ("--batch-size", self.batch_size_bytes, 1),
                                     ("--linger-ms", self.linger_ms, 0)):
            if value is not None and not value >= minimum:
                raise ValueError(f"{name} must be at least {minimum}, got {value:g}")
        if self.rate_per_s is not None and self.record_size_bytes < SEND_TIME_BYTES:
            raise ValueError(f"--record-size must be at least {SEND_TIME_BYTES} for e2e (each value starts with "
                             f"its send time), got {self.record_size_bytes}")
        if self.rate_per_s is not None and not (self.rate_per_s > 0 and math.isfinite(self.rate_per_s)):
            raise ValueError(f"--rate must be a positive number of records/s, got {self.rate_per_s:g}")

    def with_producer_defaults(self) -> "Workload":
        """This workload with the producer's defaults filled in (imports Ray)."""
        from rafka.client.producer import ProducerConfig

        defaults = ProducerConfig()
        return dataclasses.replace(
            self, batch_size_bytes=defaults.batch_size if self.batch_size_bytes is None else self.batch_size_bytes,
            linger_ms=defaults.linger_ms if self.linger_ms is None else self.linger_ms)

    def producer_options(self) -> dict[str, Any]:
        return {"acks": "all" if self.acks == "all" else int(self.acks), "compression_type": self.compression,
                "batch_size": self.batch_size_bytes, "linger_ms": self.linger_ms}

    def key_pool(self) -> list[bytes | None]:
        """Record i gets key ``pool[i % len(pool)]``; [None] means null keys."""
        return [b"key-%d" % index for index in range(self.keys)] or [None]

    def table_rows(self) -> int:
        """Rows per ``send_batch`` table: about --batch-size bytes of values."""
        return max(1, min(self.records, self.batch_size_bytes // self.record_size_bytes))


# -- cluster and topic ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Target:
    """Where to run: the cluster and the topic."""

    embedded: bool
    brokers: int | None
    address: str | None
    namespace: str | None  # None: the one `rafka up` recorded, else rafka
    topic: str | None
    partitions: int | None
    replication_factor: int | None
    topic_configs: dict[str, str]

    def validate(self) -> None:
        if self.topic is not None and (self.partitions or self.replication_factor or self.topic_configs):
            raise ValueError("--partitions, --replication-factor and --config shape the temporary topic; "
                             "they cannot go with --topic")
        if not self.embedded and self.brokers is not None:
            raise ValueError("--brokers goes with --embedded")
        for name, value in (("--partitions", self.partitions), ("--replication-factor", self.replication_factor),
                            ("--brokers", self.brokers)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.embedded and self.broker_count() < (self.replication_factor or 1):
            raise ValueError(f"--replication-factor {self.replication_factor} needs at least as many --brokers, "
                             f"got {self.brokers}")

    def broker_count(self) -> int:
        return self.brokers or self.replication_factor or 1


@contextlib.contextmanager
def open_target(target: Target, say: Callable[[str], None]) -> Iterator[tuple[Any, str]]:
    """Yield (cluster, topic); afterwards delete the temporary topic and stop (and erase)
    an embedded cluster, also when the run failed or was interrupted."""
    data_dir = tempfile.mkdtemp(prefix="rafka-bench-embedded-") if target.embedded else None
    cluster = None
    try:
        if target.embedded:
            say(f"starting an embedded cluster of {target.broker_count()} broker(s) in {data_dir}")
            try:
                cluster = rafka.Cluster.start(data_dir=data_dir, brokers=target.broker_count(),
                                              namespace=EMBEDDED_NAMESPACE, logging_level="ERROR",
                                              log_to_driver=False, include_dashboard=False)
            except RafkaError:
                raise
            except Exception as error:  # noqa: BLE001 - Ray's start-up failures, as one line
                first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise ClusterError(f"could not start an embedded cluster: {first_line}") from None
        else:
            cluster = connection.connect(target.address, target.namespace)
        admin = cluster.admin()
        if target.topic is not None:
            admin.describe_topic(target.topic)  # an unknown topic fails before any work
            yield cluster, target.topic
            return
        topic = f"rafka-bench-{uuid.uuid4().hex[:12]}"
        admin.create_topic(topic, partitions=target.partitions or TEMPORARY_TOPIC_PARTITIONS,
                           replication_factor=target.replication_factor or 1, config=target.topic_configs)
        try:
            yield cluster, topic
        finally:
            if not target.embedded:  # an embedded cluster is erased whole
                try:
                    admin.delete_topic(topic)
                except RafkaError as error:
                    say(f"could not delete the temporary topic {topic}: {error}")
    finally:
        if target.embedded:
            if cluster is not None:
                cluster.shutdown()
            else:  # a start that failed half-way may have left the local Ray running
                import ray

                ray.shutdown()
            shutil.rmtree(data_dir, ignore_errors=True)


# -- output --------------------------------------------------------------------------

class Progress:
    """A rich progress bar on stderr, or nothing when stderr is not a terminal or --quiet.
    ``advance`` is called from hot loops: it touches the bar at most every 0.1 s."""

    UPDATE_INTERVAL_S = 0.1

    def __init__(self, quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.enabled = not quiet and sys.stderr.isatty()
        # Four refreshes a second: the refresh thread competes for the GIL with the run.
        self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=self.console,
                                 disable=not self.enabled, refresh_per_second=4, transient=True)
        self._counts: dict[Any, list] = {}  # task -> [started_s, shown, not yet shown, shown at s]

    def __enter__(self) -> "Progress":
        self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.stop()

    def task(self, description: str, total: int) -> Any:
        task = self._bar.add_task(description, total=total, rate="")
        now_s = time.perf_counter()
        self._counts[task] = [now_s, 0, 0, now_s]
        return task

    def advance(self, task: Any, count: int) -> None:
        if not self.enabled:
            return
        counts = self._counts[task]
        counts[2] += count
        now_s = time.perf_counter()
        if now_s - counts[3] >= self.UPDATE_INTERVAL_S:
            counts[1] += counts[2]
            rate_per_s = counts[1] / max(now_s - counts[0], 1e-9)
            self._bar.update(task, advance=counts[2], rate=f"{rate_per_s:,.0f} records/s")
            counts[2], counts[3] = 0, now_s


def machine_info() -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import ray

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "rafka": rafka.__version__, "ray": ray.__version__, "pyarrow": pa.__version__, "numpy": np.__version__}


def print_summary(console: Any, result: dict[str, Any]) -> None:
    from rich.table import Table

    config = result["config"]
    keys = f"{config['keys']:,} keys" if config["keys"] else "null keys"
    console.print(f"rafka bench {result['command']} ({config['mode']}): {config['partitions']} partition(s), "
                  f"replication factor {config['replication_factor']}, acks={config['acks']}, "
                  f"{config['record_size_bytes']:,} B values, {keys}", highlight=False)
    table = Table()
    table.add_column("figure")
    table.add_column("value", justify="right")
    latency = result["latency_ms"]
    rows = [("records", f"{result['records']:,}"), ("duration", f"{result['duration_s']:.2f} s"),
            ("records/s", f"{result['records_per_s']:,.0f}"), ("MB/s (values)", f"{result['mb_per_s']:,.1f}")]
    rows += [(f"latency {name}", f"{latency[name]:,.2f} ms") for name in ("p50", "p95", "p99", "max")]
    for figure, value in rows:
        table.add_row(figure, value)
    console.print(table)
    console.print(f"latency: {latency['measures']} ({latency['samples']:,} samples)", highlight=False)


def write_plot(path: str, result: dict[str, Any], latencies_ms: list[float]) -> None:
    """Throughput per interval (left) and the latency histogram (right), as a PNG.
    matplotlib is imported here only: the Agg canvas, no pyplot and no GUI backend."""
    import numpy as np
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # matplotlib is an extra: name it, so the fix is one command
        raise ImportError(f"--plot needs matplotlib ({error}): pip install 'rafka[bench]'") from error

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    throughput, histogram = figure.subplots(1, 2)
    timeline = result["throughput_timeline"]
    starts_s = np.arange(len(timeline["records_per_s"])) * timeline["interval_s"]
    widths_s = np.diff(np.append(starts_s, result["duration_s"]))  # the last one runs to the end
    throughput.bar(starts_s, timeline["records_per_s"], width=widths_s, align="edge")
    throughput.set(title=f"records/s per {timeline['interval_s']:g} s", xlabel="seconds since start",
                   ylabel="records/s")
    latency = result["latency_ms"]
    histogram.hist(latencies_ms, bins=60)
    for name, style in (("p50", "--"), ("p99", ":")):
        histogram.axvline(latency[name], color="black", linestyle=style, label=f"{name} {latency[name]:.2f} ms")
    histogram.legend()
    histogram.set(title=f"latency: {latency['measures']}", xlabel="ms", ylabel="samples")
    histogram.title.set_fontsize("small")
    figure.suptitle(f"rafka bench {result['command']}: {result['records']:,} records, "
                    f"{result['records_per_s']:,.0f} records/s, {result['mb_per_s']:,.1f} MB/s")
    figure.savefig(path, format="png", dpi=100)


def _check_output_path(option: str, path: str | None) -> None:
    """Bad output paths fail before the run, not after it."""
    if path is None or path == "-":
        return
    if option == "--plot" and not path.lower().endswith(".png"):
        raise ValueError(f"--plot writes a PNG: give a file name ending in .png, got {path!r}")
    if option == "--plot":
        try:
            import matplotlib  # noqa: F401 - only whether it imports; pyplot stays unloaded
        except ImportError as error:
            raise ValueError(f"--plot needs matplotlib ({error}): pip install 'rafka[bench]'") from None
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"{option}: directory {directory!r} does not exist")


# -- the commands --------------------------------------------------------------------

def _common_options(records_default: int, linger_ms_default: float | None, modes: tuple[str, ...]) -> Callable:
    linger_ms_description = "the producer's" if linger_ms_default is None else f"{linger_ms_default:g}"

    # e2e has a single mode (send()): no --mode option there.
    mode_option = [click.option("--mode", type=click.Choice(modes), default=modes[0], show_default=True)] \
        if len(modes) > 1 else []

    def decorate(command: Callable) -> Callable:
        options = [
            click.option("--records", type=int, default=records_default, show_default=True),
            click.option("--record-size", "record_size_bytes", type=int, default=100, show_default=True,
                         help="Value bytes per record."),
            click.option("--keys", type=int, default=0, show_default=True,
                         help="Distinct keys, cycled (0: null keys)."),
            click.option("--acks", type=click.Choice(["0", "1", "all"]), default="1", show_default=True),
            click.option("--batch-size", "batch_size_bytes", type=int, default=None,
                         help="Producer batch_size in bytes (default: the producer's); with --mode batch also "
                              "the size of each table."),
            click.option("--linger-ms", type=float, default=linger_ms_default,
                         help=f"Producer linger_ms (default: {linger_ms_description})."),
            click.option("--compression", type=click.Choice(["none", "lz4", "zstd"]), default="none",
                         show_default=True),
            *mode_option,
            click.option("--topic", default=None, help="An existing topic (default: a temporary one, deleted after)."),
            click.option("--partitions", type=int, default=None, help="Of the temporary topic (default 3)."),
            click.option("--replication-factor", type=int, default=None, help="Of the temporary topic (default 1)."),
            click.option("--config", "configs", multiple=True, metavar="KEY=VALUE",
                         help="A config of the temporary topic, e.g. min.insync.replicas=2."),
            click.option("--embedded", is_flag=True,
                         help="Start a throwaway local cluster instead of using `rafka up`'s."),
            click.option("--brokers", type=int, default=None,
                         help="With --embedded (default: the replication factor)."),
            click.option("--json", "json_path", default=None, metavar="FILE",
                         help="Write the results as JSON (- for stdout)."),
            click.option("--plot", "plot_path", default=None, metavar="FILE.png",
                         help="Write throughput over time and a latency histogram."),
            click.option("--quiet", "-q", is_flag=True, help="No progress bar or status lines."),
            address_options,
            fails_cleanly,
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _bench(command: str, options: dict[str, Any], rate_per_s: float | None = None,
           producer_process: bool = False) -> None:
    """Validate, run ``command`` on its cluster and topic, then report."""
    workload = Workload(options["records"], options["record_size_bytes"], options["keys"], options["acks"],
                        options["batch_size_bytes"], options["linger_ms"], options["compression"],
                        options.get("mode", "send"), rate_per_s, producer_process)
    target = Target(options["embedded"], options["brokers"], options["address"], options["namespace"],
                    options["topic"], options["partitions"], options["replication_factor"],
                    parse_configs(options["configs"]))
    workload.validate()
    target.validate()
    _check_output_path("--json", options["json_path"])
    _check_output_path("--plot", options["plot_path"])
    progress = Progress(options["quiet"])

    def say(line: str) -> None:
        if not options["quiet"]:
            progress.console.print(line, highlight=False)

    with open_target(target, say) as (cluster, topic):
        from rafka.cli import bench_runs  # numpy, pyarrow, Ray: only now that Ray is connected

        workload = workload.with_producer_defaults()
        run = {"produce": bench_runs.run_produce, "e2e": bench_runs.run_e2e,
               # Without --topic the temporary topic is filled (untimed) before it is read.
               "consume": functools.partial(bench_runs.run_consume, fill=target.topic is None)}[command]
        with progress:
            measurement = run(cluster, topic, workload, progress)
        result = _result(command, cluster, topic, target, workload, measurement.summary(workload.record_size_bytes))
    # With the JSON on stdout, the table goes to stderr so stdout stays parseable.
    print_summary(progress.console if options["json_path"] == "-" else _stdout_console(), result)
    if options["json_path"] == "-":
        click.echo(json.dumps(result, indent=2))
    elif options["json_path"]:
        with open(options["json_path"], "w") as handle:
            json.dump(result, handle, indent=2)
        say(f"wrote {options['json_path']}")
    if options["plot_path"]:
        write_plot(options["plot_path"], result, measurement.latencies_ms)
        say(f"wrote {options['plot_path']}")


def _result(command: str, cluster: Any, topic: str, target: Target, workload: Workload,
            figures: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: the figures, the effective configuration, the machine."""
    description = cluster.admin().describe_topic(topic)
    return {"command": command, "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "argv": sys.argv[1:], "records_requested": workload.records, **figures,
            "config": {**dataclasses.asdict(workload), "topic": topic, "temporary_topic": target.topic is None,
                       "partitions": len(description["partitions"]),
                       "replication_factor": len(description["partitions"][0]["replicas"]),
                       "topic_configs": description["config"]},
            "cluster": {"embedded": target.embedded, "brokers": len(cluster.brokers())},
            "machine": machine_info()}


def _stdout_console() -> Any:
    from rich.console import Console

    return Console()


@click.group(context_settings=CONTEXT)
def bench() -> None:
    """Measure throughput and latency: produce, consume, end to end.

    \b
    The figures of issues 3 and 4 (benchmarks/cluster_bench.py, replication_bench.py):
      rafka bench produce --embedded --keys 10000
      rafka bench produce --embedded --mode batch --records 4000000 --batch-size 5000000
      rafka bench consume --embedded --mode batch --records 4000000
      rafka bench consume --embedded --keys 10000
      rafka bench e2e --embedded --rate 5000 --records 50000 --keys 100
      rafka bench produce --embedded --brokers 3 --replication-factor 3 --acks all \\
          --keys 10000 --records 500000 --config min.insync.replicas=2
    """


@bench.command("produce")
@_common_options(records_default=1_000_000, linger_ms_default=None, modes=("send", "batch"))
def bench_produce(**options: Any) -> None:
    """Producer throughput and ack latency: send() per record, or send_batch() of Arrow tables."""
    _bench("produce", options)


@bench.command("consume")
@_common_options(records_default=1_000_000, linger_ms_default=None, modes=("poll", "batch"))
def bench_consume(**options: Any) -> None:
    """Consumer throughput: poll() of records or poll_batches() of Arrow batches, from the beginning."""
    _bench("consume", options)


@bench.command("e2e")
@_common_options(records_default=50_000, linger_ms_default=0, modes=("send",))
@click.option("--rate", "rate_per_s", type=float, default=5000, show_default=True, help="Records/s the producer sends.")
@click.option("--producer-process", is_flag=True,
              help="Run the producer in a process of its own (a Ray actor on this node), not beside the consumer.")
def bench_e2e(rate_per_s: float, producer_process: bool, **options: Any) -> None:
    """End-to-end latency (send() to poll_batches()) at a fixed rate."""
    _bench("e2e", options, rate_per_s, producer_process)
