"""The REST API, in the shape of Kafka Connect's (default port 8083).

=========  ==============================================  =============================
method     path                                            answer
=========  ==============================================  =============================
GET        /                                               version
GET        /connectors[?expand=status&expand=info]          names (or name → details)
POST       /connectors  {"name", "config"}                 201 info; 409 exists; 400 bad
GET        /connectors/{name}                              info (name, config, tasks, type)
GET        /connectors/{name}/config                       the config
PUT        /connectors/{name}/config  {config}             201 created or 200 updated
GET        /connectors/{name}/status                       connector and task states
POST       /connectors/{name}/restart[?includeTasks&onlyFailed]   204 (202 and status with either)
PUT        /connectors/{name}/pause                        202
PUT        /connectors/{name}/resume                       202
DELETE     /connectors/{name}                              204
GET        /connectors/{name}/tasks                        task configs
GET        /connectors/{name}/tasks/{id}/status            one task's state
POST       /connectors/{name}/tasks/{id}/restart           204
GET        /connectors/{name}/offsets                      committed offsets
GET        /connector-plugins                              connector plugins
PUT        /connector-plugins/{class}/config/validate      error_count and per-key errors
=========  ==============================================  =============================

Every error is JSON ``{"error_code": <status>, "message": "..."}``: 400 for a bad config
or body (the message names the key), 401 without the credential, 403 for a cross-origin
request, 404 for an unknown connector or path, 405 for a method a path does not take,
409 for a name in use, 413 for a body over ``MAX_BODY_BYTES``, 415 for a body that is
not ``application/json``, 421 for a ``Host`` that is not the API's, 500 otherwise. The
checks before any handler runs are in connect/rest_security.py (docs/security.md).

The server runs an aiohttp application on its own thread and event loop inside the
herder actor; each request runs the herder's (blocking) method on a thread pool, so one
slow request does not hold up the others.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Callable

from aiohttp import web

from rafka import __version__
from rafka.connect.errors import ConnectError
from rafka.connect.rest_security import guard

MAX_BODY_BYTES = 1024 * 1024  # a connector config is a few KiB


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error_code": status, "message": message}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _error(error.status, error.reason if error.status != 405 else
                      f"{request.method} is not allowed on {request.path}")
    except ConnectError as error:
        return _error(error.status_code, str(error))
    except (TypeError, ValueError) as error:
        return _error(400, str(error))
    except Exception as error:  # noqa: BLE001 - a 500 with the reason, never a crash
        return _error(500, f"{type(error).__name__}: {error}")


class RestServer:
    def __init__(self, herder: Any, host: str, port: int, token: str | None = None) -> None:
        self.herder = herder
        self.host = host
        self.port = port
        self._guard = guard(host, token)  # refuses a non-loopback host without a token
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> str:
        """Bind and serve on a thread; returns the URL (the real port when port was 0)."""
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start_site())
            except BaseException as error:  # noqa: BLE001 - reported to start()
                failure.append(error)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        threading.Thread(target=serve, name="connect-rest", daemon=True).start()
        started.wait(30)
        if failure:
            raise ConnectError(f"the Connect REST API cannot listen on {self.host}:{self.port}: {failure[0]}")
        return f"http://{self.host}:{self.port}"

    async def _start_site(self) -> None:
        app = web.Application(middlewares=[self._guard, _errors], client_max_size=MAX_BODY_BYTES)
        routes = [
            web.get("/", self.root),
            web.get("/connectors", self.list_connectors), web.post("/connectors", self.create),
            web.get("/connectors/{name}", self.info), web.delete("/connectors/{name}", self.delete),
            web.get("/connectors/{name}/config", self.get_config), web.put("/connectors/{name}/config", self.put_config),
            web.get("/connectors/{name}/status", self.status),
            web.post("/connectors/{name}/restart", self.restart),
            web.put("/connectors/{name}/pause", self.pause), web.put("/connectors/{name}/resume", self.resume),
            web.get("/connectors/{name}/tasks", self.tasks),
            web.get("/connectors/{name}/tasks/{task}/status", self.task_status),
            web.post("/connectors/{name}/tasks/{task}/restart", self.restart_task),
            web.get("/connectors/{name}/offsets", self.offsets),
            web.get("/connector-plugins", self.plugins),
            web.put("/connector-plugins/{plugin}/config/validate", self.validate),
        ]
        app.add_routes(routes)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        try:
            future.result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)

    # -- handlers ------------------------------------------------------------------------

    async def _call(self, method: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, method, *args)

    async def root(self, request: web.Request) -> web.Response:
        return web.json_response({"version": __version__, "commit": "", "kafka_cluster_id": self.herder.namespace})

    async def list_connectors(self, request: web.Request) -> web.Response:
        names = await self._call(self.herder.list_connectors)
        expand = request.query.getall("expand", [])
        if not expand:
            return web.json_response(names)
        unknown = [e for e in expand if e not in ("status", "info")]
        if unknown:
            return _error(400, f"expand must be status or info, got {unknown[0]!r}")
        result = {}
        for name in names:
            entry = {}
            if "status" in expand:
                entry["status"] = await self._call(self.herder.status, name)
            if "info" in expand:
                entry["info"] = await self._call(self.herder.info, name)
            result[name] = entry
        return web.json_response(result)

    async def create(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object with 'name' and 'config'")
        name, config = body.get("name"), body.get("config")
        if name is None and isinstance(config, dict):
            name = config.get("name")
        if not name:
            return _error(400, "missing required field 'name'")
        if not isinstance(config, dict):
            return _error(400, "missing required field 'config' (a JSON object)")
        info = await self._call(self.herder.create, name, config)
        return web.json_response(info, status=201)

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response(await self._call(self.herder.info, request.match_info["name"]))

    async def delete(self, request: web.Request) -> web.Response:
        await self._call(self.herder.delete, request.match_info["name"])
        return web.Response(status=204)

    async def get_config(self, request: web.Request) -> web.Response:
        return web.json_response(await self._call(self.herder.config, request.match_info["name"]))

    async def put_config(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _error(400, "the request body must be the connector config as a JSON object")
        created, info = await self._call(self.herder.put_config, request.match_info["name"], body)
        return web.json_response(info, status=201 if created else 200)

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(await self._call(self.herder.status, request.match_info["name"]))

    async def restart(self, request: web.Request) -> web.Response:
        include_tasks = _flag(request, "includeTasks")
        only_failed = _flag(request, "onlyFailed")
        status = await self._call(self.herder.restart, request.match_info["name"], include_tasks, only_failed)
        if not include_tasks and not only_failed:
            return web.Response(status=204)  # Kafka Connect's answer to a plain restart
        return web.json_response(status, status=202)

    async def pause(self, request: web.Request) -> web.Response:
        await self._call(self.herder.pause, request.match_info["name"])
        return web.Response(status=202)

    async def resume(self, request: web.Request) -> web.Response:
        await self._call(self.herder.resume, request.match_info["name"])
        return web.Response(status=202)

    async def tasks(self, request: web.Request) -> web.Response:
        return web.json_response(await self._call(self.herder.task_configs, request.match_info["name"]))

    async def task_status(self, request: web.Request) -> web.Response:
        return web.json_response(await self._call(self.herder.task_status, request.match_info["name"],
                                                  _task_id(request)))

    async def restart_task(self, request: web.Request) -> web.Response:
        await self._call(self.herder.restart_task, request.match_info["name"], _task_id(request))
        return web.Response(status=204)

    async def offsets(self, request: web.Request) -> web.Response:
        return web.json_response(await self._call(self.herder.offsets, request.match_info["name"]))

    async def plugins(self, request: web.Request) -> web.Response:
        return web.json_response(await self._call(self.herder.plugin_list))

    async def validate(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _error(400, "the request body must be the connector config as a JSON object")
        return web.json_response(await self._call(self.herder.validate_config, request.match_info["plugin"], body))


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"the request body is not valid JSON: {error}") from None
    except RecursionError:
        raise ValueError("the request body is not valid JSON: nested too deeply") from None


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value == "true"


def _task_id(request: web.Request) -> int:
    text = request.match_info["task"]
    if not text.isdigit():
        raise ValueError(f"task id must be a non-negative integer, got {text!r}")
    return int(text)
