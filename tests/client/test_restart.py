"""A cluster restarted on the same data directory brings back topics, configs, records."""

from __future__ import annotations

import rafka


def test_restart_on_same_data_dir_restores_topics_configs_and_records(ray_instance, tmp_path):
    data_dir = str(tmp_path / "data")
    cluster = rafka.Cluster.start(data_dir=data_dir, brokers=1, namespace="rafka-test-restart")
    cluster.admin().create_topic("orders", partitions=2, config={"retention.ms": "86400000"})
    with cluster.producer() as producer:
        for i in range(100):
            producer.send("orders", b"order-%d" % i, key=b"customer-%d" % (i % 7))
    cluster.shutdown()

    again = rafka.Cluster.start(data_dir=data_dir, brokers=1, namespace="rafka-test-restart")
    try:
        admin = again.admin()
        assert admin.list_topics() == ["orders"]
        assert admin.describe_configs("orders")["retention.ms"] == "86400000"
        consumer = again.consumer(auto_offset_reset="earliest")
        consumer.assign([rafka.TopicPartition("orders", p) for p in range(2)])
        values = []
        for _ in range(20):
            values += [record.value for record in consumer.poll(timeout_s=0.5)]
            if len(values) == 100:
                break
        assert sorted(values) == sorted(b"order-%d" % i for i in range(100))
        with again.producer() as producer:
            assert producer.send("orders", b"more", partition=0).result(timeout=30).offset == admin.list_offsets("orders")[0] - 1
    finally:
        again.shutdown()


def test_second_start_in_the_same_namespace_is_refused(cluster):
    import pytest

    with pytest.raises(rafka.ClusterError, match="already running"):
        rafka.Cluster.start(brokers=1, namespace=cluster.namespace)


def test_connect_attaches_to_a_running_cluster(cluster):
    attached = rafka.Cluster.connect(namespace=cluster.namespace)
    assert "broker_id" in attached.brokers()[0]
    attached.shutdown()  # only detaches: the shared cluster keeps running
    assert cluster.admin().list_topics() is not None
    assert all(broker["alive"] for broker in cluster.brokers())


def test_connect_without_a_cluster_says_so(ray_instance):
    import pytest

    with pytest.raises(rafka.ClusterError, match="no rafka cluster is running in Ray namespace 'nothing-here'"):
        rafka.Cluster.connect(namespace="nothing-here")
