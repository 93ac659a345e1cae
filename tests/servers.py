"""Real Redis, Mosquitto and PostgreSQL servers for tests: free ports, temp dirs, logs kept.

Each server runs in the foreground as a child of the test process, on a free loopback port
(never a machine default such as 6379, 1883 or 5432), in its own temporary directory. The
child is started through ``setpriv --pdeathsig`` so it dies with the test process even when
that process is killed hard (a CI timeout, ``kill -9``): no stray servers are left behind.

Caveat of ``--pdeathsig``: the kernel signals the child when the *thread* that started it
exits. Start servers from the main thread (pytest fixtures do) or from a thread that lives
as long as the server should.

Missing binaries are installed with ``apt-get`` (as root, or through passwordless sudo), so
the suite runs on a fresh Debian machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import psycopg
import redis

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3
APT_LOCK_TIMEOUT_S = 600
LOG_TAIL_LINES = 60

# Ports a developer's machine (or this CI machine) may already serve; tests never take them.
DEFAULT_PORTS = frozenset({1883, 8883, 6379, 5432, 3306, 5672, 4222, 8050, 8000, 8080})

# Where Debian (and most distributions) keep binaries that are not on a user's PATH.
_EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"

_BIND_FAILURES = re.compile(
    r"address already in use|could not bind|could not create listen socket"
    r"|Could not create server TCP listening socket|Error: Address in use",
    re.IGNORECASE,
)

_apt_updated = False


class ServerError(RuntimeError):
    """A test server could not be installed, started or stopped."""


# --- binaries ----------------------------------------------------------------------------


def _pg_bin_dirs() -> list[str]:
    """PostgreSQL's versioned bin dirs, newest major version first."""

    def major(path: str) -> int:
        version = Path(path).parent.name
        return int(version) if version.isdigit() else -1

    return sorted(glob.glob(_PG_BIN_GLOB), key=major, reverse=True)


def find_binary(binary: str) -> str | None:
    """The full path of ``binary`` on PATH, in the sbin dirs or PostgreSQL's bin dirs."""
    if os.path.isabs(binary):
        return binary if os.access(binary, os.X_OK) else None
    found = shutil.which(binary)
    if found:
        return found
    for directory in (*_EXTRA_BIN_DIRS, *_pg_bin_dirs()):
        candidate = os.path.join(directory, binary)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _privileged_prefix() -> list[str]:
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True).returncode == 0:
        return [sudo, "-n"]
    raise ServerError(
        "installing system packages needs root (or passwordless sudo); "
        "run `bash scripts/test` as root or install the packages yourself"
    )


