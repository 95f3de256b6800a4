"""Reconcile's caller half (roster.sources.reconcile) with real parts: the local Chime SDK Meetings
endpoint over HTTP through unchanged boto3, Redis (the budget's pacer, locks, the channel layer),
the database, the ingest path; the command; a real Celery beat and worker."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from celery.beat import Service
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.management import call_command

from config.celery import app
from roster.dev.chime import REGION, as_bare, as_envelope, detail
from roster.dev.chime_api import ChimeApi, ChimeApiServer
from roster.live.broadcast import meeting_group
from roster.models import Attendee, Event, Meeting
from roster.sources import reconcile
from roster.sources.reconcile import (
    chime_meeting_lookup,
    meeting_reconcile,
    meetings_reconcile,
    redis_client,
    redis_key,
)
from tests.conftest import embedded_worker, ingest

T0 = 1_790_000_000_000


class RecordingApi(ChimeApi):
    """The local endpoint, noting when each call came and which meeting GetMeeting asked for."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.times: list[float] = []
        self.asked: list[str] = []

    def admit(self, operation: str) -> None:
        self.times.append(time.monotonic())
        super().admit(operation)

    def get_meeting(self, region: str, meeting_id: str) -> dict:
        self.asked.append(meeting_id)
        return super().get_meeting(region, meeting_id)


@pytest.fixture
def chime(monkeypatch, settings) -> Iterator[RecordingApi]:
    """The local endpoint, reached as boto3 reaches any: AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS."""
    api = RecordingApi()
    with ChimeApiServer(api) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS", server.url)
        settings.RECONCILE_CALLS_PER_SECOND = 200.0  # fast, unless a test sets its own
        settings.CHIME_CONTROL_REGION = ""
        yield api


def meeting_live(
    api: ChimeApi, *, at: int = T0, attendees: int = 2, bare: bool = False, started: bool = True
) -> tuple[str, list[str]]:
    """A meeting the roster holds (MeetingStarted, attendees joined; EventBridge envelopes in
    REGION unless ``bare``) and Chime has, with the same attendees. Its latest event is at ``at``."""
    meeting_id, ids = str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(attendees)]
    details = [detail("MeetingStarted", meeting_id, ts=at - 10_000)] if started else []
    for n, attendee_id in enumerate(ids):
        user = f"user-{n}@example.com"
        details.append(detail("AttendeeJoined", meeting_id, attendee_id, ts=at - n, externalUserId=user))
    ingest([(as_bare if bare else as_envelope)(d) for d in details])
    api.meeting_put(region=REGION, meeting_id=meeting_id)
    for n, attendee_id in enumerate(ids):
        api.attendee_put(meeting_id, external_user_id=f"user-{n}@example.com", attendee_id=attendee_id)
    return meeting_id, ids


def row(meeting_id: str, attendee_id: str) -> Attendee:
    return Attendee.objects.get(meeting_id=meeting_id, attendee_id=attendee_id)


@pytest.mark.django_db(transaction=True)
def test_budget_is_a_paced_rate_stalest_first_unknown_once(chime, settings):
    settings.RECONCILE_CALLS_PER_SECOND = 20.0
    fresh, _ = meeting_live(chime, at=T0 + 3_000)
    stale, _ = meeting_live(chime, at=T0)
    middle, _ = meeting_live(chime, at=T0 + 1_000)
    unknown, _ = meeting_live(chime, at=T0 + 2_000, started=False)
    assert Meeting.objects.get(meeting_id=unknown).status == "unknown"
    elsewhere = chime.meeting_put(region=REGION)  # not in the roster: what point 4 looks up
    lookups: list = []
    looker = threading.Thread(  # another caller of the same budget, at the same time
        target=lambda: lookups.extend(
            chime_meeting_lookup(meeting_id=elsewhere, region=REGION) for _ in range(3)
        )
    )
    looker.start()
    summary = meetings_reconcile()
    looker.join()

    assert [m for m in chime.asked if m != elsewhere] == [stale, middle, unknown, fresh]
    assert summary.checked == 4 and summary.failed == 0
    assert lookups and all(found is not None for found in lookups)
    times = chime.times
    assert len(times) == 4 * 2 + 3
    # Paced at 20/s, the lookups included: 0.05 s apart, whatever the arrival jitter; never a burst.
    assert times[-1] - times[0] >= 0.9 * 0.05 * (len(times) - 1)
    assert min(b - a for a, b in zip(times, times[4:], strict=False)) >= 4 * 0.05 - 0.05

    chime.asked.clear()
    assert meetings_reconcile().checked == 3
    assert unknown not in chime.asked  # an unknown meeting is checked at most once


