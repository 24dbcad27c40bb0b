"""ASGI entry point: uvicorn serves pages and the SSE streams (which need ASGI)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "polaris.settings")

application = get_asgi_application()
