import re
from urllib.parse import unquote

from django.contrib.auth.models import Permission, User
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.http import HttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from polaris.live import planned_end
from portal.acting import ACTING_AS_KEY, LAPSED, act_as_end
from portal.models import Reservation
from portal.tests.base import PortalTestCase
from portal.tests.factories import ReservationFactory
from sessions_app.models import ApiToken, AuditEntry
from sync.tests.factories import StaffFactory, UserMappingFactory


class ActAsTests(PortalTestCase):
    def start(self) -> None:
        self.client.force_login(self.agent)
        response = self.client.post(
            reverse("portal:act-as-start", args=[self.alice.pk])
        )
        self.assertRedirects(response, "/")

    def test_it_shows_the_customer_with_an_acting_as_banner(self) -> None:
        self.start()
        response = self.client.get("/")
        self.assertContains(response, "Acting as Alice")
        self.assertContains(response, "Back to admin portal")
        self.assertContains(response, "12.50")
        self.assertContains(self.client.get("/tokens/"), "Acting as Alice")

    def test_a_request_looks_the_acted_as_customer_up_once(self) -> None:
        self.start()
        requests = {
            "dashboard": lambda: self.client.get("/"),
            "token create": lambda: self.client.post("/tokens/", {"name": "Car"}),
        }
        for name, send in requests.items():
            with (
                self.subTest(request=name),
                CaptureQueriesContext(connection) as queries,
            ):
                send()
                lookups = [
                    query["sql"]
                    for query in queries
                    if 'NOT "auth_user"."is_staff"' in query["sql"]
                ]
                self.assertEqual(len(lookups), 1, lookups)

    def test_back_to_admin_portal_returns_to_the_page_acting_began_on(self) -> None:
        self.client.force_login(self.agent)
        for referer, back in (
            ("http://testserver/admin/sessions/7/", "/admin/sessions/7/"),
            (
                "http://testserver/admin/user-mappings/?q=alice",
                "/admin/user-mappings/?q=alice",
            ),
            # Not a console page: the console's list of customers.
            ("http://testserver/tokens/", "/admin/user-mappings/"),
            ("https://elsewhere.example/admin/sessions/", "/admin/sessions/"),
            (None, "/admin/user-mappings/"),
        ):
            with self.subTest(referer=referer):
                headers = {"Referer": referer} if referer else {}
                self.client.post(
                    reverse("portal:act-as-start", args=[self.alice.pk]),
                    headers=headers,
                )
                response = self.client.post(reverse("portal:act-as-end"))
                self.assertRedirects(response, back, fetch_redirect_response=False)

    def test_start_and_end_are_audited(self) -> None:
        self.start()
        response = self.client.post(reverse("portal:act-as-end"))
        self.assertRedirects(
            response, "/admin/user-mappings/", fetch_redirect_response=False
        )
        actions = list(
            AuditEntry.objects.filter(actor=self.agent)
            .order_by("id")
            .values_list("action", "object_id")
        )
        self.assertEqual(
            actions,
            [
                (AuditEntry.Action.IMPERSONATION_STARTED, str(self.alice.pk)),
                (AuditEntry.Action.IMPERSONATION_ENDED, str(self.alice.pk)),
            ],
        )
        self.assertEqual(self.client.get("/").status_code, 302)

    def test_acting_as_the_same_customer_again_goes_on_with_one_end(self) -> None:
        self.start()
        self.start()
        self.client.post(reverse("portal:act-as-end"))
        started, ended = AuditEntry.objects.filter(actor=self.agent).order_by("id")
        self.assertEqual(started.action, AuditEntry.Action.IMPERSONATION_STARTED)
        self.assertEqual(ended.after, {"started": started.pk})

    def test_a_tab_left_on_the_customer_goes_to_the_console_once_acting_ended(
        self,
    ) -> None:
        self.start()
        self.client.post(reverse("portal:act-as-end"))
        # Its next live re-read of a card: the tab goes, not the console into it.
        response = self.client.get(
            "/", headers={"HX-Request": "true", "HX-Target": "recent-activity"}
        )
        self.assertEqual(response["HX-Redirect"], "/admin/sessions/")
        self.assertNotContains(response, "sessions match")

    def ended_entries(self) -> list[str]:
        return list(
            AuditEntry.objects.filter(
                actor=self.agent, action=AuditEntry.Action.IMPERSONATION_ENDED
            ).values_list("object_id", flat=True)
        )

    def test_opening_the_console_at_switch_ends_acting(self) -> None:
        self.start()
        response = self.client.post(reverse("portal:switch"), {"account": "console"})
        self.assertRedirects(
            response, "/admin/sessions/", fetch_redirect_response=False
        )
        self.assertEqual(self.ended_entries(), [str(self.alice.pk)])
        response = self.client.get("/")
        self.assertRedirects(
            response, "/admin/sessions/", fetch_redirect_response=False
        )

    def test_opening_their_own_dashboard_at_switch_ends_acting(self) -> None:
        UserMappingFactory(user=self.agent, steve_ocpp_id_tag="TAG-AGENT")
        self.start()
        self.client.post(reverse("portal:switch"), {"account": "customer"})
        self.assertEqual(self.ended_entries(), [str(self.alice.pk)])
        response = self.client.get("/")
        self.assertNotContains(response, "Acting as")
        self.assertContains(response, "Hi agent")

    def test_signing_out_ends_acting(self) -> None:
        for logout_url in ("/accounts/logout/", "/django-admin/logout/"):
            with self.subTest(logout_url):
                AuditEntry.objects.all().delete()
                self.start()
                response = self.client.post(logout_url)
                self.assertRedirects(
                    response, "/accounts/login/", fetch_redirect_response=False
                )
                self.assertEqual(self.ended_entries(), [str(self.alice.pk)])

    def test_signing_in_as_someone_else_ends_acting(self) -> None:
        self.start()
        self.client.post(
            "/accounts/login/", {"username": "bob@example.com", "password": "driver"}
        )
        self.assertEqual(self.ended_entries(), [str(self.alice.pk)])
        self.assertContains(self.client.get("/"), "Hi Bob")

    def test_the_end_is_audited_once_whichever_ways_out_follow(self) -> None:
        self.start()
        self.client.post(reverse("portal:act-as-end"))
        self.client.post(reverse("portal:switch"), {"account": "console"})
        self.client.post("/accounts/logout/")
        self.assertEqual(self.ended_entries(), [str(self.alice.pk)])

    def test_acting_the_agent_may_no_longer_keep_ends_audited_for_good(self) -> None:
        permission = Permission.objects.get(codename="act_as_customer")
        for lapse, restore in (
            (
                lambda: self.agent.user_permissions.remove(permission),
                lambda: self.agent.user_permissions.add(permission),
            ),
            (
                lambda: (
                    type(self.alice)
                    .objects.filter(pk=self.alice.pk)
                    .update(is_active=False)
                ),
                lambda: (
                    type(self.alice)
                    .objects.filter(pk=self.alice.pk)
                    .update(is_active=True)
                ),
            ),
        ):
            with self.subTest(lapse=lapse):
                AuditEntry.objects.all().delete()
                self.start()
                lapse()
                response = self.client.get("/")
                self.assertRedirects(
                    response, "/admin/sessions/", fetch_redirect_response=False
                )
                self.assertContains(
                    self.client.get("/admin/sessions/"),
                    f"Acting as {self.alice.get_full_name()} has ended: you may "
                    "no longer act as this customer.",
                )
                (ended,) = AuditEntry.objects.filter(
                    action=AuditEntry.Action.IMPERSONATION_ENDED
                )
                started = AuditEntry.objects.get(
                    action=AuditEntry.Action.IMPERSONATION_STARTED
                )
                self.assertEqual(ended.object_id, str(self.alice.pk))
                self.assertEqual(ended.after, {"started": started.pk, "reason": LAPSED})
                # Allowed again, the agent starts acting anew (audited) or not at all.
                restore()
                response = self.client.get("/")
                self.assertNotContains(
                    response, "Acting as Alice", status_code=response.status_code
                )
                self.assertEqual(AuditEntry.objects.count(), 2)

    def test_requests_that_end_it_at_once_audit_the_end_once(self) -> None:
        # A page and its htmx parts run at once, each with the session as it
        # was loaded: each would end acting.
        self.start()
        key = self.client.session.session_key
        loaded = [SessionStore(key), SessionStore(key)]
        for session in loaded:
            self.assertIn(ACTING_AS_KEY, session)
        for session in loaded:
            act_as_end(agent=self.agent, session=session, reason=LAPSED)
            session.save()
        self.assertEqual(self.ended_entries(), [str(self.alice.pk)])
        # Acting anew ends anew.
        self.start()
        self.client.post(reverse("portal:act-as-end"))
        self.assertEqual(self.ended_entries(), [str(self.alice.pk)] * 2)

    def test_a_stream_finding_acting_lapsed_sends_its_page_to_end_it(self) -> None:
        # Ending it writes the session: the stream leaves that to the page's
        # next request, where it sends the page.
        self.start()
        self.agent.user_permissions.clear()
        stream = self.client.get(reverse("portal:live"))
        self.assertEqual(stream.content.decode(), planned_end("signed-out"))
        self.assertEqual(self.ended_entries(), [])
        self.assertRedirects(
            self.client.get("/"), "/admin/sessions/", fetch_redirect_response=False
        )
        self.assertEqual(self.ended_entries(), [str(self.alice.pk)])

    def test_a_tab_showing_the_customer_acted_as_before_reloads(self) -> None:
        # Tab A shows Alice; in tab B the agent acts as Bob. Tab A's own requests
        # name Alice: its parts and its stream reload it rather than fill it
        # with Bob's data.
        self.start()
        page = self.client.get("/").content.decode()
        self.assertIn(f'"X-Portal-Customer": "{self.alice.pk}"', page)
        resume_id = re.search(r'sse-connect="[^"]*lastEventId=([^"&]+)', page)
        assert resume_id is not None
        self.client.post(reverse("portal:act-as-start", args=[self.bob.pk]))

        def part_of_page_showing(customer: User) -> HttpResponse:
            return self.client.get(
                "/",
                headers={
                    "HX-Request": "true",
                    "HX-Target": "recent-activity",
                    "X-Portal-Customer": str(customer.pk),
                },
            )

        part = part_of_page_showing(self.alice)
        self.assertEqual(part.headers.get("HX-Refresh"), "true")
        self.assertNotContains(part, "recent-title")
        stream = self.client.get(
            reverse("portal:live"), {"lastEventId": unquote(resume_id[1])}
        )
        self.assertEqual(stream.content.decode(), planned_end("signed-out"))

        # Bob's own tab carries on.
        self.assertContains(part_of_page_showing(self.bob), "recent-title")

    def test_the_agent_may_not_change_anything(self) -> None:
        reservation = ReservationFactory(user=self.alice, charger=self.charger)
        self.start()
        posts = [
            (reverse("portal:reservation-cancel", args=[reservation.pk]), {}),
            (reverse("portal:charger-start"), {"charger": self.charger.pk}),
            (reverse("portal:token-list"), {"name": "agent"}),
        ]
        for url, data in posts:
            self.assertEqual(self.client.post(url, data).status_code, 403, url)
        reservation.refresh_from_db()
        self.assertEqual(reservation.status, Reservation.Status.ACTIVE)
        self.assertFalse(ApiToken.objects.exists())

    def test_the_agent_is_not_pointed_at_the_token_form_it_does_not_get(self) -> None:
        self.start()
        response = self.client.get(reverse("portal:token-list"))
        self.assertNotContains(response, "Create token")
        self.assertNotContains(response, "Create one above")
        self.assertContains(response, "This customer has not created any.")

    def test_staff_without_the_permission_cannot_act_as(self) -> None:
        self.client.force_login(StaffFactory(username="plain-staff"))
        url = reverse("portal:act-as-start", args=[self.alice.pk])
        self.assertEqual(self.client.post(url).status_code, 403)
        self.assertFalse(AuditEntry.objects.exists())

    def test_customers_cannot_act_as(self) -> None:
        self.client.force_login(self.bob)
        url = reverse("portal:act-as-start", args=[self.alice.pk])
        self.assertEqual(self.client.post(url).status_code, 302)
        self.assertFalse(AuditEntry.objects.exists())

    def test_staff_accounts_cannot_be_acted_as(self) -> None:
        self.client.force_login(self.agent)
        other = StaffFactory(username="other-staff")
        url = reverse("portal:act-as-start", args=[other.pk])
        self.assertEqual(self.client.post(url).status_code, 404)


