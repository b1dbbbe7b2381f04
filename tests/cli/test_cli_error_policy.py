"""One error policy for every command group (rafka.cli.common): bad input is one line on
stderr, ``rafka: error: ... (ErrorClass)``, exit status 1, no traceback. In process, no
cluster: every case fails before a cluster is needed, or on an address nothing answers."""

from __future__ import annotations

import http.server
import sys
import threading

import click
import pytest
from click.testing import CliRunner

from rafka.cli import main as cli_main
from rafka.cli.main import cli

UNREACHABLE = "127.0.0.1:9"  # nothing listens on the discard port


@pytest.fixture
def not_connect_url():
    """An HTTP server that answers 200 with JSON that is not Connect's: a --url pointing
    at the wrong service."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = b'{"some-other-service": 1}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass  # http.server logs every request to stderr; the test reads nothing from it

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


CASES = {
    "cluster": (["status", "--address", UNREACHABLE], "cannot reach Ray at 127.0.0.1:9"),
    "down": (["down"], "no rafka cluster is running"),
    "topics": (["topics", "create", "t", "--config", "retention.ms"], "--config takes key=value, got 'retention.ms'"),
    "groups": (["groups", "reset-offsets", "g", "--topic", "t"], "give exactly one of --to-earliest"),
    "produce": (["produce", "t", "--address", UNREACHABLE], "cannot reach Ray at 127.0.0.1:9"),
    "consume": (["consume", "t", "--offset", "3"], "--offset needs exactly one --partition"),
    "bench": (["bench", "produce", "--plot", "out.txt"], "got 'out.txt'"),
    "connect create": (["connect", "create", "c", "--config", "=FileStreamSource"],
                       "--config takes key=value, got '=FileStreamSource'"),
    "connect start": (["connect", "start", "--address", UNREACHABLE], "cannot reach Ray at 127.0.0.1:9"),
    "connect list": (["connect", "list", "--url", "http://127.0.0.1:9"], "Connect is not reachable"),
}


def _invoke(args: list[str], tmp_path, monkeypatch):
    monkeypatch.setenv("RAFKA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAFKA_CONNECT_URL", raising=False)
    monkeypatch.delenv("RAFKA_DEBUG", raising=False)
    return CliRunner().invoke(cli, args)


def _assert_one_error_line(result, naming: str) -> None:
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rafka: error: ") and naming in lines[0] and lines[0].endswith(")"), lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("group", sorted(CASES))
def test_bad_input_to_each_command_group_is_one_line_and_exit_1(group, tmp_path, monkeypatch):
    args, naming = CASES[group]
    _assert_one_error_line(_invoke(args, tmp_path, monkeypatch), naming)


def test_connect_answer_that_is_not_connects_is_one_line_not_a_traceback(not_connect_url, tmp_path, monkeypatch):
    result = _invoke(["connect", "list", "--status", "--url", not_connect_url], tmp_path, monkeypatch)
    _assert_one_error_line(result, "(TypeError)")


def test_connect_errors_name_their_class_as_every_other_command_does(tmp_path, monkeypatch):
    result = _invoke(["connect", "list", "--url", "http://127.0.0.1:9"], tmp_path, monkeypatch)
    assert result.stderr.rstrip().endswith("(RestError)")


def test_main_turns_an_error_outside_any_command_into_one_line(monkeypatch, capsys):
    """The entry point applies the policy once more, for code no command wraps."""

    @click.command("health-check-raises")
    def raises() -> None:
        raise LookupError("raised outside fails_cleanly\nsecond line")

    cli.add_command(raises)
    try:
        monkeypatch.delenv("RAFKA_DEBUG", raising=False)
        monkeypatch.setattr(sys, "argv", ["rafka", "health-check-raises"])
        with pytest.raises(SystemExit) as exited:
            cli_main.main()
    finally:
        del cli.commands["health-check-raises"]
    assert exited.value.code == 1
    assert capsys.readouterr().err == "rafka: error: raised outside fails_cleanly (LookupError)\n"


def test_bench_no_longer_imports_main():
    """cli/main.py imports cli/bench.py; bench takes the shared helpers from cli/common.py."""
    import ast
    import inspect

    from rafka.cli import bench, connect

    for module in (bench, connect):
        tree = ast.parse(inspect.getsource(module))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "rafka.cli.main" not in imported, module.__name__
