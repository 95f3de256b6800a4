"""Template tags for the dashboard header."""

from __future__ import annotations

from typing import Any

from django import template

from roster.read.selectors import queue_lag_get

register = template.Library()


@register.inclusion_tag("roster/_queue_lag.html", takes_context=True)
def queue_lag_header(context: template.Context) -> dict[str, Any]:
    """The queue lag warning on first paint (static/roster/queue_lag.js keeps it current)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"show": False}
    return {"show": True, "lag": queue_lag_get()}
