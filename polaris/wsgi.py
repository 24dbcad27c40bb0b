"""WSGI entry point, for tools that need one; SSE streams only work under ASGI."""

import os

from django.core.wsgi import get_wsgi_application

from polaris.startup import setup_web_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "polaris.settings")

setup_web_or_exit()
application = get_wsgi_application()
