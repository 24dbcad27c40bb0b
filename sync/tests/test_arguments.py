"""The ops commands refuse out-of-range options before they start anything."""

import socket
from argparse import ArgumentTypeError

from django.core.management import CommandError, call_command
from django.test import SimpleTestCase

from sync.arguments import int_between, number_between


class RangeTypeTests(SimpleTestCase):
    def test_values_in_range_are_parsed(self) -> None:
        self.assertEqual(int_between(1, 65535)("8000"), 8000)
        self.assertEqual(number_between(0, 1)("0.5"), 0.5)
        self.assertEqual(number_between(0)("1e3"), 1000.0)

    def test_values_out_of_range_or_not_numbers_are_refused_with_the_range(
        self,
    ) -> None:
        port = int_between(1, 65535, what="a port")
        share = number_between(0, 1, what="a share")
        seconds = number_between(0, what="seconds")
        refused = [
            (port, "0", "expected a port from 1 to 65535, not '0'"),
            (port, "65536", "expected a port from 1 to 65535, not '65536'"),
            (port, "80.5", "expected a port from 1 to 65535, not '80.5'"),
            (share, "1.5", "expected a share from 0 to 1, not '1.5'"),
            (share, "nan", "expected a share from 0 to 1, not 'nan'"),
            (seconds, "-1", "expected seconds of at least 0, not '-1'"),
            (seconds, "inf", "expected seconds of at least 0, not 'inf'"),
            (seconds, "soon", "expected seconds of at least 0, not 'soon'"),
        ]
        for parse, value, message in refused:
            with (
                self.subTest(value=value),
                self.assertRaisesMessage(ArgumentTypeError, message),
            ):
                parse(value)


class CommandOptionTests(SimpleTestCase):
    """Each refusal happens while parsing: no server, fleet or load is started."""

    # loadtest checks --think after DatabaseCommand's migration check (a read).
    databases = {"default"}

    def test_out_of_range_options_are_refused(self) -> None:
        refused = [
            ("demo", "--port=99999", "expected a port from 1 to 65535"),
            ("demo", "--fleet-size=0", "expected a number of charge points"),
            ("steve_standin", "--port=-1", "expected a port from 0 to 65535"),
            ("steve_standin", "--fleet-size=0", "from 1 to 2000, not '0'"),
            ("steve_standin", "--fleet-size=100000000", "from 1 to 2000"),
            (
                "steve_standin",
                "--first-transaction-pk=3000000000",
                "expected a transaction pk from 1 to 2000000000",
            ),
            ("demo", "--fleet-size=100000000", "from 1 to 2000"),
            ("loadtest", "--fleet-size=100000000", "from 1 to 2000"),
            ("loadtest", "--users=0", "expected a number of people from 1 to 10000"),
            ("loadtest", "--users=99999999999", "a number of people from 1 to 10000"),
            ("loadtest", "--web-workers=1000", "a number of processes from 1 to 64"),
            ("loadtest", "--sse-share=2", "expected a share from 0 to 1"),
            ("loadtest", "--web-workers=0", "expected a number of processes"),
            ("sync", "status", "--limit=-5", "of runs from 1 to 10000, not '-5'"),
            ("sync", "status", "--limit=0", "of runs from 1 to 10000, not '0'"),
            ("sync", "status", "--limit=ten", "of runs from 1 to 10000, not 'ten'"),
            ("sync", "status", "--limit=10001", "of runs from 1 to 10000"),
        ]
        for command, *options, message in refused:
            with (
                self.subTest(option=f"{command} {' '.join(options)}"),
                self.assertRaisesMessage(CommandError, message),
            ):
                call_command(command, *options)

    def test_loadtest_refuses_a_think_time_whose_min_is_above_its_max(self) -> None:
        with self.assertRaisesMessage(CommandError, "--think 5 1: MIN is above MAX."):
            call_command("loadtest", "--think", "5", "1")

    def test_the_stand_in_on_a_port_in_use_says_what_to_do(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with self.assertRaisesMessage(
                CommandError,
                f"Port {port} on 127.0.0.1 is already in use, perhaps by a stand-in "
                "or a demo already running: stop that one, or choose another port "
                "with --port (0 picks a free one).",
            ):
                call_command("steve_standin", f"--port={port}")
