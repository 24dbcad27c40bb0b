"""Ctrl-C in an ops command: one line saying what was left done, status 130, no
KeyboardInterrupt traceback. Real processes, interrupted with a real SIGINT."""

import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.test import SimpleTestCase, TransactionTestCase

from polaris.testing import BASE_DIR, ChildProcess, child_environment
from sync.models import SyncRun, UserMapping


def start(args: list[str], **env: str) -> subprocess.Popen[str]:
    # The command starts with Ctrl-C's default action, as from a terminal. A suite
    # started in the background (`pytest &` from a script) has SIGINT ignored, and
    # children inherit that: Python would then never raise KeyboardInterrupt.
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        env=child_environment(**env),
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def interrupt(
    process: subprocess.Popen[str], signum: int = signal.SIGINT
) -> tuple[int, str]:
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    return process.returncode, err


class InterruptTests(TransactionTestCase):
    def test_an_import_keeps_the_rows_above_its_last_progress_line(self) -> None:
        rows = "".join(f"TAG-{n:05d},c{n}@example.com,Card {n}\n" for n in range(8000))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "mappings.csv"
            path.write_text(f"steveOcppIdTag,email,label\n{rows}")
            process = start(["import_user_mappings", str(path)])
            assert process.stdout is not None
            self.assertEqual(process.stdout.readline(), "Line 1000 of 8001…\n")
            status, err = interrupt(process)
        self.assertEqual(status, 130, err)
        self.assertNotIn("Traceback", err)
        self.assertEqual(len(err.splitlines()), 1, err)
        # Usually line 1000; a slow signal may find the next chunk saved too.
        match = re.fullmatch(
            r"Interrupted: the rows above line (\d+) were imported and the rest were "
            r"not; import the file again to finish \(rows already imported come out "
            r"unchanged\)\.\n",
            err,
        )
        self.assertIsNotNone(match, err)
        assert match is not None
        self.assertEqual(UserMapping.objects.count(), int(match[1]) - 2)

    def test_a_sync_waiting_for_steve_says_the_next_run_catches_up(self) -> None:
        self.assert_a_waiting_sync_stops(signal.SIGINT)

    def test_sigterm_stops_a_command_as_ctrl_c_does(self) -> None:
        # What cron, systemd and `timeout` send: the same line, status 128 + 15.
        self.assert_a_waiting_sync_stops(signal.SIGTERM)

    def assert_a_waiting_sync_stops(self, signum: int) -> None:
        # A SteVe that takes the connection and never answers.
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            port = silent.getsockname()[1]
            process = start(
                ["sync", "transactions"],
                STEVE_URL=f"http://127.0.0.1:{port}/steve",
                STEVE_TIMEOUT="60",
            )
            assert process.stdout is not None
            self.assertEqual(
                process.stdout.readline(), "Syncing transactions from SteVe…\n"
            )
            deadline = time.monotonic() + 30
            while not SyncRun.objects.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            status, err = interrupt(process, signum)
        self.assertEqual(status, 128 + signum, err)
        self.assertEqual(
            err,
            "Interrupted: the batches this run had saved stay, the one it was "
            "writing was rolled back, and it shows as running until the next run "
            "marks it interrupted; SteVe keeps every transaction, so the next run "
            "catches up.\n",
        )
        self.assertEqual(SyncRun.objects.get().status, SyncRun.Status.RUNNING)


class InterruptedWhileStarting(ChildProcess):
    """A child whose start is interrupted, as Ctrl-C during `bench` can."""

    def wait_until_ready(self) -> None:
        raise KeyboardInterrupt


class ChildProcessTests(SimpleTestCase):
    def test_a_child_interrupted_while_starting_is_stopped(self) -> None:
        # In a session of its own, a terminal's Ctrl-C never reaches it.
        child = InterruptedWhileStarting(["sleep", "60"], child_environment())
        with self.assertRaises(KeyboardInterrupt), child:
            self.fail("the block is never entered")
        assert child.process is not None
        self.assertEqual(child.process.poll(), -signal.SIGTERM)
