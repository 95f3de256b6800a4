"""Ingest: the one write path from message bodies to the event log and the derived roster.

SQS draining, ``ingest_file`` and admin reprocessing all call :func:`messages_ingest`. One batch is
one database transaction:

1. parse every body (pure, roster.domain.events); rejections become Quarantine rows;
2. lock every touched meeting (and Voice Connector stream) row, in key order;
3. drop duplicates by natural key (within the batch and against the log), counting them;
4. insert the new events with one bulk statement;
5. fold only what moved (roster.domain.fold): a touched attendee is advanced in place when its new
   events sort after everything folded into it, else re-derived from its events; meeting fields
   are re-derived when a meeting-level event arrives; MeetingEnded re-derives the whole meeting;
6. write changed rows with bulk upserts, raise the meeting's ``seq`` once per batch that changed
   it, and hand the changes to the broadcaster after commit.

Concurrent workers on the same meeting serialise on its row lock, so no update is lost and no
event is applied twice.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from roster.domain import fold as machine
from roster.domain.events import (
    KIND_MEETING,
    KIND_PIPELINE,
    KIND_VOICE_CONNECTOR,
    ChimeEvent,
    Rejection,
    event_parse,
)
from roster.domain.fold import STORED_EVENT_FIELDS, StoredEvent
from roster.ingest import store as bulk
from roster.live.broadcast import RosterChange, roster_changes_publish
from roster.models import Attendee, Event, Meeting, Quarantine, VoiceConnectorStream
from roster.ops.metrics import ingest_metrics_record
from roster.read.serializers import MEETING_FIELDS, attendee_as_dict, meeting_as_dict

logger = logging.getLogger(__name__)

DEADLOCK_RETRIES = 3
# The fold reads event types with or without the "chime:" prefix; so must the queries.
MEETING_END_TYPES = ("chime:MeetingEnded", "MeetingEnded")


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One message body and where it came from (for tracing; never for identity)."""

    body: str | bytes
    queue: str = ""
    message_id: str = ""


@dataclass(slots=True)
class IngestResult:
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    quarantined: int = 0
    changed_meetings: dict[str, int] = field(default_factory=dict)
    # (queue, event type or rejection code, outcome) -> messages; outcome is one of OUTCOMES.
    tallies: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def add(self, other: IngestResult) -> None:
        self.received += other.received
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.changed_meetings.update(other.changed_meetings)
        self.tallies.update(other.tallies)

    def summary(self) -> str:
        return (
            f"received={self.received} applied={self.applied} "
            f"duplicates={self.duplicates} quarantined={self.quarantined}"
        )


OUTCOMES = ("applied", "duplicate", "quarantined")


ATTENDEE_STATE_FIELDS = tuple(
    name for name in machine.AttendeeState.__dataclass_fields__ if name != "attendee_id"
)
ATTENDEE_WRITE_FIELDS = (*ATTENDEE_STATE_FIELDS, "seq")


def messages_ingest(*, messages: Sequence[IncomingMessage]) -> IngestResult:
    """Ingest a batch of message bodies in one transaction. Raises only for database trouble."""
    started = time.perf_counter()
    allowed = frozenset(settings.CHIME_ALLOWED_ACCOUNTS)
    max_bytes = settings.MAX_MESSAGE_BYTES
    accepted: list[tuple[IncomingMessage, ChimeEvent]] = []
    rejected: list[tuple[IncomingMessage, Rejection]] = []
    for message in messages:
        outcome = event_parse(message.body, allowed_accounts=allowed, max_bytes=max_bytes)
        if isinstance(outcome, Rejection):
            rejected.append((message, outcome))
        else:
            accepted.append((message, outcome))

    for attempt in range(DEADLOCK_RETRIES):
        try:
            with transaction.atomic():
                received_at = timezone.now()
                quarantine_create(rejected=rejected, received_at=received_at)
                result = _events_apply(accepted=accepted, received_at=received_at)
            break
        except OperationalError as exc:
            # A deadlock or serialisation failure is retried; a database that is down raises again.
            if attempt == DEADLOCK_RETRIES - 1 or "deadlock" not in str(exc).lower():
                raise
            logger.warning("ingest retry after %s", exc)
            time.sleep(0.05 * (attempt + 1))
    result.received = len(messages)
    result.quarantined = len(rejected)
    for message, rejection in rejected:
        result.tallies[(message.queue, rejection.code, "quarantined")] += 1
    # Shared counters for /metrics (roster.ops.metrics), once the batch is durable; never raises.
    transaction.on_commit(
        partial(ingest_metrics_record, tallies=Counter(result.tallies), seconds=time.perf_counter() - started)
    )
    return result


