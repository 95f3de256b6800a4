"""Hooks as operators and applications make them: ``hook_create`` and REST ``/api/hooks`` (a token
created with --can-manage-hooks, https targets only, its own hooks only)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from roster.dev.chime import as_bare, detail
from roster.models import FeedToken, Hook, HookDelivery, HookPayload
from roster.read.access import feed_token_create
from tests.conftest import ingest

pytestmark = pytest.mark.django_db


def test_hook_create_prints_the_secret_alone_on_the_last_line(hook_settings):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "hook_create",
        "billing",
        "--url",
        "sns:arn:aws:sns:us-east-1:123456789012:roster",
        "--events",
        "attendee.joined, meeting.ended",
        "--meetings",
        "sales-*",
        stdout=out,
        stderr=err,
    )
    secret = out.getvalue().strip().splitlines()[-1]
    hook = Hook.objects.get(name="billing")
    assert secret == hook.secret and secret.startswith("whsec_") and secret not in err.getvalue()
    assert hook.events == ["meeting.ended", "attendee.joined"] and hook.meetings == "sales-*"
    with pytest.raises(CommandError, match="unknown event types"):
        call_command("hook_create", "x", "--url", "https://h.example.com/", "--events", "attendee.jumped")
    with pytest.raises(CommandError, match="exists"):
        call_command("hook_create", "billing", "--url", "https://h.example.com/")


def test_create_feed_token_can_manage_hooks():
    out = io.StringIO()
    call_command("create_feed_token", "app", "--can-manage-hooks", stdout=out, stderr=io.StringIO())
    assert FeedToken.objects.get(name="app").can_manage_hooks


def bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def post(client, path: str, raw: str, body: dict | None = None):
    return client.post(path, json.dumps(body or {}), content_type="application/json", **bearer(raw))


def test_rest_hooks_for_a_token_allowed_to(client, hook_settings):
    _, raw = feed_token_create(name="app", meetings="sales-*", can_manage_hooks=True)
    _, other = feed_token_create(name="other", can_manage_hooks=True)
    _, plain = feed_token_create(name="plain")
    url = "https://hooks.example.com/in"
    assert post(client, "/api/hooks", plain, {"name": "x", "url": url}).status_code == 403
    assert client.get("/api/hooks").status_code == 401
    refused = post(client, "/api/hooks", raw, {"name": "x", "url": "sns:arn:aws:sns:us-east-1:1:t"})
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden_target")
    assert post(client, "/api/hooks", raw, {"name": "x", "url": "https://10.1.2.3/"}).status_code == 400
    made = post(client, "/api/hooks", raw, {"name": "app-hook", "url": url, "events": ["attendee.joined"]})
    assert made.status_code == 201
    hook_id, secret = made.json()["hook"]["id"], made.json()["secret"]
    assert Hook.objects.get(pk=hook_id).secret == secret and "secret" not in made.json()["hook"]
    assert post(client, "/api/hooks", raw, {"name": "app-hook", "url": url}).status_code == 409
    listed = client.get("/api/hooks", **bearer(raw)).json()["hooks"]
    assert [h["name"] for h in listed] == ["app-hook"] and "secret" not in listed[0]
    assert client.get("/api/hooks", **bearer(other)).json()["hooks"] == []
    assert client.get(f"/api/hooks/{hook_id}", **bearer(other)).status_code == 404
    rotated = post(client, f"/api/hooks/{hook_id}/rotate", raw)
    hook = Hook.objects.get(pk=hook_id)
    assert rotated.json()["secret"] == hook.secret != secret and hook.previous_secret == secret
    assert post(client, f"/api/hooks/{hook_id}/pause", raw).json()["hook"]["enabled"] is False
    assert post(client, f"/api/hooks/{hook_id}/resume", raw).json()["hook"]["enabled"] is True
    # the token's scope bounds the hook: its glob is "*", the token's "sales-*"
    for meeting_id, external in (("m-1", "sales-1"), ("m-2", "support-1")):
        ingest([as_bare(detail("AttendeeJoined", meeting_id, "a1", ts=2, externalMeetingId=external))])
    assert list(HookPayload.objects.values_list("meeting_id", flat=True)) == ["m-1"]
    assert client.delete(f"/api/hooks/{hook_id}", **bearer(raw)).status_code == 204
    assert not Hook.objects.exists() and not HookDelivery.objects.exists()
