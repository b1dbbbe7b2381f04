"""``rafka connect ...``: Kafka Connect's REST operations from the command line.

``start`` / ``stop`` run the Connect herder on the rafka cluster (through Ray, like
``rafka up``); every other command is one call to the REST API at ``--url`` (default:
``RAFKA_CONNECT_URL``, else the URL ``start`` recorded, else http://127.0.0.1:8083), so
it works from any machine that reaches the API, as ``curl`` would.

Every REST call sends the Connect token (docs/security.md) when one is set:
``RAFKA_CONNECT_TOKEN``, else the file ``RAFKA_CONNECT_TOKEN_FILE`` names, else the token
file ``start --token-file`` recorded.

Errors follow ``rafka.cli.common``'s policy: one line on stderr, exit status 1.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click

from rafka.cli import connection
from rafka.cli.common import CONTEXT, fails_cleanly, parse_configs

DEFAULT_URL = "http://127.0.0.1:8083"
REQUEST_TIMEOUT_S = 120


class RestError(Exception):
    """A REST call failed: the server's message and HTTP status, or why it was not reached."""


def _url(url: str | None) -> str:
    if url:
        return url.rstrip("/")
    if os.environ.get("RAFKA_CONNECT_URL"):
        return os.environ["RAFKA_CONNECT_URL"].rstrip("/")
    state = connection.read_state() or {}
    return (state.get("connect_url") or DEFAULT_URL).rstrip("/")


def _token() -> str | None:
    from rafka.connect.rest_security import load_token

    token = load_token()
    if token is None:
        recorded = (connection.read_state() or {}).get("connect_token_file")
        token = load_token(token_file=recorded) if recorded else None
    return token