def quarantine_create(
    *, rejected: Sequence[tuple[IncomingMessage, Rejection]], received_at: datetime
) -> list[Quarantine]:
    """Keep every rejected body (or its first 64 KiB) with its reason."""
    rows = []
    for message, rejection in rejected:
        raw = message.body.encode("utf-8", "surrogatepass") if isinstance(message.body, str) else message.body
        rows.append(
            Quarantine(
                body=raw[: Quarantine.KEEP_BYTES],
                body_size=len(raw),
                truncated=len(raw) > Quarantine.KEEP_BYTES,
                reason_code=rejection.code,
                reason=rejection.message,
                queue=message.queue,
                sqs_message_id=message.message_id,
                received_at=received_at,
            )
        )
    if rows:
        logger.info("quarantined %d message(s): %s", len(rows), "; ".join(str(r) for _, r in rejected[:5]))
    return Quarantine.objects.bulk_create(rows)


def _events_apply(
    *, accepted: Sequence[tuple[IncomingMessage, ChimeEvent]], received_at: datetime
) -> IngestResult:
    result = IngestResult()
    first_by_key: dict[str, tuple[IncomingMessage, ChimeEvent]] = {}
    repeats: Counter[str] = Counter()
    for pair in accepted:
        key = pair[1].key
        if key in first_by_key:
            repeats[key] += 1
        else:
            first_by_key[key] = pair
    if not first_by_key:
        return result

    # One INSERT .. ON CONFLICT DO NOTHING: a key already in the log (or being written by a
    # concurrent transaction, which it waits for) comes back as not inserted: a duplicate. It
    # runs before the meeting locks, so batches of one meeting write their log rows in parallel
    # and hold the lock only to fold; keys go in sorted order, so two batches sharing keys never
    # wait on each other's (the second waits for the first to commit, holding no meeting yet).
    inserted = set(
        bulk.rows_insert(
            model=Event,
            rows=[
                _event_row(message, event, received_at)
                for _key, (message, event) in sorted(first_by_key.items())
            ],
            conflict=["key"],
            returning="key",
        )
    )
    events = [event for _, event in first_by_key.values()]
    meetings = _meetings_lock(
        sorted({e.meeting_id for e in events if e.kind in (KIND_MEETING, KIND_PIPELINE)})
    )
    streams = _streams_lock(events)
    repeats.update({key: 1 for key in first_by_key if key not in inserted})
    result.duplicates = sum(repeats.values())
    bulk.counts_add(model=Event, column="duplicate_count", key="key", amounts=repeats)

    new_pairs = [pair for key, pair in first_by_key.items() if key in inserted]
    applied_ids = {id(pair) for pair in new_pairs}  # the first of each new key; the rest repeat
    for pair in accepted:
        outcome = "applied" if id(pair) in applied_ids else "duplicate"
        result.tallies[(pair[0].queue, pair[1].event_type, outcome)] += 1
    new_events = [event for _, event in new_pairs]
    result.applied = len(new_events)

    by_meeting: dict[str, list[ChimeEvent]] = defaultdict(list)
    stream_events: list[ChimeEvent] = []
    for event in new_events:
        if event.kind in (KIND_MEETING, KIND_PIPELINE):
            by_meeting[event.meeting_id].append(event)
        elif event.kind == KIND_VOICE_CONNECTOR:
            stream_events.append(event)

    changes = _meetings_fold(meetings=meetings, by_meeting=by_meeting)
    _streams_fold(streams=streams, events=stream_events)
    result.changed_meetings = {change.meeting["meeting_id"]: change.meeting["seq"] for change in changes}
    if changes:
        transaction.on_commit(partial(roster_changes_publish, changes))
    return result