def apt_install(packages: Sequence[str]) -> None:
    """``apt-get install -y`` the packages, running ``apt-get update`` once per process."""
    global _apt_updated
    prefix = _privileged_prefix()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock_opt = ["-o", f"DPkg::Lock::Timeout={APT_LOCK_TIMEOUT_S}"]
    # Why a file lock: parallel test workers would otherwise race for dpkg's lock.
    with open(os.path.join(tempfile.gettempdir(), "loopline-apt.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        commands: list[list[str]] = []
        if not _apt_updated:
            commands.append([*prefix, "apt-get", *lock_opt, "update", "-q"])
        commands.append([*prefix, "apt-get", *lock_opt, "install", "-y", "-q", *packages])
        for command in commands:
            result = subprocess.run(
                command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
            )
            if result.returncode != 0:
                output = (result.stdout + result.stderr)[-4000:]
                raise ServerError(f"`{' '.join(command)}` failed ({result.returncode}):\n{output}")
            if "update" in command:
                _apt_updated = True


def ensure_installed(binary: str, apt_package: str) -> str:
    """The path of ``binary``; installs Debian's ``apt_package`` first when it is missing."""
    path = find_binary(binary)
    if path:
        return path
    print(f"[loopline tests] {binary} is missing: apt-get install {apt_package}", file=sys.stderr)
    apt_install([apt_package])
    path = find_binary(binary)
    if not path:
        raise ServerError(f"{binary} is still missing after installing {apt_package}")
    return path


# --- ports and processes -----------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port that is free now and is none of the machine's default ports."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in DEFAULT_PORTS:
            return port


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    user: str | None = None,
    death_signal: signal.Signals = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the foreground, output to ``log_path``, dying with this process."""
    prefix: list[str] = []
    setpriv = find_binary("setpriv")
    if setpriv:
        prefix = [setpriv, "--pdeathsig", death_signal.name.removeprefix("SIG")]
        if user:
            # Why setpriv, not runuser: setpriv execs (the pid we hold is the server's)
            # and sets the death signal after switching user, which would clear it.
            prefix += ["--reuid", user, "--regid", user, "--init-groups"]
    elif user:
        prefix = ["runuser", "-u", user, "--"]
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [*prefix, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Why a new session: Ctrl-C in a terminal must reach pytest, which then stops
            # the servers in order, not the servers directly.
            start_new_session=True,
        )


def _world_traversable(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in (path, *path.parents))


class Server:
    """A foreground server process in a temp dir, with its log; start, stop, restart."""

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, *, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or 0
        self._fixed_port = port is not None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"loopline-{self.name}-"))
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s = 0.0

    # subclasses fill these in
    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _user(self) -> str | None:
        return None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the server's log."""
        return _tail(self.log_path, lines)

    def start(self) -> Self:
        """Start on a free port (or the fixed one) and wait until the server answers."""
        began = time.monotonic()
        for attempt in range(1, START_ATTEMPTS + 1):
            if not self._fixed_port:
                self.port = free_port()
            self.proc = _spawn(
                self._argv(), self.log_path, user=self._user(), death_signal=self.stop_signal
            )
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self._ready():
                    self.startup_s = time.monotonic() - began
                    return self
                time.sleep(0.02)
            else:
                self.stop(force=True)
                raise ServerError(
                    f"{self.name} did not become ready on {self.host}:{self.port} within "
                    f"{START_TIMEOUT_S:.0f} s; log {self.log_path}:\n{self.log_tail()}"
                )
            retry = not self._fixed_port and bool(_BIND_FAILURES.search(self.log_tail()))
            if not retry or attempt == START_ATTEMPTS:
                raise ServerError(
                    f"{self.name} exited with {self.proc.returncode} while starting on "
                    f"{self.host}:{self.port}; log {self.log_path}:\n{self.log_tail()}"
                )
        raise AssertionError("unreachable")

    def stop(self, *, force: bool = False) -> None:
        """Stop the server (``force``: kill it at once); its temp dir stays for a restart."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL if force else self.stop_signal)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would."""
        self.stop(force=True)

    def restart(self) -> Self:
        """Stop and start again on the same port."""
        self.stop()
        self._fixed_port = True
        return self.start()

    def save_log(self, directory: Path) -> Path | None:
        """Copy the log into ``directory`` (for CI artifacts); the copy's path."""
        if not self.log_path.exists():
            return None
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{self.name}-{self.port}.log"
        shutil.copyfile(self.log_path, target)
        return target

    def close(self) -> None:
        """Stop the server and delete its temp dir."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


# --- Redis -------------------------------------------------------------------------------


class RedisServer(Server):
    """``redis-server`` keeping nothing on disk; ``url`` is ``redis://127.0.0.1:PORT/0``."""

    name = "redis"

    def __init__(self, *, port: int | None = None, extra_args: Sequence[str] = ()) -> None:
        self.binary = ensure_installed("redis-server", "redis-server")
        super().__init__(port=port)
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _argv(self) -> list[str]:
        return [
            self.binary,
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", "",
            *self.extra_args,
        ]  # fmt: skip

    def _ready(self) -> bool:
        client = redis.Redis(
            host=self.host, port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5
        )
        try:
            # Why the pid: a PONG from another server that holds the port is no proof.
            info = client.info("server")
            return self.proc is not None and int(info["process_id"]) == self.proc.pid
        except redis.RedisError:
            return False
        finally:
            client.close()


# --- Mosquitto ---------------------------------------------------------------------------


MOSQUITTO_DEFAULTS: dict[str, str] = {
    "allow_anonymous": "true",
    "persistence": "false",
    # Why: the default (1000) silently drops QoS 1 messages for a slow or offline subscriber.
    "max_queued_messages": "100000",
    # 0: no limit on QoS 1/2 messages in flight to one client.
    "max_inflight_messages": "0",
    "log_dest": "stderr",
}


class MosquittoServer(Server):
    """Mosquitto from a generated config; ``host``, ``port`` and ``url`` (``mqtt://...``).

    ``options`` overrides or adds config lines, e.g. ``{"max_inflight_messages": "1000"}``.
    """

    name = "mosquitto"

    def __init__(self, *, port: int | None = None, options: dict[str, str] | None = None) -> None:
        self.binary = ensure_installed("mosquitto", "mosquitto")
        super().__init__(port=port)
        # Why ``user``: started as root, mosquitto switches to its own user, and a change
        # of user clears the death signal (prctl PR_SET_PDEATHSIG): it would outlive us.
        self.options = {
            **MOSQUITTO_DEFAULTS,
            "user": pwd.getpwuid(os.geteuid()).pw_name,
            **(options or {}),
        }
        self.config_path = self.workdir / "mosquitto.conf"

    @classmethod
    def with_accounts(cls, *, port: int | None = None) -> MosquittoServer:
        """A broker that admits only the accounts in its password file, as its ACL file allows.

        Both files start empty in the server's temp dir (``password_file``, ``acl_file``);
        ``pid_file`` names its pid, and ``reload()`` makes it reread them.
        """
        server = cls(port=port)
        server.password_file.touch()
        server.acl_file.touch()
        server.options.update(
            allow_anonymous="false",
            password_file=str(server.password_file),
            acl_file=str(server.acl_file),
            pid_file=str(server.pid_file),
        )
        return server

    @property
    def password_file(self) -> Path:
        return self.workdir / "passwd"

    @property
    def acl_file(self) -> Path:
        return self.workdir / "acl"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "mosquitto.pid"

    def reload(self) -> None:
        """SIGHUP: Mosquitto rereads its password and ACL files."""
        if self.proc is None:
            raise ServerError("mosquitto is not running")
        self.proc.send_signal(signal.SIGHUP)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _argv(self) -> list[str]:
        lines = [f"listener {self.port} {self.host}"]
        lines += [f"{key} {value}" for key, value in self.options.items()]
        self.config_path.write_text("\n".join(lines) + "\n")
        return [self.binary, "-c", str(self.config_path)]

    def _ready(self) -> bool:
        # Why the log line: a TCP connect alone could reach another broker on the port;
        # mosquitto logs "running" only once all its listeners are open.
        if " running" not in self.log_tail(20):
            return False
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def __repr__(self) -> str:
        return f"MosquittoServer(url={self.url!r})"


# --- PostgreSQL --------------------------------------------------------------------------

PG_OS_USER = "postgres"
PG_SUPERUSER = "postgres"
_DB_NAME_UNSAFE = re.compile(r"[^a-z0-9_]+")


def _ensure_os_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--shell", "/usr/sbin/nologin", name],
            check=True, capture_output=True,
        )  # fmt: skip


class PostgresServer(Server):
    """A throwaway PostgreSQL cluster: trust auth, fsync off, socket in its temp dir.

    ``url`` is the base URL ``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``;
    ``url_for(create_database())`` makes a fresh database and gives its URL.
    """

    name = "postgres"
    # SIGINT is PostgreSQL's "fast shutdown": roll back sessions, exit at once.
    stop_signal = signal.SIGINT

    def __init__(self, *, port: int | None = None, options: dict[str, str] | None = None) -> None:
        self.initdb = ensure_installed("initdb", "postgresql")
        self.bindir = Path(self.initdb).resolve().parent
        super().__init__(port=port)
        self.options = {
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **(options or {}),
        }
        self.datadir = self.workdir / "data"
        self._as_root = os.geteuid() == 0
        self._admin: psycopg.Connection[Any] | None = None
        try:
            self._prepare()
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    def _prepare(self) -> None:
        if self._as_root:
            # PostgreSQL refuses to run as root: the cluster belongs to the postgres user,
            # who must be able to reach the temp dir.
            if not _world_traversable(self.workdir.parent):
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = Path(tempfile.mkdtemp(prefix="loopline-postgres-", dir="/tmp"))
                self.log_path = self.workdir / "postgres.log"
                self.datadir = self.workdir / "data"
            _ensure_os_user(PG_OS_USER)
            shutil.chown(self.workdir, PG_OS_USER, PG_OS_USER)
        argv = [
            self.initdb, "-D", str(self.datadir), "-U", PG_SUPERUSER, "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        ]  # fmt: skip
        if self._as_root:
            argv = ["runuser", "-u", PG_OS_USER, "--", *argv]
        result = subprocess.run(
            argv, cwd=self.workdir, stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise ServerError(
                f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        if self._as_root:
            self.log_path.touch()
            shutil.chown(self.log_path, PG_OS_USER, PG_OS_USER)

    def _user(self) -> str | None:
        return PG_OS_USER if self._as_root else None

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{PG_SUPERUSER}@{self.host}:{self.port}/{database}"

    def _argv(self) -> list[str]:
        argv = [
            str(self.bindir / "postgres"), "-D", str(self.datadir),
            "-p", str(self.port), "-k", str(self.workdir),
            "-c", f"listen_addresses={self.host}",
        ]  # fmt: skip
        for key, value in self.options.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def _connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=PG_SUPERUSER,
            dbname=dbname,
            connect_timeout=2,
            autocommit=True,
        )

    def _ready(self) -> bool:
        try:
            with self._connect() as conn:
                row = conn.execute("show data_directory").fetchone()
            # Why: only our own cluster counts, not another server that holds the port.
            return row is not None and Path(str(row[0])) == self.datadir
        except psycopg.OperationalError:
            return False

    def _admin_conn(self) -> psycopg.Connection[Any]:
        if self._admin is None or self._admin.closed or self._admin.broken:
            self._admin = self._connect()
        return self._admin

    def create_database(self, name: str | None = None) -> str:
        """Create a new, empty database (a unique name unless given); its name.

        ``url_for(create_database())`` is the new database's URL.
        """
        if name is None:
            name = f"t_{uuid.uuid4().hex[:16]}"
        name = _DB_NAME_UNSAFE.sub("_", name.lower())[:63]
        self._admin_conn().execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting anyone still using it."""
        self._admin_conn().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, *, force: bool = False) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
        super().stop(force=force)


def unique_db_name(hint: str) -> str:
    """A database name from ``hint`` (e.g. a test name) made unique and safe, <= 63 chars."""
    slug = _DB_NAME_UNSAFE.sub("_", hint.lower()).strip("_")[:40]
    return f"t_{slug}_{uuid.uuid4().hex[:8]}"
