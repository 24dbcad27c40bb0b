from django.urls import reverse

from portal.tests.base import PortalTestCase
from portal.tests.test_tokens import current_section
from sync.tests.factories import StaffFactory, UserMappingFactory


class StaffRedirectTests(PortalTestCase):
    def test_staff_land_on_the_console(self) -> None:
        self.client.force_login(self.agent)
        self.assertRedirects(
            self.client.get("/"), "/admin/sessions/", fetch_redirect_response=False
        )

    def test_customers_stay_on_the_dashboard(self) -> None:
        self.client.force_login(self.alice)
        self.assertEqual(self.client.get("/").status_code, 200)


class SwitchTests(PortalTestCase):
    def test_staff_without_mappings_can_come_back_to_the_dashboard(self) -> None:
        # The seed: an admin sent to the console uses /switch "to come back here
        # on purpose"; without a card the dashboard loads in its first-run state.
        self.client.force_login(self.agent)
        response = self.client.get("/switch")
        self.assertContains(response, "Open admin console")
        self.assertContains(response, "My customer dashboard")
        self.assertContains(response, "starts empty")
        response = self.client.post("/switch", {"account": "customer"})
        self.assertRedirects(response, "/")
        response = self.client.get("/")
        self.assertContains(response, "Your account is almost ready")
        # They are the operator: told where cards are linked, not to contact it.
        self.assertContains(
            response, f'in <a href="{reverse("sessions_app:user-mapping-list")}">'
        )
        self.assertNotContains(response, "Contact your operator")

    def test_choosing_the_customer_dashboard_keeps_staff_on_it(self) -> None:
        staff = StaffFactory(username="ops")
        UserMappingFactory(user=staff, steve_ocpp_id_tag="TAG-OPS")
        self.client.force_login(staff)
        response = self.client.get("/switch")
        self.assertContains(response, "My customer dashboard")
        response = self.client.post("/switch", {"account": "customer"})
        self.assertRedirects(response, "/")
        self.assertEqual(self.client.get("/").status_code, 200)
        response = self.client.post("/switch", {"account": "console"})
        self.assertRedirects(
            response, "/admin/sessions/", fetch_redirect_response=False
        )
        self.assertEqual(self.client.get("/").status_code, 302)

    def test_the_sidebar_marks_switch_account_as_the_current_section(self) -> None:
        self.client.force_login(self.agent)
        response = self.client.get("/switch")
        self.assertEqual(current_section(response), ["/switch"])

    def test_staff_on_the_console_pick_from_its_shell(self) -> None:
        # The portal's sidebar would offer a Dashboard link that leads back to
        # the console; once they chose their dashboard, the portal's is right.
        self.client.force_login(self.agent)
        response = self.client.get("/switch")
        self.assertTemplateUsed(response, "console_base.html")
        self.assertContains(response, 'href="/admin/sessions/"')
        self.client.post("/switch", {"account": "customer"})
        response = self.client.get("/switch")
        self.assertTemplateUsed(response, "portal_base.html")
        self.assertTemplateNotUsed(response, "console_base.html")

    def test_customers_see_only_their_dashboard(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get("/switch")
        self.assertContains(response, "My customer dashboard")
        self.assertNotContains(response, "Open admin console")
        self.client.post("/switch", {"account": "console"})
        self.assertEqual(self.client.get("/").status_code, 200)
        self.assertEqual(reverse("portal:switch"), "/switch")
