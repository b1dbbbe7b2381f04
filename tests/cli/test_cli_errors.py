"""How the CLI turns failures into one line, and which cluster `down` may forget: in
process, no cluster."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from rafka.cli import connection
from rafka.cli.main import fails_cleanly


def _command_raising(error: BaseException) -> click.Command:
    @click.command()
    @fails_cleanly
    def command() -> None:
        raise error

    return command


def test_an_actor_dying_mid_command_is_one_line_and_exit_1(monkeypatch):
    from ray.exceptions import ActorDiedError

    monkeypatch.delenv("RAFKA_DEBUG", raising=False)
    result = CliRunner().invoke(_command_raising(ActorDiedError()))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rafka: error: ") and lines[0].endswith("(ActorDiedError)")


def test_an_unexpected_error_is_one_line_and_rafka_debug_shows_the_traceback(monkeypatch):
    monkeypatch.delenv("RAFKA_DEBUG", raising=False)
    result = CliRunner().invoke(_command_raising(RuntimeError("first line\nsecond line")))
    assert result.exit_code == 1 and result.output == "rafka: error: first line (RuntimeError)\n"
    monkeypatch.setenv("RAFKA_DEBUG", "1")
    result = CliRunner().invoke(_command_raising(KeyError("boom")))
    assert isinstance(result.exception, KeyError)


def test_usage_errors_keep_clicks_exit_status():
    result = CliRunner().invoke(_command_raising(click.UsageError("bad usage")))
    assert result.exit_code == 2 and "bad usage" in result.output


@pytest.mark.parametrize(
    ("address", "namespace", "recorded"),
    [
        ("127.0.0.1:6379", "ns", True),
        ("10.0.0.9:6379", "ns", False),  # down --address OTHER
        ("127.0.0.1:6379", "other", False),  # another namespace on the same Ray
    ],
)
def test_down_forgets_only_the_recorded_cluster(address, namespace, recorded):
    state = {"address": "127.0.0.1:6379", "namespace": "ns", "started_ray": True}
    assert connection.is_recorded_cluster(state, address, namespace) is recorded
    assert connection.is_recorded_cluster(None, address, namespace) is False


def test_commands_default_to_the_namespace_up_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("RAFKA_HOME", str(tmp_path))
    assert connection.resolve_namespace("127.0.0.1:6379", None) == "rafka"
    connection.write_state({"address": "127.0.0.1:6379", "namespace": "ns"})
    assert connection.resolve_namespace("127.0.0.1:6379", None) == "ns"
    assert connection.resolve_namespace("127.0.0.1:6379", "given") == "given"
    assert connection.resolve_namespace("10.0.0.9:6379", None) == "rafka"