class ActAsButtonTests(PortalTestCase):
    def render(self, user: object, **context: object) -> str:
        from django.contrib.auth.context_processors import PermWrapper
        from django.template.loader import render_to_string
        from django.test import RequestFactory

        request = RequestFactory().get("/")
        request.user = user  # type: ignore[attr-defined]
        return render_to_string(
            "includes/_act_as_button.html",
            {"perms": PermWrapper(user), **context},
            request=request,
        )

    def test_it_posts_to_the_start_view_for_allowed_staff(self) -> None:
        html = self.render(self.agent, act_as_user=self.alice)
        self.assertIn(reverse("portal:act-as-start", args=[self.alice.pk]), html)

    def test_it_is_hidden_for_accounts_that_cannot_be_acted_as(self) -> None:
        # The start view answers 404 for both.
        self.alice.is_active = False
        for account in (self.alice, StaffFactory(username="colleague")):
            with self.subTest(account=account.username):
                html = self.render(self.agent, act_as_user=account)
                self.assertNotIn("Act as customer", html)
                self.client.force_login(self.agent)
                start = reverse("portal:act-as-start", args=[account.pk])
                self.alice.save()
                self.assertEqual(self.client.post(start).status_code, 404)

    def test_it_is_hidden_without_the_permission(self) -> None:
        html = self.render(StaffFactory(username="plain"), act_as_user=self.alice)
        self.assertNotIn("Act as customer", html)
