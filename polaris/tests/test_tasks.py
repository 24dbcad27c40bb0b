"""The project's own Celery tasks, run by a real Celery worker process."""

from datetime import timedelta

from django.contrib.sessions.models import Session
from django.test import TransactionTestCase
from django.utils import timezone

from polaris.celery import app as celery_app
from polaris.tasks import sign_ins_clear_expired
from polaris.testing import CeleryWorker
from sync.tests.factories import UserFactory


class ExpiredSignInsTests(TransactionTestCase):
    def test_beat_has_a_worker_delete_expired_sign_ins_daily(self) -> None:
        entry = celery_app.conf.beat_schedule["clear-expired-sign-ins"]
        self.assertEqual(entry["task"], sign_ins_clear_expired.name)
        self.assertEqual(entry["schedule"], float(timedelta(days=1).total_seconds()))
        Session.objects.create(
            session_key="expired-sign-in",
            session_data="",
            expire_date=timezone.now() - timedelta(seconds=1),
        )
        self.client.force_login(UserFactory())
        signed_in = self.client.session.session_key

        with CeleryWorker() as worker:
            # By name, as beat sends it: the worker must know the task.
            sent = celery_app.send_task(entry["task"], queue=worker.queue)
            worker.wait_for_log(f"[{sent.id}] succeeded")

        self.assertEqual(
            list(Session.objects.values_list("session_key", flat=True)), [signed_in]
        )
