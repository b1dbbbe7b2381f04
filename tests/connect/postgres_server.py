"""A throwaway PostgreSQL server for tests: the machine's own server binaries, a fresh
cluster in a temp dir, trust auth, listening on a free 127.0.0.1 port.

``PostgresServer.start()`` runs ``initdb`` and ``pg_ctl start`` and creates a database;
``stop()`` runs ``pg_ctl stop -m fast`` and removes the temp dir. It is safe to call
``stop()`` after a failed or partial ``start()``. PostgreSQL refuses to run as root, so
under root every server command runs as the ``postgres`` system user, which owns the
temp dir. The binaries come from the Debian ``postgresql`` package
(``/usr/lib/postgresql/<version>/bin``); when they are missing ``start()`` fails with a
message saying so (a missing database is a broken test machine, not a skipped test).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

BIN_DIR_GLOB = "/usr/lib/postgresql/*/bin"
DATABASE = "rafka_test"
START_TIMEOUT_S = 60


def find_bin_dir() -> str:
    """The ``bin`` dir of the newest installed PostgreSQL major version."""
    candidates = [path for path in glob.glob(BIN_DIR_GLOB) if os.path.exists(os.path.join(path, "pg_ctl"))]
    if not candidates:
        raise RuntimeError(f"PostgreSQL server binaries not found ({BIN_DIR_GLOB}/pg_ctl): install them with "
                           "`apt-get install postgresql` (.ci/run does this on CI)")
    return max(candidates, key=lambda path: int(path.split("/")[-2].split(".")[0]))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        self.bin_dir = find_bin_dir()
        self.port = free_port()
        self.base_dir: str | None = None
        self.data_dir = ""
        self.log_path = ""
        self._run_as: pwd.struct_passwd | None = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        self.superuser = self._run_as.pw_name if self._run_as else pwd.getpwuid(os.geteuid()).pw_name
        self._started = False

    @property
    def url(self) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> str:
        """Create and start the cluster and its database; return the database URL."""
        # mkdtemp in /tmp (not pytest's tmp_path, whose parents are root-only 0700) so
        # the postgres user can reach it.
        self.base_dir = tempfile.mkdtemp(prefix="rafka-pg-")
        self.data_dir = os.path.join(self.base_dir, "data")
        self.log_path = os.path.join(self.base_dir, "server.log")
        if self._run_as:
            os.chown(self.base_dir, self._run_as.pw_uid, self._run_as.pw_gid)
        self._run("initdb", "-D", self.data_dir, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync",
                  "-U", self.superuser)
        options = (f"-p {self.port} -k {self.base_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._started = True  # from here on, stop() must run pg_ctl stop
        try:
            self._run("pg_ctl", "-D", self.data_dir, "-l", self.log_path, "-w", "-t", str(START_TIMEOUT_S),
                      "-o", options, "start")
        except RuntimeError as error:
            raise RuntimeError(f"{error}\nserver log:\n{self._log_tail()}") from None
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.superuser,
                  DATABASE)
        return self.url

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its files; idempotent."""
        try:
            if self._started and os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
                self._run("pg_ctl", "-D", self.data_dir, "-m", "fast", "-w", "stop")
        finally:
            self._started = False
            if self.base_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)
                self.base_dir = None

    def _run(self, program: str, *args: str) -> None:
        command = [os.path.join(self.bin_dir, program), *args]
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        identity = {}
        if self._run_as:
            identity = {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}
            environment["HOME"] = self._run_as.pw_dir
        # pg_ctl start leaves the postmaster running with our stdout; send it to a file
        # so subprocess.run does not wait for the server's pipe to close.
        with tempfile.TemporaryFile() as output:
            completed = subprocess.run(command, cwd=self.base_dir, env=environment, stdin=subprocess.DEVNULL,
                                       stdout=output, stderr=subprocess.STDOUT, timeout=START_TIMEOUT_S + 30,
                                       **identity)
            if completed.returncode != 0:
                output.seek(0)
                raise RuntimeError(f"{program} exited with {completed.returncode}: "
                                   f"{output.read().decode(errors='replace').strip()}")

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, errors="replace") as log:
                return "".join(log.readlines()[-20:])
        except OSError:
            return "(no log)"