@pytest.mark.django_db(transaction=True)
def test_one_check_per_meeting_and_one_cycle_at_a_time(chime):
    held, _ = meeting_live(chime)
    other, _ = meeting_live(chime)
    lock = redis_client().lock(redis_key("meeting", held), timeout=30)
    assert lock.acquire(blocking=False)  # as another process checking it would
    try:
        summary = meetings_reconcile()
    finally:
        lock.release()
    assert (summary.checked, summary.busy) == (1, 1) and chime.asked == [other]

    assert meetings_reconcile(stop=lambda: True).checked == 0  # a worker's shutdown, Ctrl-C
    cycle = redis_client().lock(redis_key("cycle"), timeout=30)
    assert cycle.acquire(blocking=False)
    try:
        assert meetings_reconcile().cycle_running_elsewhere
    finally:
        cycle.release()
    assert chime.asked == [other]


def test_lookup_needs_a_region_and_answers_none_for_not_found(chime, settings):
    with pytest.raises(ValueError):
        chime_meeting_lookup(meeting_id=str(uuid.uuid4()))
    settings.CHIME_CONTROL_REGION = REGION
    assert chime_meeting_lookup(meeting_id=str(uuid.uuid4())) is None  # NotFound


@pytest.mark.django_db(transaction=True)
def test_bare_meetings_are_asked_in_chime_control_region_and_never_ended_on_a_guess(chime, settings):
    bare, _ = meeting_live(chime, bare=True)
    assert Meeting.objects.get(meeting_id=bare).control_region == ""
    assert meetings_reconcile().skipped == 0 and chime.asked == []  # not even due
    settings.CHIME_CONTROL_REGION = REGION
    chime.meeting_end(bare)
    summary = meetings_reconcile()
    assert (summary.checked, summary.ended) == (1, 0)
    assert Meeting.objects.get(meeting_id=bare).status == "active"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_not_found_ends_the_meeting_broadcast_and_a_real_end_supersedes_it(chime):
    meeting_id, (ann, bob) = await database_sync_to_async(meeting_live)(chime, at=T0)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(meeting_group(meeting_id), channel)
    chime.meeting_end(meeting_id)  # its MeetingEnded was lost on the way

    summary = await database_sync_to_async(meetings_reconcile)()
    assert (summary.checked, summary.ended) == (1, 1)
    frame = json.loads((await asyncio.wait_for(layer.receive(channel), 5))["text"])
    while frame["meeting"]["status"] != "ended":  # the joins' own deltas may still be on the way
        frame = json.loads((await asyncio.wait_for(layer.receive(channel), 5))["text"])
    assert frame["meeting"]["ended_at"] == T0
    assert {a["attendee_id"]: a["presence"] for a in frame["attendees"]} == {ann: "left", bob: "left"}
    await layer.group_discard(meeting_group(meeting_id), channel)

    def stored() -> tuple:
        meeting = Meeting.objects.get(meeting_id=meeting_id)
        sources = sorted(Event.objects.filter(meeting_id=meeting_id).values_list("source", flat=True))
        return meeting.status, meeting.ended_at, row(meeting_id, ann).joined_ms, sources

    status, ended_at, joined_ms, sources = await database_sync_to_async(stored)()
    assert (status, ended_at, sources.count("reconcile")) == ("ended", T0, 1)
    assert joined_ms == 0  # ann joined at T0 - 0: the repair closes her interval there

    real_end = T0 + 60_000  # Chime's own MeetingEnded, late
    await database_sync_to_async(ingest)([as_envelope(detail("MeetingEnded", meeting_id, ts=real_end))])
    status, ended_at, joined_ms, _ = await database_sync_to_async(stored)()
    assert (status, ended_at, joined_ms) == ("ended", real_end, 60_000)  # the real time closes it


