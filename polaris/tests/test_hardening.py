"""Production hardening: deploy checks, secure defaults, CSP, CSRF, login throttling."""

import json
import re
import secrets
import time
from uuid import uuid4

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse
from django.test import Client, SimpleTestCase, TestCase, override_settings
from redis import Redis

from polaris import throttle
from polaris.testing import child_environment, free_port, run_python, wait_until
from polaris.tests.test_access_matrix import ROWS
from sync.tests.factories import StaffFactory, UserFactory, UserMappingFactory

SECURITY_VARIABLES = (
    "DEBUG",
    "SECURE_SSL_REDIRECT",
    "SECURE_COOKIES",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
    "CSRF_TRUSTED_ORIGINS",
)
PRINT_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({name: getattr(settings, name) for name in [
    "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS", "DEBUG"]}))
"""


def production_environment(**overrides: str) -> dict[str, str]:
    """A production-like environment using the test process's Postgres and Redis."""
    env = child_environment(
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="polaris.example.com",
    )
    for name in SECURITY_VARIABLES:
        env.pop(name, None)
    env.update(overrides)
    return env


class DeploySettingsTests(SimpleTestCase):
    def test_it_passes_check_deploy_with_production_settings(self) -> None:
        result = run_python(
            ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            env=production_environment(),
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("System check identified no issues", result.stdout)

    def test_production_defaults_are_https_only(self) -> None:
        result = run_python(["-c", PRINT_SETTINGS], env=production_environment())
        self.assertEqual(result.returncode, 0, result.stderr)
        values = json.loads(result.stdout.strip().splitlines()[-1])
        self.assertEqual(
            values,
            {
                "SECURE_SSL_REDIRECT": True,
                "SESSION_COOKIE_SECURE": True,
                "CSRF_COOKIE_SECURE": True,
                "SECURE_HSTS_SECONDS": 31_536_000,
                "DEBUG": False,
            },
        )

    def test_loopback_only_processes_serve_plain_http(self) -> None:
        # The tests' uvicorn and Celery children, and local mode, speak http.
        env = production_environment(ALLOWED_HOSTS="127.0.0.1,localhost")
        result = run_python(["-c", PRINT_SETTINGS], env=env)
        self.assertEqual(result.returncode, 0, result.stderr)
        values = json.loads(result.stdout.strip().splitlines()[-1])
        self.assertFalse(values["SECURE_SSL_REDIRECT"])
        self.assertFalse(values["SESSION_COOKIE_SECURE"])
        self.assertEqual(values["SECURE_HSTS_SECONDS"], 0)

    def test_a_real_database_needs_a_secret_key_from_the_environment(self) -> None:
        env = production_environment()
        env.pop("SECRET_KEY")
        env.pop("SECRET_KEY_FILE", None)
        result = run_python(["-c", PRINT_SETTINGS], env=env)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("SECRET_KEY must be set", result.stderr)


class HealthCheckTests(SimpleTestCase):
    @override_settings(ALLOWED_HOSTS=["polaris.example.com"], SECURE_SSL_REDIRECT=True)
    def test_a_probe_of_a_process_address_over_http_is_answered(self) -> None:
        # As a load balancer asks each web process: its own address, no proxy.
        probe = {"host": "10.0.1.11:8000"}
        response = self.client.get("/healthz", headers=probe)
        self.assertEqual((response.status_code, response.content), (200, b"ok\n"))
        self.assertEqual(self.client.head("/healthz", headers=probe).status_code, 200)
        # Every other path keeps the host check and the HTTPS redirect.
        self.assertEqual(
            self.client.get("/accounts/login/", headers=probe).status_code, 400
        )
        public = {"host": "polaris.example.com"}
        self.assertEqual(
            self.client.get("/accounts/login/", headers=public).status_code, 301
        )


class ContentSecurityPolicyTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = StaffFactory()
        cls.alice = UserFactory()
        UserMappingFactory(user=cls.alice)

    def pages(self) -> list[tuple[str, object]]:
        return [
            ("/accounts/login/", None),
            ("/", self.alice),
            ("/tokens/", self.alice),
            ("/admin/sessions/", self.staff),
            ("/admin/sync-runs/", self.staff),
            ("/admin/user-mappings/", self.staff),
        ]

    def test_every_page_sends_a_policy_without_inline_scripts(self) -> None:
        for path, user in self.pages():
            with self.subTest(path=path):
                if user is not None:
                    self.client.force_login(user)
                response = self.client.get(path)
                self.assertEqual(response.status_code, 200)
                policy = response["Content-Security-Policy"]
                directives = dict(
                    part.strip().split(" ", 1) for part in policy.split(";")
                )
                self.assertEqual(directives["default-src"], "'self'")
                self.assertEqual(directives["script-src"], "'self'")
                self.assertEqual(directives["frame-ancestors"], "'none'")
                self.assertNotIn("unsafe-inline", policy)
                self.assertNotIn("unsafe-eval", policy)

    def test_templates_have_no_inline_scripts_or_handlers(self) -> None:
        # The policy would block them, so a page relying on one breaks silently.
        for path, user in self.pages():
            with self.subTest(path=path):
                if user is not None:
                    self.client.force_login(user)
                html = self.client.get(path).content.decode()
                for tag in re.findall(r"<script\b[^>]*>", html):
                    self.assertIn(" src=", tag)
                self.assertNotRegex(html, r"<[^>]+\son[a-z]+\s*=")
                self.assertNotIn("javascript:", html)
                # style-src 'self' would drop inline style attributes too.
                self.assertNotRegex(html, r"<[^>]+\sstyle\s*=")


class CsrfTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = StaffFactory()
        cls.alice = UserFactory()

    def test_every_browser_post_without_a_token_is_refused(self) -> None:
        ids = dict.fromkeys(
            [
                "txn",
                "mapping",
                "charger",
                "reservation",
                "api_session",
                "alice_token",
                "staff_token",
                "alice",
                "staff",
            ],
            1,
        )
        for user in (self.alice, self.staff):
            client = Client(enforce_csrf_checks=True)
            client.force_login(user)
            for row in ROWS:
                if row.method != "POST":
                    continue
                path = row.path.format(**ids)
                with self.subTest(path=path, user=user.get_username()):
                    if row.json:
                        response = client.post(
                            path, "{}", content_type="application/json"
                        )
                    else:
                        response = client.post(path, row.data)
                    self.assertEqual(response.status_code, 403)

    def test_a_post_with_the_pages_token_is_accepted(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.alice)
        page = client.get("/switch")
        token = str(page.context["csrf_token"])
        response = client.post(
            "/switch", {"account": "customer", "csrfmiddlewaretoken": token}
        )
        self.assertEqual(response.status_code, 302)
        # htmx sends the same token as a header (base.html hx-headers).
        response = client.post(
            "/switch", {"account": "customer"}, headers={"X-CSRFToken": token}
        )
        self.assertEqual(response.status_code, 302)

    def test_sign_out_opened_as_a_page_asks_first_and_signs_out_only_on_post(
        self,
    ) -> None:
        # A link or an image pointing at it must not sign anyone out.
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.alice)
        page = client.get("/accounts/logout/")
        self.assertContains(page, "Sign out?")
        self.assertContains(page, f"You are signed in as {self.alice.username}.")
        self.assertEqual(client.get("/switch").status_code, 200)  # still signed in
        token = str(page.context["csrf_token"])
        signed_out = client.post(
            "/accounts/logout/", {"csrfmiddlewaretoken": token}, follow=True
        )
        self.assertContains(signed_out, "You have signed out.")
        self.assertRedirects(
            client.get("/accounts/logout/"),
            "/accounts/login/",
            fetch_redirect_response=False,
        )

    def test_the_sign_in_form_needs_a_token(self) -> None:
        client = Client(enforce_csrf_checks=True)
        response = client.post(
            "/accounts/login/",
            {"username": self.alice.username, "password": "driver"},
        )
        self.assertEqual(response.status_code, 403)

    def test_cookies_are_http_only_and_same_site(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.get("/accounts/login/")
        csrf = client.cookies["csrftoken"]
        self.assertTrue(csrf["httponly"])
        self.assertEqual(csrf["samesite"], "Lax")
        client.post(
            "/accounts/login/",
            {
                "username": self.alice.username,
                "password": "driver",
                "csrfmiddlewaretoken": csrf.value,
            },
        )
        session = client.cookies["sessionid"]
        self.assertTrue(session["httponly"])
        self.assertEqual(session["samesite"], "Lax")


class LoginThrottleTests(TestCase):
    URL = "/accounts/login/"

    @classmethod
    def setUpTestData(cls) -> None:
        cls.alice = UserFactory(username="alice@example.com")
        cls.bob = UserFactory(username="bob@example.com")

    def setUp(self) -> None:
        # A key prefix of each test's own on the real Redis: no counts from an
        # earlier test, and nothing to clear that other processes share.
        caches = {"default": {**settings.CACHES["default"], "KEY_PREFIX": uuid4().hex}}
        self.enterContext(override_settings(CACHES=caches))

    def sign_in(
        self, username: str, password: str, address: str = "127.0.0.1"
    ) -> object:
        return Client().post(
            self.URL,
            {"username": username, "password": password},
            REMOTE_ADDR=address,
        )

    def fail(self, times: int, username: str = "alice@example.com") -> list[int]:
        return [self.sign_in(username, "wrong").status_code for _ in range(times)]

    def test_a_wrong_password_does_not_call_the_email_case_sensitive(self) -> None:
        response = self.sign_in("Alice@Example.com", "wrong")
        self.assertContains(response, "do not match an account")
        self.assertContains(response, "it is case-sensitive")
        self.assertNotContains(response, "both fields may be case-sensitive")
        # The email in another letter case does sign in.
        self.assertEqual(self.sign_in("Alice@Example.com", "driver").status_code, 302)

    def test_after_a_wrong_password_the_focus_is_on_the_password(self) -> None:
        refused = self.sign_in("alice@example.com", "wrong").content.decode()
        self.assertRegex(refused, r'id="id_password"[^>]* autofocus')
        self.assertNotRegex(refused, r'id="id_username"[^>]* autofocus')
        # Marked as the field to fix, and described by the refusal.
        self.assertIn('role="alert" id="sign-in-error"', refused)
        self.assertRegex(
            refused,
            r'id="id_password"[^>]* aria-invalid="true" '
            r'aria-describedby="sign-in-error"',
        )
        self.assertNotRegex(refused, r'id="id_username"[^>]* aria-invalid')
        # A first visit, or no name given, starts at the name.
        for page in (Client().get(self.URL), self.sign_in("", "wrong")):
            html = page.content.decode()
            self.assertRegex(html, r'id="id_username"[^>]* autofocus')
            self.assertNotRegex(html, r'id="id_password"[^>]* autofocus')

    def test_ten_failures_lock_the_username_from_that_address(self) -> None:
        self.assertEqual(self.fail(9), [200] * 9)
        locked = self.sign_in("alice@example.com", "wrong")
        self.assertEqual(locked.status_code, 429)
        self.assertContains(locked, "Too many failed sign-ins", status_code=429)
        # While locked even the right password is refused, without a session.
        response = self.sign_in("alice@example.com", "driver")
        self.assertEqual(response.status_code, 429)
        self.assertContains(response, "paused for 15 minutes", status_code=429)
        self.assertNotIn("sessionid", response.cookies)

    def test_the_lock_is_per_username_and_address(self) -> None:
        self.fail(10)
        self.assertEqual(self.sign_in("bob@example.com", "driver").status_code, 302)
        other_address = self.sign_in("alice@example.com", "driver", "10.0.0.7")
        self.assertEqual(other_address.status_code, 302)
        # The username's case does not get around the lock.
        self.assertEqual(self.sign_in("ALICE@example.com", "driver").status_code, 429)

    def test_very_many_failures_from_one_address_lock_it_for_every_username(
        self,
    ) -> None:
        # Password spraying: a few guesses at each of many accounts never locks
        # a pair, so the address has a (higher) limit of its own.
        with override_settings(LOGIN_ADDRESS_FAILURE_LIMIT=5):
            guesses = [f"guess{n}@example.com" for n in range(4)]
            self.assertEqual(
                [self.sign_in(name, "wrong").status_code for name in guesses],
                [200] * 4,
            )
            # A success does not lower the address's count.
            self.assertEqual(self.sign_in("bob@example.com", "driver").status_code, 302)
            locked = self.sign_in("carol@example.com", "wrong")
            self.assertContains(
                locked, "Too many failed sign-ins from your network", status_code=429
            )
            # Every account from that address, the right password too.
            refused = self.sign_in("bob@example.com", "driver")
            self.assertContains(refused, "from it is paused", status_code=429)
            self.assertNotIn("sessionid", refused.cookies)
            other = self.sign_in("bob@example.com", "driver", "10.0.0.7")
            self.assertEqual(other.status_code, 302)

    def test_look_alike_letters_share_the_lock_of_the_account_they_reach(
        self,
    ) -> None:
        # Django's username field normalises NFKC, so these sign in as alice; a
        # lock by the letters as typed would give each spelling its own ten tries.
        spellings = ["\uff41lice@example.com", "\U0001d41alice@example.com"]
        for spelling in spellings:
            self.assertEqual(self.sign_in(spelling, "driver").status_code, 302)
        self.fail(5)
        self.fail(4, username=spellings[0])
        self.assertEqual(self.fail(1, username=spellings[1]), [429])
        for spelling in ["alice@example.com", *spellings]:
            self.assertEqual(self.sign_in(spelling, "driver").status_code, 429)

    def test_an_email_signs_in_whatever_its_capitals(self) -> None:
        for typed in ("Alice@Example.com", " ALICE@EXAMPLE.COM "):
            self.assertEqual(self.sign_in(typed, "driver").status_code, 302, typed)
        # An account created with capitals signs in as created, and in any
        # other letter case; a staff username without an @ stays exact.
        UserFactory(username="Carol@Example.com")
        for typed in ("Carol@Example.com", "carol@example.com", "CAROL@example.COM"):
            self.assertEqual(self.sign_in(typed, "driver").status_code, 302, typed)
        # Two accounts alike but for their capitals: only the exact one.
        UserFactory(username="Dave@Example.com")
        UserFactory(username="DAVE@example.com")
        self.assertEqual(self.sign_in("dave@example.com", "driver").status_code, 200)
        self.assertEqual(self.sign_in("Dave@Example.com", "driver").status_code, 302)
        UserFactory(username="operator", is_staff=True)
        self.assertEqual(self.sign_in("Operator", "driver").status_code, 200)

    def test_redis_forgets_the_lock_after_fifteen_minutes(self) -> None:
        self.fail(10)
        redis = Redis.from_url(settings.REDIS_URL)
        self.addCleanup(redis.close)
        lock_key = cache.make_key(
            throttle.cache_key("locked", "alice@example.com", "127.0.0.1")
        )
        self.assertTrue(890 <= redis.ttl(lock_key) <= 900, redis.ttl(lock_key))

    def test_the_lock_ends_when_its_time_is_up(self) -> None:
        # One failure locks, so the lock is set within the first request: ten
        # within a one-second window could take longer than it on a busy machine.
        with override_settings(LOGIN_LOCKOUT_SECONDS=2, LOGIN_FAILURE_LIMIT=1):
            self.assertEqual(self.fail(1), [429])
            self.assertEqual(
                self.sign_in("alice@example.com", "driver").status_code, 429
            )
            # Redis expires the key by its own clock.
            wait_until(
                lambda: self.sign_in("alice@example.com", "driver").status_code == 302,
                timeout=10,
                what="sign-in once the lock expired",
            )

    def test_failures_older_than_the_window_are_forgotten(self) -> None:
        with override_settings(LOGIN_LOCKOUT_SECONDS=1):
            self.fail(9)
            time.sleep(1.1)
            self.assertEqual(self.fail(9), [200] * 9)

    def test_a_successful_sign_in_forgets_earlier_failures(self) -> None:
        self.fail(9)
        self.assertEqual(self.sign_in("alice@example.com", "driver").status_code, 302)
        self.assertEqual(self.fail(9), [200] * 9)
        self.assertEqual(self.sign_in("alice@example.com", "driver").status_code, 302)

    def test_the_django_admin_login_is_the_same_throttled_page(self) -> None:
        response = Client().get("/django-admin/login/?next=/django-admin/")
        self.assertRedirects(
            response,
            "/accounts/login/?next=/django-admin/",
            fetch_redirect_response=False,
        )

    def test_sign_in_still_works_when_redis_is_down(self) -> None:
        # Fails open: a Redis outage must not lock everyone out (errors are logged).
        dead = f"redis://127.0.0.1:{free_port()}/0"
        backend = "django.core.cache.backends.redis.RedisCache"
        with (
            override_settings(
                CACHES={"default": {"BACKEND": backend, "LOCATION": dead}}
            ),
            self.assertLogs("polaris.throttle", "ERROR"),
        ):
            self.assertEqual(self.fail(1), [200])
            response = self.sign_in("alice@example.com", "driver")
        self.assertEqual(response.status_code, 302)


class PasswordChangeTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.alice = UserFactory(username="alice@example.com")

    NEW = "a new long passphrase 42"

    def setUp(self) -> None:
        caches = {"default": {**settings.CACHES["default"], "KEY_PREFIX": uuid4().hex}}
        self.enterContext(override_settings(CACHES=caches))
        self.client.force_login(self.alice)

    def change(
        self, old: str, follow: bool = False, new: str | None = None
    ) -> HttpResponse:
        fields = {
            "old_password": old,
            "new_password1": new or self.NEW,
            "new_password2": new or self.NEW,
        }
        return self.client.post("/accounts/password_change/", fields, follow=follow)

    def test_guessing_the_current_password_locks_like_signing_in(self) -> None:
        statuses = [self.change("wrong").status_code for _ in range(10)]
        self.assertEqual(statuses, [200] * 9 + [429])
        # Locked: the right password changes nothing, and sign-in is paused too.
        response = self.change("driver")
        self.assertContains(
            response,
            "Too many wrong passwords for this account from your network. Password "
            "changes and sign-in are paused for 15 minutes",
            status_code=429,
        )
        self.alice.refresh_from_db()
        self.assertTrue(self.alice.check_password("driver"))
        sign_in = Client().post(
            "/accounts/login/", {"username": "alice@example.com", "password": "driver"}
        )
        self.assertEqual(sign_in.status_code, 429)

    def test_a_common_or_all_numeric_new_password_is_refused(self) -> None:
        for weak, reason in [
            ("password123", "too common"),
            ("4815162342", "entirely numeric"),
            ("alice@example.com", "too similar"),
        ]:
            with self.subTest(weak):
                form = self.change("driver", new=weak).context["form"]
                # Said under the new password, whose rules they are.
                self.assertIn(reason, " ".join(form.errors["new_password1"]))
                self.assertNotIn("new_password2", form.errors)
        self.alice.refresh_from_db()
        self.assertTrue(self.alice.check_password("driver"))

    def test_the_current_password_is_not_a_new_one(self) -> None:
        other_device = Client()
        other_device.force_login(self.alice)
        form = self.change("driver", new="driver").context["form"]
        self.assertIn(
            "This is your current password; choose a different one.",
            form.errors["new_password1"],
        )
        # Nothing changed, and nobody was signed out.
        self.assertEqual(other_device.get("/").status_code, 200)

    def test_django_admin_pages_name_the_products_icon(self) -> None:
        # Without one, browsers ask for /favicon.ico, which Polaris does not serve.
        self.client.force_login(StaffFactory())
        self.assertContains(
            self.client.get("/django-admin/"), 'rel="icon" href="/static/img/logo.svg"'
        )

    def test_django_admin_has_no_second_password_change(self) -> None:
        self.assertRedirects(
            self.client.get("/django-admin/password_change/"),
            "/accounts/password_change/",
            fetch_redirect_response=False,
        )

    def test_the_sidebar_leads_to_a_page_of_the_products_own(self) -> None:
        dashboard = self.client.get("/")
        self.assertContains(dashboard, 'href="/accounts/password_change/"')
        page = self.client.get("/accounts/password_change/")
        self.assertContains(page, '<h1 class="auth-card__title">Change password</h1>')
        self.assertNotContains(page, "Django")

    def test_a_wrong_old_password_changes_nothing(self) -> None:
        response = self.change("wrong")
        self.assertContains(response, "Your current password was entered incorrectly")
        self.alice.refresh_from_db()
        self.assertTrue(self.alice.check_password("driver"))

    def test_it_changes_the_password_and_keeps_this_device_signed_in(self) -> None:
        response = self.change("driver", follow=True)
        self.assertContains(response, "Password changed")
        # Tokens are an integration's keys, kept: the page says where they go.
        self.assertContains(response, "Your Sessions API tokens keep working")
        self.assertContains(response, 'href="/tokens/">your API tokens page</a>')
        self.alice.refresh_from_db()
        self.assertTrue(self.alice.check_password(self.NEW))
        self.assertEqual(self.client.get("/").status_code, 200)

    def test_other_devices_must_sign_in_again(self) -> None:
        other_device = Client()
        other_device.force_login(self.alice)
        self.change("driver")
        self.assertContains(
            self.client.get("/accounts/password_change/"),
            "other devices where you are signed in will ask for the new password",
        )
        self.assertRedirects(
            other_device.get("/"),
            "/accounts/login/?next=/",
            fetch_redirect_response=False,
        )
