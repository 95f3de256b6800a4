"""The transactional outbox (roster.hooks.outbox), against the database of the run: the ingest
transaction writes one row per meeting change naming the hooks it matched (filtered by event
types, meeting glob and the creating token's scope), split above HOOKS_MAX_BODY_BYTES; the fan-out
turns it into one delivery per hook, each meeting's changes in seq order."""

from __future__ import annotations

import json

import pytest

from roster.dev.chime import as_bare, bodies, detail, meeting_stream
from roster.domain.hook_events import EVENT_TYPES
from roster.hooks.outbox import body_with_id, deliveries_fan_out
from roster.hooks.services import hook_create
from roster.ingest import hooks as ingest_hooks
from roster.models import Event, HookDelivery, HookPayload, Meeting
from roster.read.access import feed_token_create, feed_token_revoke
from tests.conftest import ingest

pytestmark = pytest.mark.django_db


def sent_body(delivery: HookDelivery) -> str:
    return body_with_id(body=delivery.payload.body, delivery_id=delivery.delivery_id)


def ingest_fanned(batch: list[str]) -> None:
    """Ingest a batch, then fan its outbox rows out, as the next worker run does first."""
    ingest(batch)
    while deliveries_fan_out():
        pass


def one_by_one(details: list[dict]) -> None:
    for body in bodies(details, seed=0):
        ingest_fanned([body])


def test_every_change_is_one_delivery_in_seq_order_with_its_types(hook_settings):
    hook, _ = hook_create(name="all", target="https://hooks.example.com/in")
    details = meeting_stream(seed=3, attendees=4)
    one_by_one(details)
    meeting = Meeting.objects.get(pk=details[0]["meetingId"])
    rows = list(HookDelivery.objects.filter(hook=hook).select_related("payload").order_by("seq"))
    assert [r.seq for r in rows] == list(range(1, meeting.seq + 1))  # every change, once
    seen = set()
    for r in rows:
        body = json.loads(sent_body(r))
        events = r.payload.events
        assert body["id"] == r.delivery_id and body["type"] == "roster.change"
        assert body["events"] == events and events and set(events) <= set(EVENT_TYPES)
        assert body["meeting"]["seq"] == r.seq and body["meeting"]["meeting_id"] == meeting.pk
        assert all(a["seq"] == r.seq for a in body["attendees"])
        assert "part" not in body and r.payload.parts == 1
        seen.update(events)
    assert {"meeting.started", "meeting.ended", "attendee.joined", "attendee.left", "video.started"} <= seen
    assert len({r.delivery_id for r in rows}) == len(rows)


def test_filters_by_type_glob_and_token_scope(hook_settings):
    joined, _ = hook_create(name="joins", target="https://h.example.com/a", events="attendee.joined")
    sales, _ = hook_create(name="sales", target="https://h.example.com/b", meetings="sales-*")
    token, _ = feed_token_create(name="app", meetings="sales-eu-*", can_manage_hooks=True)
    scoped, _ = hook_create(
        name="scoped", target="https://h.example.com/c", meetings="*", created_by_token=token
    )
    revoked_token, _ = feed_token_create(name="gone", can_manage_hooks=True)
    gone, _ = hook_create(name="gone", target="https://h.example.com/d", created_by_token=revoked_token)
    feed_token_revoke(token=revoked_token)
    for meeting_id, external in (("m-1", "sales-eu-1"), ("m-2", "sales-us-1"), ("m-3", "support-1")):
        ingest_fanned(
            [
                as_bare(detail("MeetingStarted", meeting_id, ts=1, externalMeetingId=external)),
                as_bare(detail("AttendeeJoined", meeting_id, "a1", ts=2, externalMeetingId=external)),
            ]
        )
    by_hook = {
        h.name: sorted(HookDelivery.objects.filter(hook=h).values_list("meeting_id", flat=True))
        for h in (joined, sales, scoped, gone)
    }
    assert by_hook == {"joins": ["m-1", "m-2", "m-3"], "sales": ["m-1", "m-2"], "scoped": ["m-1"], "gone": []}
    assert set(HookDelivery.objects.filter(hook=joined).values_list("payload__events", flat=True)[0]) >= {
        "attendee.joined"
    }
    ingest_fanned([as_bare(detail("AttendeeLeft", "m-3", "a1", ts=3))])
    assert HookDelivery.objects.filter(hook=joined).count() == 3  # left is not in its filter


