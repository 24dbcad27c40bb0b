from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path
from django.views.generic import RedirectView

from polaris.auth_views import LoginView, LogoutView, PasswordChangeView
from sessions_app.api.app import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", include("sessions_app.urls")),
    # One sign-in page for everyone, so login throttling has no side door.
    path(
        "django-admin/login/",
        RedirectView.as_view(url="/accounts/login/", query_string=True),
    ),
    # One sign-out too, which ends acting as a customer with its audit entry.
    path("django-admin/logout/", LogoutView.as_view()),
    # And one password change, whose check of the current password is throttled.
    path(
        "django-admin/password_change/",
        RedirectView.as_view(url="/accounts/password_change/"),
    ),
    path("django-admin/", admin.site.urls),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    # Password change for the signed-in; no reset by email (Polaris sends none):
    # the sign-in page sends people who forgot theirs to their operator.
    path(
        "accounts/password_change/",
        PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("api/v1/", api.urls),
    path("", include("portal.urls")),
]