@pytest.mark.django_db(transaction=True)
def test_two_misses_before_removal_and_listed_attendees_added_with_capabilities(chime):
    meeting_id, (ann, bob) = meeting_live(chime)
    chime.attendee_remove(meeting_id, bob)  # its AttendeeDeleted was lost
    listener = {"Audio": "Receive", "Video": "None", "Content": "None"}
    cara = chime.attendee_put(meeting_id, external_user_id="cara@example.com", capabilities=listener)
    crowd = [chime.attendee_put(meeting_id, external_user_id=f"viewer-{n}") for n in range(104)]

    first = meetings_reconcile()
    assert (first.checked, first.added, first.removed) == (1, 105, 0)  # 107 listed: two pages
    assert chime.calls["ListAttendees"] == 2
    assert row(meeting_id, bob).presence == "joined"  # one miss is not enough
    added = row(meeting_id, cara)
    assert (added.external_user_id, added.repaired) == ("cara@example.com", True)
    assert added.capabilities == {"audio": "Receive", "video": "None", "content": "None"}
    assert Attendee.objects.filter(meeting_id=meeting_id, attendee_id__in=crowd).count() == 104
    assert Meeting.objects.get(meeting_id=meeting_id).reconcile_missed == [bob]

    second = meetings_reconcile()
    assert (second.checked, second.added, second.removed) == (1, 0, 1)
    assert row(meeting_id, bob).presence == "removed" and row(meeting_id, bob).repaired
    assert row(meeting_id, ann).presence == "joined"  # listed: a lost AttendeeLeft is not healed here


@pytest.mark.django_db(transaction=True)
def test_throttling_is_survived_and_a_failed_call_is_not_a_check(chime):
    meetings = [meeting_live(chime)[0] for _ in range(2)]
    chime.throttle(4, burst=1)  # someone else uses the account's quota: 429s
    summary = meetings_reconcile()
    assert summary.checked == 2 and summary.failed == 0
    assert sum(chime.throttled.values()) >= 1  # boto3's adaptive mode retried them
    chime.throttle(None)

    gone = meetings[0]
    checked_at = Meeting.objects.get(meeting_id=gone).reconciled_at
    assert checked_at is not None
    chime.meeting_end(gone)
    chime.fault("ForbiddenException", operation="GetMeeting")  # not retried: the check fails
    failed = meeting_reconcile(meeting_id=gone)
    assert (failed.checked, failed.failed, failed.ended) == (0, 1, 0)
    assert Meeting.objects.get(meeting_id=gone).status == "active"  # only NotFound ends a meeting
    assert Meeting.objects.get(meeting_id=gone).reconciled_at == checked_at  # and it was no check

    kept = meetings[1]
    chime.attendee_remove(kept, row_ids := Attendee.objects.filter(meeting_id=kept).first().attendee_id)
    chime.fault("UnauthorizedException", operation="ListAttendees")
    assert meeting_reconcile(meeting_id=kept).checked == 0
    assert Meeting.objects.get(meeting_id=kept).reconcile_missed == []  # no miss counted
    assert meeting_reconcile(meeting_id=kept).checked == 1
    assert Meeting.objects.get(meeting_id=kept).reconcile_missed == [row_ids]