def _event_row(message: IncomingMessage, event: ChimeEvent, received_at: datetime) -> dict[str, Any]:
    return {
        "key": event.key,
        "kind": event.kind,
        "detail_type": event.detail_type,
        "event_type": event.event_type,
        "meeting_id": event.meeting_id,
        "attendee_id": event.attendee_id,
        "parent_id": event.parent_id,
        "timestamp": event.timestamp,
        "detail": event.detail,
        "envelope_id": event.envelope_id,
        "account": event.account,
        "region": event.region,
        "queue": message.queue,
        "sqs_message_id": message.message_id,
        "received_at": received_at,
        "duplicate_count": 0,
    }


_LOCKED_COLUMNS = ", ".join(
    f'"{field.column}"' for field in Meeting._meta.concrete_fields if field.attname != "peak_ledger"
)


def _meetings_lock(meeting_ids: list[str]) -> dict[str, Meeting]:
    """Create missing meeting rows, then lock them all in id order (no deadlock between workers)."""
    if not meeting_ids:
        return {}
    if not bulk.is_postgresql():
        _meetings_create(meeting_ids)
        locked = (
            Meeting.objects.select_for_update()
            .defer("peak_ledger")
            .filter(meeting_id__in=meeting_ids)
            .order_by("meeting_id")
        )
        return {meeting.meeting_id: meeting for meeting in locked}
    # PostgreSQL, with plain SQL (no ORM compile on the hot path): lock the rows that exist, then
    # create and lock the missing ones (a meeting's first batch), so most batches take one query.
    # The ledger's head is left out (deferred): few batches need it (_peak_fold).
    query = (
        f"SELECT {_LOCKED_COLUMNS} FROM roster_meeting "
        "WHERE meeting_id = ANY(%s) ORDER BY meeting_id FOR UPDATE"
    )
    meetings = {meeting.meeting_id: meeting for meeting in Meeting.objects.raw(query, [meeting_ids])}
    missing = [meeting_id for meeting_id in meeting_ids if meeting_id not in meetings]
    if missing:
        _meetings_create(missing)
        meetings.update({meeting.meeting_id: meeting for meeting in Meeting.objects.raw(query, [missing])})
    return meetings


def _meetings_create(meeting_ids: list[str]) -> None:
    """Insert blank rows for these meetings (a row a concurrent batch just created is kept)."""
    now = timezone.now()
    blank = {field.attname: field.get_default() for field in Meeting._meta.concrete_fields}
    bulk.rows_insert(
        model=Meeting,
        rows=[{**blank, "meeting_id": m, "created_at": now, "updated_at": now} for m in meeting_ids],
        conflict=["meeting_id"],
    )


def _stream_ids(event: ChimeEvent) -> tuple[str, str]:
    return event.detail["voiceConnectorId"], event.detail["transactionId"]


def _streams_lock(events: Iterable[ChimeEvent]) -> dict[tuple[str, str], VoiceConnectorStream]:
    first: dict[tuple[str, str], ChimeEvent] = {}
    for event in events:
        if event.kind == KIND_VOICE_CONNECTOR:
            first.setdefault(_stream_ids(event), event)
    if not first:
        return {}
    VoiceConnectorStream.objects.bulk_create(
        [
            VoiceConnectorStream(voice_connector_id=vc, transaction_id=tx, status="", status_at=-1)
            for vc, tx in sorted(first)
        ],
        ignore_conflicts=True,
    )
    query = Q()
    for vc, tx in first:
        query |= Q(voice_connector_id=vc, transaction_id=tx)
    locked = (
        VoiceConnectorStream.objects.select_for_update()
        .filter(query)
        .order_by("voice_connector_id", "transaction_id")
    )
    return {(row.voice_connector_id, row.transaction_id): row for row in locked}


def _streams_fold(
    *, streams: dict[tuple[str, str], VoiceConnectorStream], events: Sequence[ChimeEvent]
) -> None:
    if not events:
        return
    names = [f.name for f in VoiceConnectorStream._meta.concrete_fields if f.name not in ("id", "updated_at")]
    touched: dict[tuple[str, str], machine.StreamState] = {}
    for event in events:
        ids = _stream_ids(event)
        state = touched.get(ids)
        if state is None:
            row = streams[ids]
            state = touched[ids] = machine.StreamState(**{n: getattr(row, n) for n in names})
        machine.stream_apply(state, event)
    now = timezone.now()
    rows = []
    for ids, state in touched.items():
        row = streams[ids]
        for name in names:
            setattr(row, name, getattr(state, name))
        row.updated_at = now
        rows.append(row)
    written = [n for n in names if n not in ("voice_connector_id", "transaction_id")]
    VoiceConnectorStream.objects.bulk_update(rows, [*written, "updated_at"])