def test_a_change_is_stored_once_whatever_the_hooks_each_delivery_sends_its_own_id(hook_settings):
    hooks = [hook_create(name=f"h{i}", target=f"https://h.example.com/{i}")[0] for i in range(3)]
    ingest(
        [
            as_bare(detail("MeetingStarted", "m-1", ts=1)),
            as_bare(detail("AttendeeJoined", "m-2", "a1", ts=2)),
        ]
    )
    # The ingest transaction wrote one row per change, naming its hooks, and no delivery yet.
    assert HookPayload.objects.count() == 2  # two changes (two meetings), not six
    assert [sorted(p.hooks) for p in HookPayload.objects.all()] == [sorted(h.pk for h in hooks)] * 2
    assert not HookDelivery.objects.exists() and not HookPayload.objects.filter(fanned=True).exists()
    assert deliveries_fan_out() == 2 and deliveries_fan_out() == 0  # each row once
    assert HookDelivery.objects.count() == 6
    for payload in HookPayload.objects.all():
        rows = list(HookDelivery.objects.filter(payload=payload).select_related("payload"))
        assert sorted(r.hook_id for r in rows) == sorted(h.pk for h in hooks)
        sent = [json.loads(sent_body(r)) for r in rows]
        assert [b["id"] for b in sent] == [r.delivery_id for r in rows] and len({b["id"] for b in sent}) == 3
        assert all({**b, "id": ""} == json.loads(payload.body) for b in sent)  # the same body otherwise


def test_a_batch_that_rolls_back_writes_no_delivery(hook_settings):
    hook_create(name="h", target="https://h.example.com/a")

    def boom(changes):
        raise RuntimeError("a later in-transaction hook fails")

    ingest_hooks.in_transaction.append(boom)
    try:
        with pytest.raises(RuntimeError):
            ingest([as_bare(detail("MeetingStarted", "m-r", ts=1))])
    finally:
        ingest_hooks.in_transaction.remove(boom)
    assert not Event.objects.exists() and not HookDelivery.objects.exists()
    assert not HookPayload.objects.exists()
    ingest_fanned([as_bare(detail("MeetingStarted", "m-r", ts=1))])
    assert HookDelivery.objects.count() == 1


def test_no_hook_writes_nothing(hook_settings):
    one_by_one(meeting_stream(seed=1, attendees=2))
    assert not HookDelivery.objects.exists() and not HookPayload.objects.exists()


def test_a_change_above_the_limit_is_split_in_parts_that_keep_the_seq(hook_settings):
    hook_settings.HOOKS_MAX_BODY_BYTES = 256 * 1024
    hook, _ = hook_create(name="big", target="https://h.example.com/a")
    long_id = "u" * 60
    batch = [as_bare(detail("MeetingStarted", "m-big", ts=1))]
    batch += [
        as_bare(detail("AttendeeJoined", "m-big", f"att-{i:05d}", ts=2 + i, externalUserId=f"{long_id}-{i}"))
        for i in range(1200)
    ]
    ingest_fanned(batch)
    rows = list(HookDelivery.objects.filter(hook=hook).select_related("payload").order_by("part"))
    assert len(rows) >= 2 and {r.payload.parts for r in rows} == {len(rows)} and {r.seq for r in rows} == {1}
    attendees = []
    for i, r in enumerate(rows, 1):
        assert len(sent_body(r).encode()) <= 256 * 1024
        body = json.loads(sent_body(r))
        assert (body["part"], body["parts"], body["id"], body["meeting"]["seq"]) == (
            i,
            len(rows),
            r.delivery_id,
            1,
        )
        attendees += [a["attendee_id"] for a in body["attendees"]]
    assert sorted(attendees) == [f"att-{i:05d}" for i in range(1200)]