@pytest.mark.django_db(transaction=True)
def test_command_prints_the_summary_line(chime):
    primary, _ = meeting_live(chime)
    replica, _ = meeting_live(chime)
    ended, _ = meeting_live(chime)
    chime.meeting_end(replica)
    chime.meeting_put(region=REGION, meeting_id=replica, primary_meeting_id=primary)
    chime.meeting_end(ended)
    out = io.StringIO()
    call_command("reconcile", "--once", stdout=out)
    assert out.getvalue().splitlines()[-1] == "checked=3 ended=1 removed=0 added=0 families=1"
    assert Meeting.objects.get(meeting_id=replica).primary_meeting_id == primary
    out = io.StringIO()
    call_command("reconcile", "--once", "--meeting", ended, stdout=out)  # ended: asked anyway
    assert out.getvalue().splitlines()[-1] == "checked=1 ended=0 removed=0 added=0 families=0"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_celery_beat_dispatches_the_named_task_and_a_worker_runs_it(chime, settings, tmp_path):
    settings.SQS_DRAIN_IN_WORKER = False
    meeting_id, _ = meeting_live(chime)
    chime.meeting_end(meeting_id)
    app.loader.import_default_modules()
    assert "roster.tasks.meetings_reconcile" in app.tasks
    assert settings.CELERY_BEAT_SCHEDULE["meetings-reconcile"]["task"] == "roster.tasks.meetings_reconcile"
    previous = app.conf.beat_schedule
    app.conf.beat_schedule = {
        "meetings-reconcile": {**settings.CELERY_BEAT_SCHEDULE["meetings-reconcile"], "schedule": 1.0}
    }
    beat = Service(app, max_interval=0.5, schedule_filename=str(tmp_path / "beat-schedule"))
    thread = threading.Thread(target=beat.start, daemon=True)
    try:
        with embedded_worker(shutdown_timeout=30):
            thread.start()
            deadline = time.monotonic() + 30
            while Meeting.objects.get(meeting_id=meeting_id).status != "ended":
                assert time.monotonic() < deadline, "beat and worker did not reconcile"
                time.sleep(0.2)
    finally:
        beat.stop()
        thread.join(10)
        app.conf.beat_schedule = previous
    assert Event.objects.filter(meeting_id=meeting_id, source="reconcile").count() == 1


def test_summary_line_is_the_contract():
    summary = reconcile.ReconcileSummary(checked=2, ended=1, removed=3, added=4, families=1, failed=5)
    assert summary.line() == "checked=2 ended=1 removed=3 added=4 families=1"


@pytest.mark.django_db(transaction=True)
def test_a_cycle_spreads_its_checks_over_the_period_in_the_background(chime, settings):
    settings.RECONCILE_CALLS_PER_SECOND = 200.0
    meetings = [meeting_live(chime, at=T0 + i)[0] for i in range(3)]
    chime.times.clear()

    began = time.monotonic()
    assert reconcile.reconcile_cycle_start(stop=lambda: False, spread_seconds=1.5)
    assert not reconcile.reconcile_cycle_start(stop=lambda: False, spread_seconds=1.5)  # one per process
    reconcile.reconcile_cycle_join(timeout=10)

    assert chime.asked == meetings  # stalest first, as ever
    # Each check is GetMeeting, then ListAttendees; the i-th starts 1.5 s / 3 * i into the cycle.
    offsets = [at - began for at in chime.times[::2]]
    assert len(offsets) == 3 and offsets[1] >= 0.5 and 1.0 <= offsets[2] < 1.5, offsets
    assert Meeting.objects.filter(meeting_id__in=meetings, reconciled_at__isnull=False).count() == 3

    chime.asked.clear()
    stopping = threading.Event()
    threading.Timer(0.2, stopping.set).start()
    summary = meetings_reconcile(stop=stopping.is_set, spread_seconds=30.0)
    assert (summary.checked, chime.asked) == (1, meetings[:1])  # stopped while waiting for the second
    assert summary.seconds < 2