# --- the roster fold around the database ----------------------------------------------------


def _state_from_row(row: Attendee) -> machine.AttendeeState:
    state = machine.AttendeeState(attendee_id=row.attendee_id)
    for name in ATTENDEE_STATE_FIELDS:
        setattr(state, name, getattr(row, name))
    return state


def _state_to_row(state: machine.AttendeeState, row: Attendee) -> None:
    for name in ATTENDEE_STATE_FIELDS:
        setattr(row, name, getattr(state, name))


def _stored_events(query: Q) -> list[StoredEvent]:
    return [StoredEvent(*values) for values in Event.objects.filter(query).values_list(*STORED_EVENT_FIELDS)]


@dataclass(slots=True)
class _MeetingWork:
    """What one batch does to one meeting, gathered so the queries can be shared."""

    meeting: Meeting
    new_events: list[ChimeEvent]
    by_parent: dict[str, list[ChimeEvent]]
    meeting_level: bool
    ended: bool
    rows: dict[str, Attendee] = field(default_factory=dict)
    refold: set[str] = field(default_factory=set)
    tail_before: dict[str, Any] = field(default_factory=dict)
    head_written: bool = False


def _meetings_fold(
    *, meetings: dict[str, Meeting], by_meeting: dict[str, list[ChimeEvent]]
) -> list[RosterChange]:
    work: list[_MeetingWork] = []
    for meeting_id, events in by_meeting.items():
        by_parent: dict[str, list[ChimeEvent]] = defaultdict(list)
        for event in events:
            if machine.changes_attendee(event):
                by_parent[machine.parent_of(event.attendee_id)].append(event)
        meeting = meetings[meeting_id]
        work.append(
            _MeetingWork(
                meeting=meeting,
                new_events=events,
                by_parent=by_parent,
                meeting_level=any(machine.is_meeting_level(e) for e in events),
                ended=any(machine.is_meeting_end(e) for e in events),
                tail_before=meeting.peak_tail,
            )
        )

    _rows_load(work)
    histories = _histories_load(work)
    meeting_histories = _meeting_events_load([w for w in work if w.meeting_level])

    changes: list[RosterChange] = []
    attendee_writes: list[Attendee] = []
    meeting_writes: list[Meeting] = []
    head_writes: list[Meeting] = []
    for item in work:
        change = _meeting_fold(
            item,
            histories=histories.get(item.meeting.meeting_id, {}),
            meeting_events=meeting_histories.get(item.meeting.meeting_id, []),
            attendee_writes=attendee_writes,
        )
        if change is not None:
            changes.append(change)
            meeting_writes.append(item.meeting)
        elif item.meeting.peak_tail != item.tail_before or item.head_written:
            meeting_writes.append(item.meeting)  # only fold bookkeeping moved
        if item.head_written:
            head_writes.append(item.meeting)

    bulk.rows_insert(
        model=Attendee,
        rows=[
            {name: getattr(row, name) for name in ("meeting_id", "attendee_id", *ATTENDEE_WRITE_FIELDS)}
            for row in attendee_writes
        ],
        conflict=["meeting_id", "attendee_id"],
        update=ATTENDEE_WRITE_FIELDS,
    )
    bulk.rows_update(
        model=Meeting,
        rows=[
            {name: getattr(m, name) for name in ("meeting_id", *MEETING_WRITE_FIELDS)} for m in meeting_writes
        ],
        key="meeting_id",
    )
    bulk.rows_update(
        model=Meeting,
        rows=[{"meeting_id": m.meeting_id, "peak_ledger": m.peak_ledger} for m in head_writes],
        key="meeting_id",
    )
    return changes


# Everything a client sees of a meeting but its id, plus the fold's bookkeeping (the ledger's
# head, peak_ledger, is written apart and only when it changed).
MEETING_WRITE_FIELDS = [
    *(name for name in MEETING_FIELDS if name != "meeting_id"),
    "peak_tail",
    "updated_at",
]


