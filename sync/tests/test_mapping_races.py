"""Two saves of one card's mapping at once, each on its own connection."""

import threading

import psycopg
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import TransactionTestCase

from polaris.testing import wait_until
from sync.models import UserMapping
from sync.services.mappings import user_mapping_create
from sync.tests.factories import UserFactory


class TwoSpellingsAtOnceTests(TransactionTestCase):
    def test_a_card_mapped_in_another_spelling_meanwhile_is_refused_in_words(
        self,
    ) -> None:
        # A colleague's "New mapping" of ABC-1, between its check and its commit:
        # this one's check of abc-1 finds nothing yet.
        first, second = UserFactory(), UserFactory()
        colleague = psycopg.connect(
            **connection.get_connection_params(), autocommit=False
        )
        self.addCleanup(colleague.close)
        colleague.execute(
            'INSERT INTO user_mappings ("steveOcppIdTag", "userId", label,'
            ' "billingCustomerId", "isActive", "createdAt", "updatedAt")'
            " VALUES ('ABC-1', %s, '', '', true, now(), now())",
            [first.pk],
        )
        outcome: list[object] = []

        def create() -> None:
            try:
                outcome.append(
                    user_mapping_create(
                        actor=None, steve_ocpp_id_tag="abc-1", user=second
                    )
                )
            except ValidationError as error:
                outcome.append(error)
            finally:
                connection.close()

        thread = threading.Thread(target=create)
        thread.start()

        def waiting_for_the_colleague() -> bool:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                return bool(cursor.fetchone()[0])

        wait_until(waiting_for_the_colleague, what="the save waiting on ABC-1")
        colleague.commit()
        thread.join(10)

        (refused,) = outcome
        assert isinstance(refused, ValidationError), refused
        self.assertEqual(
            refused.messages,
            [f"The idTag ABC-1 is already mapped to {first.username}."],
        )
        self.assertEqual(
            list(UserMapping.objects.values_list("steve_ocpp_id_tag", "user")),
            [("ABC-1", first.pk)],
        )
