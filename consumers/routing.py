"""Websocket routes. Both sockets run inside AuthMiddlewareStack; the dashboard requires an Origin
in ALLOWED_HOSTS, the feed also accepts none (apps' clients send none; the token is the credential)."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator, OriginValidator
from django.urls import path

from consumers.dashboard import DashboardConsumer
from consumers.feed import FeedConsumer


class MissingOriginAllowed(OriginValidator):
    """A missing Origin passes (non-browser clients); a present one must be in ALLOWED_HOSTS."""

    def valid_origin(self, parsed_origin) -> bool:  # noqa: ANN001 (channels' signature)
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)


def feed_app():
    # The same allowed hosts as AllowedHostsOriginValidator, which is a factory, not a class.
    strict = AllowedHostsOriginValidator(AuthMiddlewareStack(FeedConsumer.as_asgi()))
    return MissingOriginAllowed(strict.application, strict.allowed_origins)


def dashboard_app():
    return AllowedHostsOriginValidator(AuthMiddlewareStack(DashboardConsumer.as_asgi()))


websocket_urlpatterns = [
    path("ws/feed/", feed_app()),
    path("ws/dashboard/", dashboard_app()),
]
