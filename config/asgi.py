"""ASGI entry point served by Daphne: HTTP through Django, websockets through consumers.routing."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_asgi_app = get_asgi_application()

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

# The dashboard's few static files are served by Django itself (no separate web server needed).
http_app = ASGIStaticFilesHandler(django_asgi_app)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from consumers import backlog  # noqa: E402
from consumers.routing import websocket_urlpatterns  # noqa: E402

# Daphne's websocket protocol, bounded: a client that stops reading is closed 4408.
backlog.install(max_unsent_bytes=settings.SOCKET_MAX_PENDING_BYTES)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