def request(url: str, method: str, path: str, body: Any = None) -> Any:
    """One REST call; the decoded JSON answer (None for 204), or RestError with the
    server's message and status."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    token = _token()
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as response:
            payload = response.read()
            return json.loads(payload) if payload else None
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read()).get("message", error.reason)
        except ValueError:
            message = error.reason
        if error.code == 401:
            message += " (set RAFKA_CONNECT_TOKEN or RAFKA_CONNECT_TOKEN_FILE to the token Connect was started with)"
        raise RestError(f"{message} (HTTP {error.code})") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise RestError(f"Connect is not reachable at {url} ({reason}); start it with `rafka connect start`") from None


def _echo(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


def _config_from(configs: tuple[str, ...], file: Any) -> dict:
    config: dict[str, Any] = {}
    if file is not None:
        loaded = json.load(file)
        if not isinstance(loaded, dict):
            raise ValueError(f"{file.name}: a connector config file holds a JSON object")
        config.update(loaded.get("config", loaded) if "config" in loaded and isinstance(loaded["config"], dict) else loaded)
    config.update(parse_configs(configs))
    if not config:
        raise ValueError("give the connector config with --config key=value (repeatable) or --file FILE.json")
    return config


def _name(name: str) -> str:
    return urllib.parse.quote(name, safe="")


url_option = click.option("--url", default=None, help="Connect REST URL (default: RAFKA_CONNECT_URL, "
                                                      "what `rafka connect start` recorded, or http://127.0.0.1:8083).")
config_options = [click.option("--config", "-c", "configs", multiple=True, metavar="KEY=VALUE", help="A config entry."),
                  click.option("--file", "-f", type=click.File("r"), default=None,
                               help="A JSON file: the config, or {\"name\", \"config\"} as Kafka Connect takes it.")]


def with_config(command):
    for option in reversed(config_options):
        command = option(command)
    return command


@click.group(context_settings=CONTEXT)
def connect() -> None:
    """Connectors: start Connect, create, inspect, pause, restart, delete (Kafka Connect's REST API)."""


@connect.command("start")
@click.option("--port", type=click.IntRange(0, 65535), default=8083, show_default=True, help="REST API port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="REST API address (0.0.0.0 for every interface).")
@click.option("--address", default=None, help="Ray address (default: RAY_ADDRESS or `rafka up`'s).")
@click.option("--namespace", default=None, help="Ray namespace of the rafka cluster (default: `rafka up`'s, else rafka).")
@click.option("--token-file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="File holding the REST API token (default: RAFKA_CONNECT_TOKEN, RAFKA_CONNECT_TOKEN_FILE). "
                   "Required with a --host other than 127.0.0.1.")
@click.option("--plugin-path", "plugin_path", multiple=True, metavar="MODULE",
              help="A module prefix connector, transform and converter classes may come from (repeatable).")
@click.option("--file-root", "file_roots", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, resolve_path=True),
              help="A directory file connectors may read and write under (repeatable; none: no file connector).")
@fails_cleanly
def connect_start(port: int, host: str, address: str | None, namespace: str, token_file: str | None,
                  plugin_path: tuple[str, ...], file_roots: tuple[str, ...]) -> None:
    """Start Connect on the running rafka cluster (a second start says where it runs)."""
    from rafka.connect.client import Connect
    from rafka.connect.rest_security import load_token

    token = load_token(token_file=token_file)
    cluster = connection.connect(address, namespace)
    handle = Connect.start(cluster, rest_port=port, rest_host=host, rest_token=token, plugin_path=plugin_path,
                           file_roots=file_roots)
    state = connection.read_state()
    if state is not None:
        recorded = {"connect_token_file": os.path.abspath(token_file)} if token_file else {}
        connection.write_state({**state, "connect_url": handle.rest_url, **recorded})
    click.echo(f"Connect is running; REST API at {handle.rest_url}")


@connect.command("stop")
@click.option("--address", default=None, help="Ray address (default: RAY_ADDRESS or `rafka up`'s).")
@click.option("--namespace", default=None, help="Ray namespace of the rafka cluster (default: `rafka up`'s, else rafka).")
@fails_cleanly
def connect_stop(address: str | None, namespace: str) -> None:
    """Stop every connector (tasks commit first) and Connect itself. Configs stay."""
    from rafka.connect.client import Connect

    cluster = connection.connect(address, namespace)
    Connect.attach(cluster).shutdown()
    click.echo("Connect is stopped")


@connect.command("list")
@click.option("--status", "with_status", is_flag=True, help="Show each connector's and task's state.")
@url_option
@fails_cleanly
def connect_list(with_status: bool, url: str | None) -> None:
    """List connectors."""
    base = _url(url)
    if not with_status:
        for name in request(base, "GET", "/connectors"):
            click.echo(name)
        return
    for name, entry in sorted(request(base, "GET", "/connectors?expand=status").items()):
        status = entry["status"]
        tasks = ", ".join(f"{t['id']}:{t['state']}" for t in status["tasks"])
        click.echo(f"{name}\t{status['type']}\t{status['connector']['state']}\ttasks [{tasks}]")


@connect.command("create")
@click.argument("name")
@with_config
@url_option
@fails_cleanly
def connect_create(name: str, configs: tuple[str, ...], file: Any, url: str | None) -> None:
    """Create connector NAME."""
    _echo(request(_url(url), "POST", "/connectors", {"name": name, "config": _config_from(configs, file)}))


@connect.command("update")
@click.argument("name")
@with_config
@url_option
@fails_cleanly
def connect_update(name: str, configs: tuple[str, ...], file: Any, url: str | None) -> None:
    """Replace NAME's config (or create it)."""
    _echo(request(_url(url), "PUT", f"/connectors/{_name(name)}/config", _config_from(configs, file)))


for _command, _path, _help in (("get", "", "Show NAME's config and tasks."), ("config", "/config", "Show NAME's config."),
                               ("status", "/status", "Show NAME's and its tasks' states."),
                               ("tasks", "/tasks", "Show NAME's task configs."),
                               ("offsets", "/offsets", "Show NAME's committed offsets.")):
    def _make(path: str) -> Any:
        @click.argument("name")
        @url_option
        @fails_cleanly
        def show(name: str, url: str | None) -> None:
            _echo(request(_url(url), "GET", f"/connectors/{_name(name)}{path}"))
        return show

    connect.command(_command, help=_help)(_make(_path))


for _command, _method, _path, _verb in (("pause", "PUT", "/pause", "paused"), ("resume", "PUT", "/resume", "resumed"),
                                        ("delete", "DELETE", "", "deleted")):
    def _make_action(method: str, path: str, verb: str) -> Any:
        @click.argument("name")
        @url_option
        @fails_cleanly
        def action(name: str, url: str | None) -> None:
            request(_url(url), method, f"/connectors/{_name(name)}{path}")
            click.echo(f"connector {name} {verb}")
        return action

    connect.command(_command, help=f"{_command.capitalize()} connector NAME.")(_make_action(_method, _path, _verb))


@connect.command("restart")
@click.argument("name")
@click.option("--include-tasks", is_flag=True, help="Restart the tasks too.")
@click.option("--only-failed", is_flag=True, help="Only what has failed.")
@click.option("--task", "task_id", type=click.IntRange(min=0), default=None, help="Restart only this task.")
@url_option
@fails_cleanly
def connect_restart(name: str, include_tasks: bool, only_failed: bool, task_id: int | None, url: str | None) -> None:
    """Restart connector NAME (or one of its tasks)."""
    base = _url(url)
    if task_id is not None:
        request(base, "POST", f"/connectors/{_name(name)}/tasks/{task_id}/restart")
        click.echo(f"task {task_id} of connector {name} restarted")
        return
    query = f"?includeTasks={str(include_tasks).lower()}&onlyFailed={str(only_failed).lower()}"
    status = request(base, "POST", f"/connectors/{_name(name)}/restart{query}")
    if status is None:  # 204: a plain restart of the connector instance
        click.echo(f"connector {name} restarted")
    else:
        _echo(status)


@connect.command("plugins")
@url_option
@fails_cleanly
def connect_plugins(url: str | None) -> None:
    """List the connector plugins."""
    for plugin in request(_url(url), "GET", "/connector-plugins"):
        click.echo(f"{plugin['class']}\t{plugin['type']}\t{plugin['module']}")
