"""Outbound hooks in the operators' admin (issue #16.4), through Django's test client and a real
receiver on loopback (roster.dev.hook_receiver, which checks signatures from the contract): create
with the secret shown once, sns:/sqs: targets, a test delivery now, rotate, pause and resume, the
circuit breaker's state and why, the latest deliveries per hook, redeliver (dead ones included).
Staff only, CSRF as Django admin does, everything escaped."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from roster.dev.chime import REGION, as_envelope, detail
from roster.dev.hook_receiver import ReceiverServer
from roster.hooks.delivery import deliveries_run
from roster.hooks.outbox import deliveries_fan_out
from roster.hooks.services import hook_create
from roster.ingest import IncomingMessage, messages_ingest
from roster.models import Hook, HookDelivery
from tests.ops.test_admin import action, page_messages

pytestmark = pytest.mark.django_db

HOOKS = "/admin/roster/hook"
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def operator(client):
    client.force_login(User.objects.create_user("operator", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def outsider(client):
    client.force_login(User.objects.create_user("outsider"))
    return client


@pytest.fixture(autouse=True)
def loopback_targets(settings):
    settings.HOOKS_ALLOW_HTTP_LOOPBACK = True
    settings.HOOKS_CACHE_SECONDS = 0  # each batch sees the hooks this test just made


@pytest.fixture
def receiver():
    """A receiver on loopback that knows no secret yet (``receiver.receiver.secrets`` is set per test)."""
    with ReceiverServer() as server:
        yield server


def hook_to(receiver, *, name: str = "crm", **extra) -> tuple[Hook, str]:
    hook, secret = hook_create(name=name, target=f"{receiver.url}/hook", **extra)
    receiver.receiver.secrets = [secret]
    return hook, secret


def changes_ingest(count: int, *, meeting_id: str | None = None) -> str:
    """``count`` roster changes of one meeting (a start, then joins): the outbox gets one each."""
    meeting_id = meeting_id or str(uuid.uuid4())
    ts = int(timezone.now().timestamp() * 1000) - 60_000
    docs = [detail("MeetingStarted", meeting_id, ts=ts, externalMeetingId="standup", mediaRegion=REGION)]
    docs += [
        detail("AttendeeJoined", meeting_id, f"a-{i}", ts + 1 + i, externalUserId=f"u{i}", networkType="Voip")
        for i in range(count - 1)
    ]
    for i, doc in enumerate(docs):  # one batch per change: one seq each
        messages_ingest(
            messages=[IncomingMessage(body=as_envelope(doc), queue="q", message_id=f"{meeting_id}-{i}")]
        )
    return meeting_id


def form_token(client: Client, url: str) -> str:
    page = client.get(url).content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def test_a_hook_is_created_in_admin_and_its_secret_shown_once(operator, receiver):
    response = operator.post(
        f"{HOOKS}/add/",
        {
            "name": "crm",
            "target": f"{receiver.url}/hook",
            "events": ["attendee.joined", "attendee.left"],
            "meetings": "sales-*",
        },
    )
    assert response.status_code == 200, response.content.decode()[:2000]
    hook = Hook.objects.get(name="crm")
    page = response.content.decode()
    assert hook.secret.startswith("whsec_") and hook.secret in page
    assert "never shown again" in page
    assert "no-store" in response["Cache-Control"]
    assert hook.events == ["attendee.joined", "attendee.left"] and hook.meetings == "sales-*"
    assert hook.created_by_user.username == "operator"
    change = operator.get(f"{HOOKS}/{hook.pk}/change/").content.decode()
    assert hook.secret not in change
    assert "set (shown once" in change


@pytest.mark.parametrize(
    ("target", "accepted"),
    [
        ("sns:arn:aws:sns:us-east-1:123456789012:roster-changes", True),
        ("sqs:https://sqs.us-east-1.amazonaws.com/123456789012/roster-changes", True),
        ("https://hooks.example.com/roster", True),
        ("http://10.0.0.7/hook", False),  # private: refused at creation
        ("https://169.254.169.254/latest/meta-data/", False),  # link-local (cloud metadata)
        ("ftp://example.com/", False),
        ("sns:roster-changes", False),
    ],
)
def test_operators_may_set_sns_and_sqs_targets_never_private_ones(operator, target, accepted):
    response = operator.post(f"{HOOKS}/add/", {"name": "t", "target": target, "meetings": "*"})
    assert Hook.objects.filter(name="t").exists() is accepted, target
    if not accepted:
        assert response.status_code == 200 and "errorlist" in response.content.decode()


def test_a_test_delivery_reaches_a_real_receiver_signed_and_shows_the_outcome(operator, receiver):
    hook, _ = hook_to(receiver)
    response = operator.post(f"{HOOKS}/{hook.pk}/test-delivery/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "delivered" in page and "<td>200</td>" in page and " ms</td>" in page
    [seen] = receiver.receiver.after(0)
    assert seen.signature_ok and seen.delivery_id.startswith("test-")
    assert HookDelivery.objects.count() == 0  # around the outbox: nothing stored, nothing retried

    receiver.receiver.secrets = ["another secret"]  # the receiver refuses: the page says so
    page = operator.post(f"{HOOKS}/{hook.pk}/test-delivery/").content.decode()
    assert "failed" in page and "<td>401</td>" in page and "HTTP 401" in page
    hook.refresh_from_db()
    assert hook.consecutive_failures == 0 and hook.broken_at is None  # a test is not traffic

    [said] = page_messages(action(operator, "hook", "send_test", [hook.pk]))
    assert re.fullmatch(r"Test delivery to crm: failed \(HTTP 401, \d+ ms\): HTTP 401", said), said


def test_buttons_are_posts_with_django_csrf(receiver):
    user = User.objects.create_user("op2", password="pw", is_staff=True, is_superuser=True)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    hook, secret = hook_to(receiver)
    change_url = f"{HOOKS}/{hook.pk}/change/"
    for button in ("test-delivery", "rotate-secret", "pause", "resume"):
        assert browser.get(f"{HOOKS}/{hook.pk}/{button}/").status_code == 405
        assert browser.post(f"{HOOKS}/{hook.pk}/{button}/").status_code == 403  # no CSRF token
    assert receiver.receiver.count == 0
    hook.refresh_from_db()
    assert hook.secret == secret and hook.enabled
    token = form_token(browser, change_url)
    assert (
        browser.post(f"{HOOKS}/{hook.pk}/test-delivery/", {"csrfmiddlewaretoken": token}).status_code == 200
    )
    assert receiver.receiver.count == 1


def test_rotating_shows_the_new_secret_once_and_both_sign_meanwhile(operator, receiver):
    hook, old = hook_to(receiver)
    response = operator.post(f"{HOOKS}/{hook.pk}/rotate-secret/")
    hook.refresh_from_db()
    new = hook.secret
    assert new != old and hook.previous_secret == old and hook.previous_secret_until > timezone.now()
    page = response.content.decode()
    assert new in page and old not in page and "no-store" in response["Cache-Control"]
    assert "never shown again" in page
    assert new not in operator.get(f"{HOOKS}/{hook.pk}/change/").content.decode()
    for knows in ([new], [old]):  # a receiver that switched already, and one that has not yet
        receiver.receiver.secrets = knows
        assert "<td>200</td>" in operator.post(f"{HOOKS}/{hook.pk}/test-delivery/").content.decode()


def test_a_hook_broken_by_the_breaker_says_why_in_the_list_and_page_and_resume_mends_it(
    operator, receiver, settings
):
    settings.HOOKS_BREAKER_FAILURES = 2
    hook, _ = hook_to(receiver, name=f"crm {HOSTILE}")
    receiver.receiver.secrets = ["not the hook's"]  # every delivery answered 401
    changes_ingest(2)
    deliveries_run(seconds=5)
    HookDelivery.objects.update(next_attempt_at=timezone.now())  # its backoff, skipped
    deliveries_run(seconds=5)
    hook.refresh_from_db()
    assert hook.broken_at is not None and "HTTP 401" in hook.broken_reason

    listing = operator.get(f"{HOOKS}/").content.decode()
    assert "broken</strong> by the circuit breaker since" in listing and "HTTP 401" in listing
    assert HOSTILE not in listing and "&lt;script&gt;alert(1)&lt;/script&gt;" in listing
    page = operator.get(f"{HOOKS}/{hook.pk}/change/").content.decode()
    assert "broken</strong> by the circuit breaker" in page and "next probe" in page
    assert "Resume (mend the circuit)" in page and HOSTILE not in page

    receiver.receiver.secrets = [hook.secret]  # the receiver is fixed: the operator resumes
    response = operator.post(f"{HOOKS}/{hook.pk}/resume/", follow=True)
    assert page_messages(response) == [f"crm {HOSTILE} resumed."]
    hook.refresh_from_db()
    assert hook.broken_at is None and hook.consecutive_failures == 0
    deliveries_run(seconds=5)
    assert set(HookDelivery.objects.values_list("status", flat=True)) == {"delivered"}


def test_pause_and_resume_from_the_list_and_the_page(operator, receiver):
    hook, _ = hook_to(receiver)
    response = action(operator, "hook", "pause", [hook.pk])
    assert page_messages(response) == ["Paused 1 hook(s)."]
    hook.refresh_from_db()
    assert not hook.enabled
    assert "paused</strong> by an operator" in operator.get(f"{HOOKS}/").content.decode()
    changes_ingest(2)
    assert deliveries_run(seconds=2) == 0 and receiver.receiver.count == 0  # queued, not sent
    response = operator.post(f"{HOOKS}/{hook.pk}/resume/", follow=True)
    assert page_messages(response) == ["crm resumed."]
    assert deliveries_run(seconds=5) == 2 and receiver.receiver.count == 2
    response = operator.post(f"{HOOKS}/{hook.pk}/pause/", follow=True)
    assert page_messages(response) == ["crm paused."]
    assert not Hook.objects.get(pk=hook.pk).enabled


def test_a_hooks_page_lists_its_latest_deliveries_newest_first_bounded_with_the_filtered_list(
    operator, receiver
):
    hook, _ = hook_to(receiver)
    other, _ = hook_create(name="other", target=f"{receiver.url}/other")
    changes_ingest(24)
    deliveries_run(seconds=10)
    HookDelivery.objects.filter(hook=hook, seq=24).update(status="dead", last_status_code=500)
    page = operator.get(f"{HOOKS}/{hook.pk}/change/").content.decode()
    table = page[page.index('class="hook-deliveries"') :]
    rows = re.findall(r"<tr><td><a href=\"/admin/roster/hookdelivery/(\d+)/change/\">", table)
    newest = list(HookDelivery.objects.filter(hook=hook).order_by("-pk").values_list("pk", flat=True)[:20])
    assert [int(pk) for pk in rows] == newest  # 20 of 24, newest first
    assert "<td>dead</td>" in table and "<td>500</td>" in table and "<td>delivered</td>" in table
    assert f"/admin/roster/hookdelivery/?hook__id__exact={hook.pk}" in page

    listing = operator.get(f"/admin/roster/hookdelivery/?hook__id__exact={hook.pk}").content.decode()
    assert listing.count('class="field-status"') == 24
    assert re.search(r'<td class="field-latency">\d+ ms</td>', listing)
    assert '<td class="field-last_status_code">200</td>' in listing
    assert HookDelivery.objects.filter(hook=other).count() == 24  # not listed under this hook


def test_the_hook_list_says_when_changes_wait_to_be_fanned_out(operator, receiver):
    """Changes committed but not yet turned into deliveries show on no hook's page: the list says
    how many wait, and stops once a worker has fanned them out."""
    hook_to(receiver)
    changes_ingest(2)
    page = operator.get(f"{HOOKS}/").content.decode()
    assert "2 roster change(s) wait in the outbox" in page
    deliveries_fan_out()
    assert "wait in the outbox" not in operator.get(f"{HOOKS}/").content.decode()


def test_redeliver_selected_sends_dead_deliveries_again_in_order(operator, receiver):
    hook, secret = hook_to(receiver)
    receiver.receiver.secrets = ["rotated away"]
    changes_ingest(3)
    deliveries_fan_out()
    HookDelivery.objects.update(retry_until=timezone.now() - timedelta(seconds=1))  # the 24 h are over
    deliveries_run(seconds=5)
    assert list(HookDelivery.objects.order_by("seq").values_list("status", flat=True)) == ["dead"] * 3
    assert receiver.receiver.count == 3 and not any(d.signature_ok for d in receiver.receiver.after(0))

    receiver.receiver.secrets = [secret]
    ids = list(HookDelivery.objects.values_list("pk", flat=True))
    response = action(operator, "hookdelivery", "redeliver", ids)
    assert page_messages(response) == ["3 delivery(ies) queued to be sent again."]
    deliveries_run(seconds=5)
    assert set(HookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    accepted = [d for d in receiver.receiver.after(3) if d.signature_ok]
    assert [d.seq for d in accepted] == [1, 2, 3]


def test_hook_pages_and_buttons_refuse_non_staff(outsider, receiver):
    hook, secret = hook_to(receiver)
    for url in (f"{HOOKS}/", f"{HOOKS}/{hook.pk}/change/", "/admin/roster/hookdelivery/"):
        assert outsider.get(url).status_code == 302  # to admin's login
    for button in ("test-delivery", "rotate-secret", "pause", "resume"):
        assert outsider.post(f"{HOOKS}/{hook.pk}/{button}/").status_code == 302
    hook.refresh_from_db()
    assert hook.secret == secret and hook.enabled and receiver.receiver.count == 0


def test_staff_who_may_only_view_hooks_get_no_buttons_and_no_actions(client, receiver):
    viewer = User.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_hook", "view_hookdelivery"]))
    client.force_login(viewer)
    hook, secret = hook_to(receiver)
    page = client.get(f"{HOOKS}/{hook.pk}/change/").content.decode()
    assert "Send test delivery" not in page and "Rotate secret" not in page
    listing = client.get(f"{HOOKS}/").content.decode()
    assert 'value="send_test"' not in listing and 'value="pause"' not in listing
    for button in ("test-delivery", "rotate-secret", "pause", "resume"):
        assert client.post(f"{HOOKS}/{hook.pk}/{button}/").status_code == 403
    hook.refresh_from_db()
    assert hook.secret == secret and hook.enabled and receiver.receiver.count == 0


def test_an_operator_edits_a_hooks_filters_and_target_never_its_secret(operator, receiver):
    hook, secret = hook_to(receiver)
    url = f"{HOOKS}/{hook.pk}/change/"
    fields = {"name": "crm", "target": "http://10.1.2.3/hook", "events": ["meeting.ended"], "meetings": "x-*"}
    refused = operator.post(url, fields)
    assert refused.status_code == 200 and "allowed for loopback only" in refused.content.decode()
    queue = "sqs:https://sqs.eu-west-1.amazonaws.com/123456789012/roster"
    assert operator.post(url, {**fields, "target": queue}).status_code == 302
    hook.refresh_from_db()
    assert (hook.target, hook.events, hook.meetings, hook.secret) == (queue, ["meeting.ended"], "x-*", secret)
