from django.contrib import admin
from django.urls import include, path

from sessions_app.api import api

urlpatterns = [
    path("admin/", include("sessions_app.urls")),
    path("django-admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", api.urls),
    path("", include("portal.urls")),
]
