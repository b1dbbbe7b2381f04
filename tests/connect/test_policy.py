"""ConnectPolicy and the REST API's bind rule, in process (no cluster): which classes a
config may import, which files it may name, and that a REST API on a non-loopback
address without a credential never starts."""

from __future__ import annotations

import pytest

from rafka.connect import ConnectError, ConnectorConfigError, PluginNotFoundError
from rafka.connect.policy import ConnectPolicy
from rafka.connect.rest import RestServer
from rafka.connect.settings import validate


def test_import_path_under_the_plugin_path_is_allowed():
    policy = ConnectPolicy.build(plugin_path=["my_company.connectors"])
    assert policy.allows_module("my_company.connectors.kafka_files")
    assert policy.allows_module("rafka.connect.connectors.file")
    assert not policy.allows_module("my_company.connectors_evil")
    assert not policy.allows_module("os")


def test_a_bad_plugin_path_entry_is_refused_naming_it():
    with pytest.raises(ValueError, match="'../x'"):
        ConnectPolicy.build(plugin_path=["../x"])


def test_a_relative_file_root_is_refused_naming_it():
    with pytest.raises(ValueError, match="'data'"):
        ConnectPolicy.build(file_roots=["data"])


def test_file_connector_without_file_roots_is_refused(tmp_path):
    with pytest.raises(ConnectorConfigError, match="no file_roots"):
        validate("no-roots", {"connector.class": "FileSource", "file": str(tmp_path / "in.txt"), "topic": "t"})


def test_file_source_inside_a_root_is_allowed(tmp_path):
    policy = ConnectPolicy.build(file_roots=[str(tmp_path)])
    _cls, parsed = validate("inside", {"connector.class": "FileSource", "file": str(tmp_path / "in.txt"), "topic": "t"},
                            policy=policy)
    assert parsed["file"] == str(tmp_path / "in.txt")


def test_files_list_with_one_path_outside_is_refused(tmp_path):
    policy = ConnectPolicy.build(file_roots=[str(tmp_path / "a")])
    (tmp_path / "a").mkdir()
    with pytest.raises(ConnectorConfigError) as caught:
        validate("some-outside", {"connector.class": "FileSource", "topic": "t",
                                  "files": [str(tmp_path / "a" / "x"), str(tmp_path / "b")]}, policy=policy)
    assert caught.value.field == "files" and str(tmp_path / "b") in str(caught.value)


def test_parquet_sink_local_path_is_confined_but_a_remote_uri_is_not(tmp_path):
    policy = ConnectPolicy.build(file_roots=[str(tmp_path)])
    with pytest.raises(ConnectorConfigError) as caught:
        validate("pq", {"connector.class": "ParquetSink", "topics": "t", "path": "/var/tmp/rafka-outside"}, policy=policy)
    assert caught.value.field == "path"
    with pytest.raises(ConnectorConfigError):
        validate("pq", {"connector.class": "ParquetSink", "topics": "t", "path": "file:///var/tmp/rafka-outside"},
                 policy=policy)
    validate("pq", {"connector.class": "ParquetSink", "topics": "t", "path": "mock:///dataset"}, policy=policy)


def test_connector_class_module_is_not_imported_when_refused(tmp_path):
    import sys

    name = "rafka_policy_probe_module_that_does_not_exist"
    with pytest.raises(PluginNotFoundError, match="plugin_path"):
        validate("probe", {"connector.class": f"{name}.Connector"})
    assert name not in sys.modules


def test_rest_server_on_a_public_address_without_a_credential_never_starts():
    with pytest.raises(ConnectError, match="without a credential"):
        RestServer(herder=None, host="0.0.0.0", port=0)


def test_rest_server_on_a_public_address_with_a_credential_is_allowed():
    RestServer(herder=None, host="0.0.0.0", port=0, token="t0ken")  # built, not started


def test_config_with_a_nested_object_is_refused_naming_the_key():
    with pytest.raises(ConnectorConfigError) as caught:
        validate("nested", {"connector.class": "FileSink", "topics": "t", "file": {"path": "/etc/passwd"}})
    assert caught.value.field == "file"
