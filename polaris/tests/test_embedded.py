"""The embedded PostgreSQL and Valkey: shared by processes, stopped by the last one."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from django.test import SimpleTestCase

from polaris.testing import BASE_DIR

# A process that loads the settings with nothing configured, then waits.
USER = (
    "import django, os, time;"
    " os.environ['DJANGO_SETTINGS_MODULE'] = 'polaris.settings';"
    " django.setup(); print('ready', flush=True); time.sleep(120)"
)


class EmbeddedServersTests(SimpleTestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="polaris-emb-", dir="/tmp"))
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"}
        }
        self.env["POLARIS_DATA_DIR"] = str(self.folder)

    def start_user(self) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", USER],
            cwd=BASE_DIR,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        self.assertEqual(process.stdout.readline().strip(), "ready")
        return process

    def servers_running(self) -> tuple[bool, bool]:
        state = json.loads((self.folder / "valkey.json").read_text() or "{}")
        valkey = psutil.pid_exists(state.get("pid", -1))
        pid_file = self.folder / "postgres" / "postmaster.pid"
        postgres = pid_file.exists() and psutil.pid_exists(
            int(pid_file.read_text().split()[0])
        )
        return postgres, valkey

    def wait_until_stopped(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pid_file = self.folder / "postgres" / "postmaster.pid"
            if not pid_file.exists() and not (self.folder / "valkey.json").exists():
                return
            time.sleep(0.2)
        self.fail("the embedded servers are still running")

    def test_the_last_process_to_leave_stops_both_servers_even_on_sigterm(
        self,
    ) -> None:
        first = self.start_user()
        second = self.start_user()
        self.assertEqual(self.servers_running(), (True, True))

        first.send_signal(signal.SIGTERM)
        first.wait(timeout=20)
        # The second process still uses them: they keep running.
        self.assertEqual(self.servers_running(), (True, True))

        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
        self.wait_until_stopped()

    def test_ctrl_c_while_valkey_starts_leaves_no_server_behind(self) -> None:
        # Interrupted before its state file records it, nothing else would ever
        # stop it: it runs in a session of its own.
        interrupted_while_starting = (
            "from polaris import embedded\n"
            "def interrupt(state): raise KeyboardInterrupt\n"
            "embedded._valkey_alive = interrupt\n"
            "try:\n"
            "    embedded.redis_url()\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', flush=True)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", interrupted_while_starting],
            cwd=BASE_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.stdout.strip(), "interrupted", result.stderr)
        valkeys = [
            process
            for process in psutil.process_iter(["cmdline"])
            if str(self.folder) in " ".join(process.info["cmdline"] or [])
        ]
        self.assertEqual(valkeys, [])
        self.assertFalse((self.folder / "valkey.json").exists())
