"""The persona of the console tests: a staff member, signed in."""

from django.contrib.auth.models import User
from django.test import TestCase

from sync.tests.factories import StaffFactory


class ConsoleTestCase(TestCase):
    """A staff member (`staff`), signed in for every test."""

    staff: User

    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = StaffFactory()

    def setUp(self) -> None:
        self.client.force_login(self.staff)
