"""kcat (Debian's package, librdkafka inside) lists, produces and consumes through the
Kafka listener, as a person would at a shell."""

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (.ci/run installs it)")
TIMEOUT_S = 60


def kcat(bootstrap: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["kcat", "-b", bootstrap, *args], input=stdin, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_kcat_lists_brokers_topics_and_partitions(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=3, replication_factor=2)
    listing = kcat(bootstrap, "-L", "-t", topic)
    assert "2 brokers:" in listing
    assert f'topic "{topic}" with 3 partitions:' in listing
    for partition in cluster.admin().describe_topic(topic)["partitions"]:
        assert f"partition {partition['partition']}, leader {partition['leader']}," in listing


def test_kcat_produces_and_consumes_keyed_records(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=2)
    lines = [f"key-{i}:value-{i}" for i in range(20)]
    kcat(bootstrap, "-P", "-t", topic, "-K:", stdin="\n".join(lines) + "\n")
    out = kcat(bootstrap, "-C", "-t", topic, "-e", "-q", "-f", "%k:%s\n")
    assert sorted(out.splitlines()) == sorted(lines)


def test_kcat_consumes_records_of_rafka_producer_with_offsets(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1)
    producer = cluster.producer()
    for i in range(5):
        producer.send(topic, value=f"native-{i}".encode(), headers=[("src", b"rafka")])
    producer.flush()
    producer.close()
    out = kcat(bootstrap, "-C", "-t", topic, "-p", "0", "-o", "2", "-e", "-q", "-f", "%o %s %h\n")
    assert out.splitlines() == [f"{i} native-{i} src=rafka" for i in range(2, 5)]
