"""Host links as a service: minted within bounds and scopes, signed and unforgeable, stored as a
hash, ending at expiry or revocation; and the access a link's session gets."""

from __future__ import annotations

import itertools
from datetime import timedelta
from fnmatch import fnmatchcase

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.signing import Signer
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from roster.models import HostLink
from roster.read.access import access_for_session, feed_token_create, feed_token_revoke
from roster.read.host_links import (
    SALT,
    SESSION_KEY,
    HostLinkRefused,
    host_link_check,
    host_link_create,
    host_link_live,
    host_link_revoke,
    host_link_verify,
    scope_covers,
)


def fragment(url: str) -> str:
    return url.partition("#")[2]


# --- "within the token's scope" ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "meetings", "covered"),
    [
        ("*", "*", True),
        ("*", "anything-*", True),
        ("sales-*", "sales-*", True),  # the scope itself
        ("sales-*", "sales-emea", True),  # an exact id the scope matches
        ("sales-*", "board", False),
        ("sales-*", "sales-emea-*", True),  # a narrower glob: every match starts with "sales-"
        ("sales-*", "sales-??", True),
        ("sales-*", "sales*", False),  # wider: "salesforce"
        ("sales-*", "*", False),
        ("sales-*", "*-emea", False),
        ("sales-*", "[s]ales-*", False),  # inside, but not provably from the text: refused
        ("sales-*-emea", "sales-x-emea", True),
        ("sales-*-emea", "sales-x-*", False),
        ("sales-?", "sales-1", True),
        ("sales-?", "sales-1*", False),
        ("sales-[ab]*", "sales-a-*", False),  # a scope with a class before its star: only exact ids
        ("sales-[ab]*", "sales-a-1", True),
        ("m-123", "m-123", True),
        ("m-123", "m-12?", False),
        ("m-123", "m-1234", False),
    ],
)
def test_scope_covers(scope, meetings, covered):
    assert scope_covers(scope=scope, meetings=meetings) is covered


PATTERN = st.text(alphabet="ab-*?[]", max_size=5)
CANDIDATES = ["".join(chars) for n in range(5) for chars in itertools.product("ab-*?[]", repeat=n)]


@settings(max_examples=400, deadline=None)
@given(scope=PATTERN, meetings=PATTERN)
def test_a_covered_glob_matches_nothing_its_scope_does_not(scope, meetings):
    """Soundness: every id (meetingId or externalMeetingId alike) a covered link could show, its
    token could show too; checked against every id of up to four characters of the alphabet."""
    if scope_covers(scope=scope, meetings=meetings):
        leaks = [c for c in CANDIDATES if fnmatchcase(c, meetings) and not fnmatchcase(c, scope)]
        assert leaks == []


# --- minting -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_link_is_a_signed_fragment_and_only_its_secret_hash_is_stored(settings):
    settings.PUBLIC_BASE_URL = "https://roster.example.com/"
    link, url = host_link_create(meetings="sales-emea", hours=2, label="Q3 review")
    assert url.startswith("https://roster.example.com/link/#")
    value = fragment(url)
    link_id, _, rest = value.partition(".")
    secret = rest.partition(":")[0]
    assert link_id == str(link.pk) and len(secret) >= 32
    stored = HostLink.objects.get()
    assert secret not in (stored.secret_hash, stored.meetings, stored.label)
    assert (stored.meetings, stored.label) == ("sales-emea", "Q3 review")
    assert timedelta(hours=1, minutes=59) < stored.expires_at - timezone.now() <= timedelta(hours=2)
    assert host_link_verify(value=value) == link


