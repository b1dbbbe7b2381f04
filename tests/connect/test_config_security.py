"""Connector configs cannot reach outside what the operator allowed (issue 21): classes
come from the built-ins and the configured plugin path only (nothing else is imported),
file connectors stay under the configured root directories, and nothing a client can
write to a topic is ever unpickled."""

from __future__ import annotations

import base64
import os
import pickle
import time

import pytest
import ray

from rafka.connect import ConnectorConfigError


def test_connector_class_outside_the_plugin_path_is_refused_unimported(connect_runtime):
    with pytest.raises(ConnectorConfigError) as caught:
        connect_runtime.create("outside-plugin-path", {"connector.class": "json.JSONDecoder", "topics": "t",
                                                       "file": "/tmp/x"})
    assert "json.JSONDecoder" in str(caught.value) and "plugin_path" in str(caught.value)
    assert "outside-plugin-path" not in connect_runtime.list()


def test_transform_type_outside_the_plugin_path_is_refused(connect_runtime, tmp_path):
    config = {"connector.class": "FileSink", "topics": "t", "file": str(tmp_path / "o.txt"),
              "transforms": "x", "transforms.x.type": "json.JSONDecoder"}
    with pytest.raises(ConnectorConfigError) as caught:
        connect_runtime.create("transform-outside", config)
    assert caught.value.field == "transforms.x.type" and "plugin_path" in str(caught.value)


def test_converter_outside_the_plugin_path_is_refused(connect_runtime, tmp_path):
    config = {"connector.class": "FileSink", "topics": "t", "file": str(tmp_path / "o.txt"),
              "value.converter": "json.JSONDecoder"}
    with pytest.raises(ConnectorConfigError) as caught:
        connect_runtime.create("converter-outside", config)
    assert caught.value.field == "value.converter" and "plugin_path" in str(caught.value)


def test_file_source_outside_the_file_roots_is_refused(connect_runtime):
    with pytest.raises(ConnectorConfigError) as caught:
        connect_runtime.create("steal-passwd", {"connector.class": "FileSource", "file": "/etc/passwd",
                                                "topic": "stolen"})
    assert caught.value.field == "file" and "/etc/passwd" in str(caught.value)
    assert "steal-passwd" not in connect_runtime.list()


def test_file_sink_escaping_the_roots_through_dot_dot_is_refused(connect_runtime, tmp_path):
    escape = str(tmp_path / ".." / ".." / ".." / ".." / ".." / "tmp" / "rafka-escape.txt")
    with pytest.raises(ConnectorConfigError) as caught:
        connect_runtime.create("escape-sink", {"connector.class": "FileSink", "topics": "t", "file": escape})
    assert caught.value.field == "file"
    assert "escape-sink" not in connect_runtime.list()


def test_file_sink_through_a_symlink_out_of_the_roots_is_refused(connect_runtime, tmp_path):
    link = tmp_path / "link"
    os.symlink("/etc", link)
    with pytest.raises(ConnectorConfigError) as caught:
        connect_runtime.create("symlink-sink", {"connector.class": "FileSink", "topics": "t",
                                                "file": str(link / "rafka-out.txt")})
    assert caught.value.field == "file"


class _WritesMarker:
    """Unpickling this creates ``path``: proof that data was run as code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_plugin_record_in_the_configs_topic_is_never_unpickled(cluster, connect_runtime, tmp_path):
    from rafka.connect.herder import HERDER_NAME
    from rafka.connect.store import CONFIGS_TOPIC, TopicStore

    marker = str(tmp_path / "unpickled")
    store = TopicStore(cluster, CONFIGS_TOPIC)
    try:
        # Written the way the herder writes (the internal path): even a record that got
        # into the topic is data, never code.
        store.put("plugin-evil", {"class": base64.b64encode(pickle.dumps(_WritesMarker(marker))).decode()})
    finally:
        store.close()
    herder = ray.get_actor(HERDER_NAME, namespace=cluster.namespace)
    pid = ray.get(herder.__ray_call__.remote(lambda self: os.getpid()), timeout=30)
    ray.kill(herder, no_restart=False)
    deadline = time.monotonic() + 120
    while True:
        try:
            again = ray.get_actor(HERDER_NAME, namespace=cluster.namespace)
            if ray.get(again.__ray_call__.remote(lambda self: os.getpid()), timeout=10) != pid:
                ray.get(again.ready.remote(), timeout=120)
                break
        except Exception:  # noqa: BLE001 - restarting
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the herder did not come back")
        time.sleep(0.2)
    try:
        assert not os.path.exists(marker), "the herder unpickled a record from __connect_configs"
    finally:
        store = TopicStore(cluster, CONFIGS_TOPIC)
        try:
            store.put("plugin-evil", None)
        finally:
            store.close()
