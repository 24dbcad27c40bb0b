from django.urls import path

from portal import views

app_name = "portal"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("switch", views.switch, name="switch"),
    path("live/", views.live_stream, name="live"),
    path("chargers/reserve", views.charger_reserve, name="charger-reserve"),
    path("chargers/start", views.charger_start, name="charger-start"),
    path(
        "reservations/<int:pk>/cancel",
        views.reservation_cancel,
        name="reservation-cancel",
    ),
    path("sessions/<int:pk>/stop", views.session_stop, name="session-stop"),
    path("tokens/", views.token_list, name="token-list"),
    path("tokens/<int:pk>/revoke", views.token_revoke, name="token-revoke"),
    path("act-as/<int:user_id>/start", views.act_as_start, name="act-as-start"),
    path("act-as/end", views.act_as_end, name="act-as-end"),
]
