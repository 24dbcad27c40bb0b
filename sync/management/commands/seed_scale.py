"""Fill the configured database with a year of charging history at scale.

Exists so the benchmark (`manage.py bench`) measures pages against realistic
volumes: `seed_scale --transactions 1000000 --events-per-transaction 10` writes a
million sessions and ten million events with COPY in a few minutes.
"""

from typing import Any

from django.core.management.base import CommandError, CommandParser

from polaris.commands import DatabaseCommand
from sync.arguments import MAX_FLEET_SIZE, int_between
from sync.services.seeding import seed_scale
from sync.services.seeding.setup import refuse_synced_sessions

# Far above the bench's scale (1,000,000 x 10), below what fills a disk or the RAM
# that generating each batch takes.
MAX_TRANSACTIONS = 50_000_000
MAX_EVENTS_PER_TRANSACTION = 1_000
MAX_EVENTS = 200_000_000
MAX_CUSTOMERS = 1_000_000


class Command(DatabaseCommand):
    interrupted_consequence_text = (
        'the seeding is one transaction: nothing was seeded unless its "commit" '
        "line had been printed."
    )
    help = (
        "Generate a year of realistic sessions, events, tags, customers, chargers "
        "and sync runs with COPY. Appends to existing data unless --reset is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--transactions",
            type=int_between(1, MAX_TRANSACTIONS, what="a number of transactions"),
            default=10_000,
            help="How many SteVe transactions to generate (default 10000).",
        )
        parser.add_argument(
            "--events-per-transaction",
            type=int_between(2, MAX_EVENTS_PER_TRANSACTION, what="a number of events"),
            default=10,
            help="Sync events per transaction, at least 2 (default 10).",
        )
        parser.add_argument(
            "--customers",
            type=int_between(1, MAX_CUSTOMERS, what="a number of customers"),
            default=None,
            help="Customer users to create (default: transactions / 50).",
        )
        parser.add_argument(
            "--chargers",
            type=int_between(1, MAX_FLEET_SIZE, what="a number of chargers"),
            default=None,
            help="Charger connectors, two per charge box (default: "
            "transactions / 500, 20 to 2000).",
        )
        parser.add_argument(
            "--seed", type=int, default=1, help="Random seed (default 1)."
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help="First TRUNCATE transaction_sync_state, synced_transaction_events, "
            "user_mappings, sync_runs and chargers (CASCADE: reservations, API "
            "sessions and rates referencing them go too) and delete earlier "
            "seeded customers. Destroys data: never on production.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Only print what would be generated.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        transactions = options["transactions"]
        per_tx = options["events_per_transaction"]
        if transactions * per_tx > MAX_EVENTS:
            raise CommandError(
                f"{transactions:,} transactions x {per_tx} events would be "
                f"{transactions * per_tx:,} event rows; at most {MAX_EVENTS:,} can be "
                "seeded at once (the bench's fleet is 10,000,000)."
            )
        verbose = options["verbosity"] >= 1
        summary = (
            f"{transactions:,} transactions x {per_tx} events"
            f"{' after a reset' if options['reset'] else ''}"
        )
        if options["dry_run"]:
            if not options["reset"]:
                # The real run would refuse this database: so does its rehearsal.
                try:
                    refuse_synced_sessions()
                except ValueError as error:
                    raise CommandError(str(error)) from None
            self.stdout.write(f"Would generate {summary}.")
            return
        if verbose:
            self.stdout.write(f"Seeding {summary}…")

        def progress(message: str) -> None:
            if verbose:
                self.stdout.write(f"  {message}")
                self.stdout.flush()

        try:
            result = seed_scale(
                transactions=transactions,
                events_per_transaction=per_tx,
                customers=options["customers"],
                chargers=options["chargers"],
                reset=options["reset"],
                seed=options["seed"],
                progress=progress,
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {result.transactions} transactions, {result.events} events, "
                f"{result.active} active, {result.customers} customers, "
                f"{result.tags} tags ({result.mapped_tags} mapped), "
                f"{result.chargers} chargers, {result.sync_runs} sync runs "
                f"in {result.seconds:.1f} s."
            )
        )
