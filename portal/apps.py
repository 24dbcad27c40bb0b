from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"

    def ready(self) -> None:
        # Connects the customer live-update receiver to the sync's signals.
        from portal import live  # noqa: F401