def _rows_load(work: list[_MeetingWork]) -> None:
    """Load the touched rows (every row of a meeting that just ended) in one query."""
    ended = [item.meeting.meeting_id for item in work if item.ended]
    others = [item for item in work if item.by_parent and not item.ended]
    if not ended and not others:
        return
    if bulk.is_postgresql():
        # The touched (meeting, attendee) pairs, one probe each of the unique index: the cost
        # follows the batch, not the meetings' sizes (with the two IN lists below, PostgreSQL
        # read every row of the batch's meetings to pick out the touched ones).
        pairs = sorted((item.meeting.meeting_id, parent) for item in others for parent in item.by_parent)
        selects: list[str] = []
        params: list[list[str]] = []
        if ended:
            selects.append("SELECT * FROM roster_attendee WHERE meeting_id = ANY(%s)")
            params.append(ended)
        if pairs:
            selects.append(
                "SELECT roster_attendee.* FROM unnest(%s::varchar[], %s::varchar[]) AS touched(m, a) "
                "JOIN roster_attendee ON meeting_id = touched.m AND attendee_id = touched.a"
            )
            params += [[m for m, _ in pairs], [a for _, a in pairs]]
        rows = Attendee.objects.raw(" UNION ALL ".join(selects), params)
    else:
        # Two plain IN lists rather than one OR per meeting (far cheaper to build); a row of an
        # untouched (meeting, attendee) pair that this brings back is left out below.
        meeting_ids = [item.meeting.meeting_id for item in others]
        parents = sorted({parent for item in others for parent in item.by_parent})
        rows = Attendee.objects.filter(
            Q(meeting_id__in=ended) | Q(meeting_id__in=meeting_ids, attendee_id__in=parents)
        )
    index = {item.meeting.meeting_id: item for item in work}
    for row in rows:
        item = index[row.meeting_id]
        if item.ended or row.attendee_id in item.by_parent:
            item.rows[row.attendee_id] = row
    for item in work:
        if item.ended:
            item.refold = set(item.rows) | set(item.by_parent)
            continue
        for parent, events in item.by_parent.items():
            row = item.rows.get(parent)
            if row is None:
                if item.meeting.status == Meeting.Status.ENDED:
                    item.refold.add(parent)  # stored MeetingEnded events apply to it
            elif not machine.can_advance(_state_from_row(row), events):
                item.refold.add(parent)


def _histories_load(work: list[_MeetingWork]) -> dict[str, dict[str, list[StoredEvent]]]:
    """Every stored event of the rows to re-derive, plus their meetings' MeetingEnded events."""
    histories: dict[str, dict[str, list[StoredEvent]]] = defaultdict(lambda: defaultdict(list))
    refold = {item.meeting.meeting_id: item.refold for item in work if item.refold}
    if not refold:
        return histories
    query = Q(meeting_id__in=list(refold)) & (
        Q(parent_id__in=sorted(set().union(*refold.values())))
        | Q(parent_id="", event_type__in=MEETING_END_TYPES)
    )
    rows = Event.objects.filter(query).values_list("meeting_id", "parent_id", *STORED_EVENT_FIELDS)
    for meeting_id, parent_id, *values in rows:
        if parent_id == "" or parent_id in refold[meeting_id]:  # not another meeting's attendee
            histories[meeting_id][parent_id].append(StoredEvent(*values))
    return histories


def _meeting_events_load(work: list[_MeetingWork]) -> dict[str, list[StoredEvent]]:
    if not work:
        return {}
    query = Q(meeting_id__in=[item.meeting.meeting_id for item in work], parent_id="")
    result: dict[str, list[StoredEvent]] = defaultdict(list)
    rows = Event.objects.filter(query).values_list("meeting_id", *STORED_EVENT_FIELDS)
    for meeting_id, *values in rows:
        result[meeting_id].append(StoredEvent(*values))
    return result


def _counts_move(meeting: Meeting, state: machine.AttendeeState | None, sign: int) -> None:
    """Add (or remove) one row's share of the meeting's dropped / video / sharing counts."""
    if state is None:
        return
    meeting.dropped_count += sign * (state.presence == machine.PRESENCE_DROPPED)
    meeting.video_count += sign * state.video
    meeting.sharing_count += sign * (state.screen_share or state.content_share or state.content_video)


