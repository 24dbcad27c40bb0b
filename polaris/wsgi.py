"""WSGI entry point, for tools that need one; SSE streams only work under ASGI."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "polaris.settings")

application = get_wsgi_application()