def test_the_prune_forgets_old_delivered_rows_and_unused_payloads_and_keeps_the_rest(hook_settings):
    from datetime import timedelta

    from django.utils import timezone

    from roster.hooks.outbox import outbox_prune
    from roster.hooks.services import hook_delete

    kept, _ = hook_create(name="kept", target="https://h.example.com/a", meetings="m-?")
    gone, _ = hook_create(name="gone", target="https://h.example.com/b")
    for meeting_id in ("m-0", "m-1", "m-2", "m-3", "other"):  # "other" is gone's alone
        ingest_fanned([as_bare(detail("AttendeeJoined", meeting_id, "a1", ts=1))])
    old = timezone.now() - timedelta(hours=hook_settings.HOOKS_KEEP_HOURS + 1)
    HookPayload.objects.update(created_at=old)
    HookDelivery.objects.update(created_at=old)
    rows = {r.meeting_id: r for r in HookDelivery.objects.filter(hook=kept)}
    HookDelivery.objects.filter(pk=rows["m-0"].pk).update(status="delivered", delivered_at=old)
    HookDelivery.objects.filter(pk=rows["m-1"].pk).update(status="delivered", delivered_at=timezone.now())
    HookDelivery.objects.filter(pk=rows["m-2"].pk).update(status="dead")
    hook_delete(hook=gone)  # its deliveries go with it, not the payloads: kept's share them

    # m-0's delivery; then m-0's payload (nothing uses it now) and other's (its hook is gone).
    assert outbox_prune(chunk=1) == (1, 2)
    left = HookDelivery.objects.filter(hook=kept)
    assert sorted(left.values_list("meeting_id", "status")) == [
        ("m-1", "delivered"),  # delivered within HOOKS_KEEP_HOURS
        ("m-2", "dead"),
        ("m-3", "pending"),
    ]
    payloads = set(HookPayload.objects.values_list("pk", flat=True))
    assert payloads == set(left.values_list("payload_id", flat=True))
    assert outbox_prune() == (0, 0)
    # A row not fanned out yet is kept, however old: its deliveries are still to be written.
    ingest([as_bare(detail("AttendeeJoined", "m-4", "a1", ts=1))])
    HookPayload.objects.update(created_at=old)
    assert outbox_prune() == (0, 0) and HookPayload.objects.filter(fanned=False).count() == 1


def test_the_fan_out_writes_each_meetings_changes_first_to_last_and_leaves_out_deleted_hooks(hook_settings):
    """Whatever a fan-out of ``limit`` rows takes, per meeting it is the earliest changes not fanned
    out yet, so the deliveries written are always a meeting's first ones; a hook deleted after
    the ingest gets none."""
    from roster.hooks.services import hook_delete

    kept, _ = hook_create(name="kept", target="https://h.example.com/a")
    gone, _ = hook_create(name="gone", target="https://h.example.com/b")
    for ts in range(1, 6):  # 5 changes each of m-a and m-b, one batch each, interleaved
        ingest([as_bare(detail("AttendeeJoined", m, f"a{ts}", ts=ts)) for m in ("m-b", "m-a")])
    hook_delete(hook=gone)
    fanned = []
    while count := deliveries_fan_out(limit=3):
        fanned.append(count)
        for meeting_id in ("m-a", "m-b"):
            seqs = sorted(HookDelivery.objects.filter(meeting_id=meeting_id).values_list("seq", flat=True))
            assert seqs == list(range(1, len(seqs) + 1))  # a prefix of the meeting's changes
    assert fanned == [3, 3, 3, 1]
    assert set(HookDelivery.objects.values_list("hook_id", flat=True)) == {kept.pk}
    assert HookDelivery.objects.count() == 10 and not HookPayload.objects.filter(fanned=False).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fan_outs_running_at_once_write_each_delivery_once(hook_settings):
    """Workers fan out at the same moment: one at a time does (PostgreSQL's advisory lock), the
    others go on to deliver; every change gets one delivery per hook, never two."""
    import threading

    from django.db import connection

    hooks = [hook_create(name=f"h{i}", target=f"https://h.example.com/{i}")[0] for i in range(2)]
    for ts in range(1, 21):
        ingest([as_bare(detail("AttendeeJoined", f"m-{i}", f"a{ts}", ts=ts)) for i in range(3)])
    errors: list[BaseException] = []

    def fan_out() -> None:
        try:
            while deliveries_fan_out(limit=2):
                pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=fan_out) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert not HookPayload.objects.filter(fanned=False).exists()
    rows = list(HookDelivery.objects.values_list("hook_id", "meeting_id", "seq"))
    assert len(rows) == len(set(rows)) == 2 * 3 * 20
    assert {r[0] for r in rows} == {h.pk for h in hooks}