def _peak_fold(
    item: _MeetingWork, *, new_states: dict[str, machine.AttendeeState], moved: Counter[machine.Step]
) -> None:
    """peak_joined and joined_count: merge the steps that moved into the ledger's tail; else into
    the whole ledger (its head read now: the lock query leaves it out); else sweep every row."""
    meeting = item.meeting
    window, tail_limit, tail_keep = machine.PEAK_LEDGER_STEPS, machine.PEAK_TAIL_STEPS, machine.PEAK_TAIL_KEEP
    tail = None if item.ended else machine.PeakTail.from_json(meeting.peak_tail)
    merged = machine.peak_tail_merge(tail, moved, limit=tail_limit) if tail is not None else None
    if merged is None:
        head = None if item.ended else machine.PeakLedger.from_json(meeting.peak_ledger)
        ledger = None
        if head is not None:
            ledger = machine.peak_ledger_merge(machine.peak_ledger_join(head, tail), moved, keep=window)
        if ledger is None:
            ledger = machine.peak_ledger_build(_peak_deltas(meeting, new_states), keep=window)
        head, merged = machine.peak_ledger_split(ledger, keep=tail_keep)
        meeting.peak_ledger = head.as_json()
        item.head_written = True
    meeting.peak_joined, meeting.joined_count = merged.totals()
    meeting.peak_tail = merged.as_json()


def _peak_deltas(meeting: Meeting, new_states: dict[str, machine.AttendeeState]) -> Counter[machine.Step]:
    """Every attendee's join/end steps: the new states, and the stored rows of the others."""
    deltas: Counter[machine.Step] = Counter()
    for state in new_states.values():
        deltas.update(machine.presence_deltas(state.intervals))
    others = Attendee.objects.filter(meeting=meeting).exclude(attendee_id__in=list(new_states))
    for intervals in others.values_list("intervals", flat=True):
        deltas.update(machine.presence_deltas(intervals))
    return deltas


def _meeting_fold(
    item: _MeetingWork,
    *,
    histories: dict[str, list[StoredEvent]],
    meeting_events: list[StoredEvent],
    attendee_writes: list[Attendee],
) -> RosterChange | None:
    meeting = item.meeting
    before = meeting_as_dict(meeting)
    ends = histories.get("", [])

    # Attendees: advance in place, or re-derive from the log.
    intervals_moved: list[tuple[list[Any], list[Any]]] = []
    new_states: dict[str, machine.AttendeeState] = {}
    for parent in set(item.by_parent) | item.refold:
        row = item.rows.get(parent)
        old = _state_from_row(row) if row is not None else None
        if parent in item.refold:
            state = machine.attendee_fold(parent, [*histories.get(parent, []), *ends])
        else:
            state = machine.attendee_fold(parent, item.by_parent[parent], initial=old)
        if state is None:
            continue
        new_states[parent] = state
        intervals_moved.append((old.intervals if old else [], state.intervals))

    # Meeting fields.
    if item.meeting_level:
        folded = machine.meeting_fold(meeting.meeting_id, meeting_events)
        for name in (
            "status",
            "started_at",
            "ended_at",
            "transcription",
            "transcription_message",
            "pipelines",
        ):
            setattr(meeting, name, getattr(folded, name))
        identity = folded
    else:
        identity = machine.MeetingState(meeting_id=meeting.meeting_id)
    for event in sorted(item.new_events, key=machine.fold_order):
        machine.meeting_identify(identity, event.detail)
    meeting.external_meeting_id = meeting.external_meeting_id or identity.external_meeting_id
    meeting.media_region = meeting.media_region or identity.media_region

    _peak_fold(item, new_states=new_states, moved=machine.steps_moved(intervals_moved))

    # Which rows changed in what a client sees?
    changed_rows: list[Attendee] = []
    for parent, state in new_states.items():
        row = item.rows.get(parent)
        old = _state_from_row(row) if row is not None else None
        if old == state:
            continue
        _counts_move(meeting, old, -1)
        _counts_move(meeting, state, +1)
        if row is None:
            row = Attendee(meeting=meeting, attendee_id=parent)
        _state_to_row(state, row)
        attendee_writes.append(row)
        if old is None or old.public() != state.public():
            changed_rows.append(row)

    meeting_changed = meeting_as_dict(meeting) != before
    if not changed_rows and not meeting_changed:
        return None
    meeting.seq += 1
    meeting.updated_at = timezone.now()
    for row in changed_rows:
        row.seq = meeting.seq
    return RosterChange(
        meeting=meeting_as_dict(meeting),
        attendees=[attendee_as_dict(row) for row in changed_rows],
    )
