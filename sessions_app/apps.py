from django.apps import AppConfig


class SessionsConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Sessions and billing"

    def ready(self) -> None:
        # Connects the live-update receivers to the sync's signals.
        from sessions_app import live  # noqa: F401
