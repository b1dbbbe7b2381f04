"""How the ``rafka`` command finds, starts and stops a persistent cluster.

``rafka up`` records what it did in a state file (``$RAFKA_HOME/cli.json``, default
``~/.rafka``): the Ray address, the namespace, and whether it started the Ray head
itself. Later commands connect through that file (or ``--address`` / ``RAY_ADDRESS``),
in the namespace it recorded unless ``--namespace`` says otherwise. ``rafka down``
stops the rafka actors and, only if ``up`` started it, that Ray head — by killing the
processes of its own session directory, never with ``ray stop`` (which would stop
every Ray instance on the machine).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import psutil

from rafka.errors import ClusterError

DEFAULT_NAMESPACE = "rafka"


def home() -> str:
    return os.environ.get("RAFKA_HOME") or os.path.join(os.path.expanduser("~"), ".rafka")


def state_path() -> str:
    return os.path.join(home(), "cli.json")


def read_state() -> dict | None:
    try:
        with open(state_path()) as handle:
            return json.load(handle)
    except (FileNotFoundError, ValueError):
        return None


def write_state(state: dict) -> None:
    os.makedirs(home(), exist_ok=True)
    with open(state_path(), "w") as handle:
        json.dump(state, handle, indent=2)


def clear_state() -> None:
    try:
        os.unlink(state_path())
    except FileNotFoundError:
        pass


def resolve_address(address: str | None) -> str | None:
    """--address, else RAY_ADDRESS, else what `rafka up` recorded."""
    if address:
        return address
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    state = read_state()
    return state["address"] if state else None


def resolve_namespace(address: str | None, namespace: str | None) -> str:
    """--namespace, else the one `rafka up` recorded for this address, else ``rafka``.

    ``address`` is the resolved one: the recorded namespace belongs to the recorded
    cluster only."""
    if namespace:
        return namespace
    state = read_state()
    if state and state.get("namespace") and address in (None, state.get("address")):
        return state["namespace"]
    return DEFAULT_NAMESPACE


def is_recorded_cluster(state: dict | None, address: str | None, namespace: str) -> bool:
    """Whether (the resolved) ``address`` and ``namespace`` name the cluster of the state
    file: only then may ``rafka down`` forget it, or stop the Ray head ``up`` started."""
    return bool(state) and address == state.get("address") and namespace == state.get("namespace",
                                                                                      DEFAULT_NAMESPACE)


def connect(address: str | None, namespace: str | None = None) -> Any:
    """Connect this process to the cluster's Ray and return a ``rafka.Cluster``."""
    address = resolve_address(address)
    if address is None:
        raise ClusterError("no rafka cluster is running (start one with `rafka up`)")
    namespace = resolve_namespace(address, namespace)
    check_reachable(address)
    use_auth_mode(address)  # before Ray is imported: it reads the mode once

    import ray

    import rafka

    _ray_messages_to_stderr()
    try:
        ray.init(address=address, namespace=namespace, logging_level="ERROR", log_to_driver=False,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ClusterError(f"cannot reach Ray at {address}: {error}") from None
    return rafka.Cluster.connect(namespace=namespace)


REACHABLE_TIMEOUT_S = 5.0


def check_reachable(address: str) -> None:
    """Fail fast on a ``host:port`` nobody listens on: ``ray.init`` would retry it forever.

    Other forms (``auto``, ``local``) are left to Ray."""
    host_port = address.removeprefix("ray://")
    host, separator, port = host_port.rpartition(":")
    if not separator or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=REACHABLE_TIMEOUT_S):
            pass
    except OSError as error:
        raise ClusterError(f"cannot reach Ray at {address}: {error.strerror or error}") from None


def _ray_messages_to_stderr() -> None:
    """Ray's driver prints raylet warnings ("N worker processes have been started...")
    on stdout, which for `rafka consume` and `--format json` is the data. Send them to
    stderr. This wraps a private Ray function; when it is gone, nothing changes."""
    import ray._private.worker as ray_worker

    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_rafka_to_stderr", False):
        return

    def to_stderr(data: dict, ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr._rafka_to_stderr = True
    ray_worker.print_to_stdstream = to_stderr


def use_auth_mode(address: str) -> None:
    """Connect to a Ray head `rafka up` started with the authentication it uses."""
    state = read_state()
    if state and state.get("address") == address and state.get("ray_auth_mode"):
        os.environ.setdefault("RAY_AUTH_MODE", state["ray_auth_mode"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_ray_head(num_cpus: int | None) -> dict:
    """Start a local Ray head of our own with ``ray start``; return how to find and stop it."""
    port = free_port()
    temp_dir = os.path.join("/tmp", f"rafka-ray-{port}")
    command = [os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head", f"--port={port}",
               f"--temp-dir={temp_dir}", "--include-dashboard=false", "--disable-usage-stats",
               f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"]
    if num_cpus is not None:
        command.append(f"--num-cpus={num_cpus}")
    # Token authentication on (Ray's default for new local clusters); the token lives in
    # ~/.ray/auth_token, and `connect` turns the mode on for clusters `up` started.
    environment = dict(os.environ, RAY_AUTH_MODE="token")
    ray_command = os.path.join(os.path.dirname(sys.executable), "ray")
    if not os.path.exists(os.path.join(os.path.expanduser("~"), ".ray", "auth_token")):
        subprocess.run([ray_command, "get-auth-token", "--generate"], capture_output=True, timeout=60, env=environment)
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)
    if completed.returncode != 0:
        raise ClusterError(f"`ray start --head` failed: {completed.stderr.strip().splitlines()[-1:]}")
    return {"address": f"127.0.0.1:{port}", "started_ray": True, "ray_temp_dir": temp_dir, "ray_port": port,
            "ray_auth_mode": "token"}


def ray_head_processes(state: dict) -> list[psutil.Process]:
    """The live processes of the Ray head ``start_ray_head`` started (by its temp dir)."""
    marker = state["ray_temp_dir"]
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in process.info["cmdline"] or []):
                found.append(process)
        except (psutil.Error, TypeError):
            continue
    return found


def stop_ray_head(state: dict) -> int:
    """Kill the processes of the Ray head ``start_ray_head`` started; return how many."""
    doomed = ray_head_processes(state)
    for process in doomed:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(doomed, timeout=10)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    return len(doomed)


def wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False