@pytest.mark.django_db
def test_a_link_cannot_be_forged_or_guessed(settings):
    link, url = host_link_create(meetings="sales-emea")
    other, other_url = host_link_create(meetings="board")
    value = fragment(url)
    secret = value.partition(".")[2].partition(":")[0]
    signer = Signer(salt=SALT)
    assert host_link_verify(value=value[:-1] + ("A" if value[-1] != "A" else "B")) is None  # signature
    assert host_link_verify(value=signer.sign(f"{other.pk}.{secret}")) is None  # another link's id
    assert host_link_verify(value=signer.sign(f"{link.pk}.guess")) is None  # SECRET_KEY alone is not enough
    assert host_link_verify(value=f"{link.pk}.{secret}") is None  # unsigned
    assert host_link_verify(value="") is None and host_link_verify(value="x" * 5000) is None
    settings.SECRET_KEY = "another deployment's key"
    assert host_link_verify(value=value) is None  # the secret alone is not enough either
    assert host_link_verify(value=fragment(other_url)) is None


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"meetings": ""}, "bad_meetings"),
        ({"meetings": "   "}, "bad_meetings"),
        ({"meetings": None}, "bad_meetings"),
        ({"meetings": ["m-1"]}, "bad_meetings"),
        ({"meetings": "m" * 257}, "bad_meetings"),
        ({"meetings": "m\x00-1"}, "bad_meetings"),
        ({"hours": 0}, "bad_hours"),
        ({"hours": -1}, "bad_hours"),
        ({"hours": 24.01}, "bad_hours"),
        ({"hours": True}, "bad_hours"),
        ({"hours": "4"}, "bad_hours"),
        ({"hours": float("nan")}, "bad_hours"),
        ({"hours": float("inf")}, "bad_hours"),
        ({"label": 7}, "bad_label"),
        ({"label": "x" * 257}, "bad_label"),
        ({"label": "two\nlines"}, "bad_label"),
    ],
)
def test_values_no_link_may_have(values, code):
    with pytest.raises(HostLinkRefused) as refused:
        host_link_check(**{"meetings": "m-1", "hours": 4, "label": "", **values})
    assert refused.value.code == code


def test_hours_are_bounded_by_host_link_max_hours(settings):
    host_link_check(meetings="m-1", hours=24, label="")  # the default bound, inclusive
    host_link_check(meetings="m-1", hours=0.25, label="")
    settings.HOST_LINK_MAX_HOURS = 48
    host_link_check(meetings="m-1", hours=30, label="")
    settings.HOST_LINK_MAX_HOURS = 1
    with pytest.raises(HostLinkRefused, match="at most 1 "):
        host_link_check(meetings="m-1", hours=2, label="")


@pytest.mark.django_db
def test_a_token_mints_only_when_allowed_and_only_within_its_scope():
    plain, _ = feed_token_create(name="plain", meetings="*")
    with pytest.raises(HostLinkRefused) as refused:
        host_link_create(meetings="sales-emea", created_by_token=plain)
    assert refused.value.code == "forbidden"

    minter, _ = feed_token_create(name="crm", meetings="sales-*", can_mint_host_links=True)
    link, _ = host_link_create(meetings="sales-emea", created_by_token=minter)
    assert (link.created_by_token, link.created_by_user) == (minter, None)
    host_link_create(meetings="sales-emea-*", created_by_token=minter)
    for outside in ("board", "sales*", "*"):
        with pytest.raises(HostLinkRefused) as refused:
            host_link_create(meetings=outside, created_by_token=minter)
        assert refused.value.code == "out_of_scope"

    feed_token_revoke(token=minter)
    with pytest.raises(HostLinkRefused) as refused:
        host_link_create(meetings="sales-emea", created_by_token=minter)
    assert refused.value.code == "forbidden"
    assert HostLink.objects.count() == 2


# --- a link's life and its session's access ------------------------------------------------------


@pytest.mark.django_db
def test_a_link_lives_until_it_expires_or_is_revoked():
    link, _ = host_link_create(meetings="sales-emea")
    assert host_link_live(link_id=link.pk) == link
    link.refresh_from_db()
    assert link.last_used_at is not None
    assert host_link_live(link_id=str(link.pk)) is None  # session values are the link's id, an int

    HostLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert host_link_live(link_id=link.pk) is None

    other, _ = host_link_create(meetings="board")
    host_link_revoke(link=other)
    assert host_link_live(link_id=other.pk) is None
    revoked_at = HostLink.objects.get(pk=other.pk).revoked_at
    host_link_revoke(link=other)  # again: the first revocation's time stays
    assert HostLink.objects.get(pk=other.pk).revoked_at == revoked_at


@pytest.mark.django_db
def test_a_link_session_sees_the_links_meetings_while_the_link_lives():
    link, _ = host_link_create(meetings="sales-*")
    session = {SESSION_KEY: link.pk}
    access = access_for_session(user=AnonymousUser(), session=session)
    assert (access.everything, access.globs, access.link_id) == (False, ("sales-*",), link.pk)
    assert access.allows(meeting_id="m-1", external_meeting_id="sales-emea")
    assert not access.allows(meeting_id="m-2", external_meeting_id="board")
    assert access_for_session(user=AnonymousUser(), session={}) is None
    assert access_for_session(user=AnonymousUser(), session=None) is None

    host = User.objects.create_user("host", password="x")
    assert access_for_session(user=host, session=session).link_id is None  # a signed-in user is a user

    host_link_revoke(link=link)
    assert access_for_session(user=AnonymousUser(), session=session) is None
