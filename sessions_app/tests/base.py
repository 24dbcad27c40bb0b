"""What the console and charging tests share: the console's persona, a staff
member signed in, and another request's hold on a customer's card choice."""

import psycopg
from django.contrib.auth.models import User
from django.db import connection
from django.test import SimpleTestCase, TestCase

from sessions_app.charging.tags import CARD_CHOICE_LOCK
from sync.tests.factories import StaffFactory


class ConsoleTestCase(TestCase):
    """A staff member (`staff`), signed in for every test."""

    staff: User

    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = StaffFactory()

    def setUp(self) -> None:
        self.client.force_login(self.staff)


def card_choice_taken_elsewhere(
    test: SimpleTestCase, user: User
) -> psycopg.Connection[tuple[object, ...]]:
    """Take `user`'s card-choice lock on another connection, as another start or
    Reserve of theirs would while choosing a card; this connection then waits 200
    ms for it at most (OperationalError after that). Roll the connection returned
    back to let go."""
    other = psycopg.connect(**connection.get_connection_params(), autocommit=False)
    test.addCleanup(other.close)
    other.execute("SELECT pg_advisory_xact_lock(%s, %s)", [CARD_CHOICE_LOCK, user.pk])
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '200ms'")
    return other
