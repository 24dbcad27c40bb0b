"""Helpers for tests that start real processes (Celery worker, uvicorn) next to pytest.

Child processes get an environment that points them at the test database of this
pytest process, so they see what a `TransactionTestCase` committed.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


class ChildProcess:
    """A subprocess that is terminated (then killed) when the block ends."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.command = command
        self.env = env
        self.log_path = Path(f"/tmp/polaris-test-{uuid.uuid4().hex[:8]}.log")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "ChildProcess":
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

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
    """A real Celery worker consuming a queue of its own (parallel-safe)."""

    def __init__(self, **env_overrides: str) -> None:
        self.queue = f"polaris-test-{uuid.uuid4().hex[:8]}"
        super().__init__(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "polaris",
                "worker",
                "--pool=solo",
                f"--queues={self.queue}",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=info",
            ],
            child_environment(**env_overrides),
        )

    def __enter__(self) -> "CeleryWorker":
        super().__enter__()
        self.wait_for_log("ready.")
        return self
