"""Feed tokens as REST and the feed find them (roster.read.access): a use is noted at most once a
minute, so an application calling many times a second does not write the token's row each time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from roster.models import FeedToken
from roster.read.access import TOKEN_TOUCH_EVERY, feed_token_create, feed_token_get, feed_token_revoke

pytestmark = pytest.mark.django_db


def writes(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]


def test_a_token_use_is_noted_at_most_once_a_minute():
    token, raw = feed_token_create(name="app", meetings="sales-*")
    with CaptureQueriesContext(connection) as first:
        assert feed_token_get(raw=raw).pk == token.pk
    noted = FeedToken.objects.get(pk=token.pk).last_used_at
    assert noted is not None and len(writes(first)) == 1

    with CaptureQueriesContext(connection) as again:
        for _ in range(20):
            assert feed_token_get(raw=raw).pk == token.pk
    assert writes(again) == []  # within the minute: read, never written
    assert FeedToken.objects.get(pk=token.pk).last_used_at == noted

    earlier = timezone.now() - TOKEN_TOUCH_EVERY - timedelta(seconds=1)
    FeedToken.objects.filter(pk=token.pk).update(last_used_at=earlier)
    feed_token_get(raw=raw)
    assert FeedToken.objects.get(pk=token.pk).last_used_at > earlier  # a minute on: noted again


def test_unknown_and_revoked_tokens_are_none_and_note_nothing():
    token, raw = feed_token_create(name="app")
    assert feed_token_get(raw="crt_unknown") is None
    assert feed_token_get(raw="") is None and feed_token_get(raw="x" * 201) is None
    feed_token_revoke(token=token)
    with CaptureQueriesContext(connection) as queries:
        assert feed_token_get(raw=raw) is None
    assert writes(queries) == []
    assert FeedToken.objects.get(pk=token.pk).last_used_at is None
