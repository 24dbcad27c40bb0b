"""Who the load test's people are and what they look at: one signed-in session per
simulated person, the customers they browse as (the heaviest among them), and the
filters, month and transactions the staff pages are opened with."""

import random
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from bench.asgi import session_key
from bench.load.options import LoadOptions
from sync.models import TransactionSyncState, UserMapping

STAFF_USERNAME = "loadtest-staff"
HEAVY_CUSTOMERS = 5


@dataclass
class Person:
    kind: str  # "staff" or "customer"
    cookie: str
    holds_stream: bool
    label: str


@dataclass
class Fixture:
    people: list[Person]
    session_keys: list[str]
    tag_fragments: list[str]
    month: tuple[str, str]
    detail_ids: list[int]
    customers: int


def prepare_people(options: LoadOptions, rng: random.Random) -> Fixture:
    """Sign in one staff session per staff user and one per customer user; pick
    real mapped customers, the heaviest among them."""
    User = get_user_model()
    staff, _ = User.objects.get_or_create(
        username=STAFF_USERNAME, defaults={"is_staff": True}
    )
    n_staff = max(1, round(options.users * options.staff_share))
    n_customers = max(1, options.users - n_staff)
    with connection.cursor() as cursor:
        cursor.execute(
            'SELECT m."userId" FROM transaction_sync_state AS t '
            'JOIN user_mappings AS m ON m."steveOcppIdTag" = t."ocppIdTag" '
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT %s",
            [HEAVY_CUSTOMERS],
        )
        heavy = [row[0] for row in cursor.fetchall()]
    mapped = list(
        UserMapping.objects.filter(is_active=True, user__is_active=True)
        .exclude(user__is_staff=True)
        .values_list("user_id", flat=True)
        .distinct()
        .order_by("user_id")[:5000]
    )
    if not mapped:
        raise RuntimeError("No mapped customers in the database; run seed_scale.")
    others = [pk for pk in mapped if pk not in heavy]
    rng.shuffle(others)
    chosen = (heavy + others)[:n_customers]
    chosen = [chosen[i % len(chosen)] for i in range(n_customers)]
    users = {user.pk: user for user in User.objects.filter(pk__in=set(chosen))}
    people: list[Person] = []
    keys: list[str] = []
    for i in range(n_staff + n_customers):
        is_staff = i < n_staff
        user = staff if is_staff else users[chosen[i - n_staff]]
        key = session_key(user)
        keys.append(key)
        people.append(
            Person(
                kind="staff" if is_staff else "customer",
                cookie=key,
                holds_stream=False,
                label=f"{'staff' if is_staff else 'customer'}-{i}",
            )
        )
    for kind in ("staff", "customer"):
        group = [p for p in people if p.kind == kind]
        for person in group[: round(len(group) * options.sse_share)]:
            person.holds_stream = True
    tags = list(
        UserMapping.objects.order_by("?").values_list("steve_ocpp_id_tag", flat=True)[
            :20
        ]
    ) or ["TAG"]
    local = timezone.localtime().date()
    month_end = local.replace(day=1) - timedelta(days=1)
    month_start = month_end.replace(day=1)
    detail_ids = list(
        TransactionSyncState.objects.order_by("-steve_transaction_id").values_list(
            "steve_transaction_id", flat=True
        )[:500]
    )
    return Fixture(
        people=people,
        session_keys=keys,
        tag_fragments=[tag[-6:].lower() for tag in tags],
        month=(month_start.isoformat(), month_end.isoformat()),
        detail_ids=detail_ids,
        customers=len(set(chosen)),
    )
