"""Feed tokens as REST and the feed find them (roster.read.access): a use is noted at most once a
minute, so an application calling many times a second does not write the token's row each time.
And what open sockets ask every few seconds (access_recheck): what each credential grants now,
whatever changed it, at a cost that does not grow with the number of sockets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser, Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from roster.models import AccessRule, FeedToken, HostLink
from roster.read.access import (
    NO_ACCESS,
    TOKEN_TOUCH_EVERY,
    Access,
    access_for_session,
    access_for_token,
    access_for_user,
    access_recheck,
    feed_token_create,
    feed_token_get,
    feed_token_revoke,
    feed_tokens_revoke,
)
from roster.read.host_links import SESSION_KEY, host_link_create

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


def recheck(access: Access) -> Access | None:
    return access_recheck(accesses=[access])[access]


def test_a_token_is_rechecked_until_revoked_deleted_or_its_glob_edited():
    token, raw = feed_token_create(name="app", meetings="sales-*")
    access = access_for_token(raw=raw)
    assert access.token_id == token.pk and recheck(access) == access
    FeedToken.objects.filter(pk=token.pk).update(meetings="sales-emea")
    assert recheck(access) == access_for_token(raw=raw) != access
    assert recheck(access).globs == ("sales-emea",)
    FeedToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    assert recheck(access) is None
    other, raw = feed_token_create(name="other")
    access = access_for_token(raw=raw)
    other.delete()
    assert recheck(access) is None


def test_a_user_is_rechecked_with_their_own_and_their_groups_rules():
    host = User.objects.create_user("host", password="x")
    team = Group.objects.create(name="sales")
    host.groups.add(team)
    own = AccessRule.objects.create(user=host, meetings="board")
    AccessRule.objects.create(group=team, meetings="sales-*")
    access = access_for_user(user=host)
    assert access.user_id == host.pk and access.globs == ("board", "sales-*")
    assert recheck(access) == access
    own.delete()
    assert recheck(access) == access_for_user(user=User.objects.get(pk=host.pk))
    assert recheck(access).globs == ("sales-*",)
    host.groups.remove(team)
    assert recheck(access).nothing  # still signed in, sees nothing: every meeting unsubscribed
    User.objects.filter(pk=host.pk).update(is_staff=True)
    assert recheck(access).everything
    User.objects.filter(pk=host.pk).update(is_active=False)
    assert recheck(access) is None
    User.objects.create_user("gone", password="x")
    gone = access_for_user(user=User.objects.get(username="gone"))
    User.objects.filter(username="gone").delete()
    assert recheck(gone) is None


def test_a_host_link_is_rechecked_until_revoked_or_expired_its_use_noted_once_a_minute():
    link, _ = host_link_create(meetings="sales-emea")
    access = access_for_session(user=AnonymousUser(), session={SESSION_KEY: link.pk})
    HostLink.objects.filter(pk=link.pk).update(last_used_at=None)
    assert access.link_id == link.pk and recheck(access) == access
    noted = HostLink.objects.get(pk=link.pk).last_used_at
    assert noted is not None
    with CaptureQueriesContext(connection) as again:
        assert recheck(access) == access
    assert writes(again) == [] and HostLink.objects.get(pk=link.pk).last_used_at == noted
    HostLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert recheck(access) is None
    HostLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() + timedelta(hours=1))
    assert recheck(access) == access
    HostLink.objects.filter(pk=link.pk).update(revoked_at=timezone.now())
    assert recheck(access) is None


def test_an_access_of_no_credential_is_left_out():
    assert access_recheck(accesses=[NO_ACCESS, Access(everything=True)]) == {}


def test_the_cost_of_a_recheck_does_not_grow_with_the_credentials():
    def accesses(n: int) -> list[Access]:
        made = []
        for i in range(n):
            made.append(access_for_token(raw=feed_token_create(name=f"t{n}-{i}")[1]))
            host = User.objects.create(username=f"h{n}-{i}")
            AccessRule.objects.create(user=host, meetings=f"m-{i}")
            made.append(access_for_user(user=host))
            link, _ = host_link_create(meetings=f"m-{i}")
            made.append(access_for_session(user=AnonymousUser(), session={SESSION_KEY: link.pk}))
        HostLink.objects.update(last_used_at=timezone.now())
        return made

    counts = []
    for n in (1, 60):
        made = accesses(n)
        with CaptureQueriesContext(connection) as queries:
            answer = access_recheck(accesses=made)
        assert answer == {access: access for access in made}
        counts.append(len(queries.captured_queries))
    assert counts == [5, 5]  # tokens, links, users, their rules, their groups' rules


def test_revoking_by_name_revokes_every_live_token_of_that_name():
    first, _ = feed_token_create(name="app")
    second, _ = feed_token_create(name="app")
    kept, _ = feed_token_create(name="crm")
    assert feed_tokens_revoke(name="app") == 2
    assert feed_tokens_revoke(name="app") == 0  # all already revoked
    assert feed_tokens_revoke(name="nobody") is None
    assert FeedToken.objects.filter(revoked_at__isnull=True).get() == kept
