"""Ingest: the one write path from message bodies to the event log and the derived roster.

SQS, the SNS endpoint, ``ingest_file`` and quarantine reprocessing all come here, so every body
meets the same rules. One batch is one transaction: rejections are kept in quarantine, duplicates
are counted (by natural key, within the batch and against the log), new events are logged, their
meetings locked in id order and folded (roster.domain.plan), and the hooks run in the
transaction and after commit. Every SQL statement is in roster.ingest.store. Concurrent workers
on one meeting serialise on its row lock, so no update is lost and no event applied twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from roster.domain.events import (
    KIND_MEETING,
    KIND_PIPELINE,
    KIND_VOICE_CONNECTOR,
    SOURCE_CHIME,
    SOURCE_RECONCILE,
    ChimeEvent,
    Rejection,
)
from roster.domain.events import event_parse as _event_parse
from roster.domain.plan import (
    MeetingFacts,
    MeetingFolded,
    MeetingRecord,
    attendee_rows_wanted,
    meetings_fold,
)
from roster.domain.repairs import Repairs
from roster.domain.streams import stream_key, streams_fold
from roster.ingest import hooks
from roster.ingest.store import Store, store_for_connection
from roster.models import Quarantine

logger = logging.getLogger(__name__)

DEADLOCK_RETRIES = 3
# Database errors that pass (a restart, a network blip): the caller keeps the messages and retries.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)
OUTCOMES = ("applied", "duplicate", "quarantined")


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One message body and where it came from. An event's identity is its natural key, never
    these; a quarantined message's is :func:`quarantine_key`: by ``queue`` and ``message_id`` when
    ``keyed_by_id`` (a source that redelivers a message under the same id: SQS), else by ``queue``
    and the body (a file line, an SNS delivery)."""

    body: str | bytes
    queue: str = ""
    message_id: str = ""
    keyed_by_id: bool = False
    # ``reconcile`` only from the reconcile path (repairs_ingest): a body cannot claim it.
    source: str = SOURCE_CHIME


Parsed = tuple[IncomingMessage, ChimeEvent | Rejection]


@dataclass(slots=True)
class IngestResult:
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    quarantined: int = 0
    changed_meetings: dict[str, int] = field(default_factory=dict)  # meeting id -> its new seq
    # (queue, event type or rejection code, outcome, source) -> messages; outcome is one of
    # OUTCOMES; source "chime" or "reconcile" (a repair applied counts as applied).
    tallies: Counter[hooks.Tally] = field(default_factory=Counter)

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


def message_parse(*, message: IncomingMessage) -> ChimeEvent | Rejection:
    """One body, with this deployment's rules (allowed accounts, size limit)."""
    ((_, parsed),) = messages_parse(messages=[message])
    return parsed


def messages_parse(*, messages: Iterable[IncomingMessage]) -> Iterator[Parsed]:
    """Each body with its parse (:func:`message_parse`), the rules read from the settings once: a
    settings read per body was a tenth of the parser's time."""
    allowed_accounts = frozenset(settings.CHIME_ALLOWED_ACCOUNTS)
    max_bytes = settings.MAX_MESSAGE_BYTES
    for message in messages:
        yield (
            message,
            _event_parse(
                message.body, allowed_accounts=allowed_accounts, max_bytes=max_bytes, source=message.source
            ),
        )


def messages_ingest(*, messages: Sequence[IncomingMessage]) -> IngestResult:
    """Ingest a batch of message bodies in one transaction. Raises only for database trouble."""
    return parsed_ingest(parsed=list(messages_parse(messages=messages)))


def repairs_ingest(*, repairs: Sequence[Repairs]) -> IngestResult:
    """Ingest reconcile's repairs (roster.domain.reconcile): their synthesized events as messages
    of source ``reconcile`` through the same path as real ones (dedupe in their own key space, log,
    fold, seq, hooks), and each meeting's facts (primary, blanks filled, the missed list) in the
    same transaction. A repair the parser refuses is a bug of the builder: it raises, never goes
    to quarantine (reprocessing would read it as a real event). One ``Repairs`` per meeting."""
    if len({repair.meeting_id for repair in repairs}) != len(repairs):
        raise ValueError("one Repairs per meeting: a meeting's facts are stored once per call")
    messages = [
        IncomingMessage(body=body, queue=SOURCE_RECONCILE, source=SOURCE_RECONCILE)
        for repair in repairs
        for body in repair.bodies
    ]
    return parsed_ingest(
        parsed=list(messages_parse(messages=messages)),
        facts={repair.meeting_id: repair.facts for repair in repairs},
    )


def meeting_expected_create(*, meeting_id: str, facts: MeetingFacts, control_region: str) -> None:
    """The row of a meeting the Chime API confirmed before its first event, so a feed client can
    follow it ahead (DESIGN.md, the feed): status ``unknown``, ``seq`` 0, what GetMeeting told
    (``facts``) and the region that answered. Nothing is announced: it holds no roster yet, and
    its first batch folds onto it like onto any row. A row that exists is kept as it is."""
    meeting = MeetingRecord.new(meeting_id)
    meeting.primary_meeting_id = facts.primary_meeting_id
    meeting.external_meeting_id = facts.external_meeting_id
    meeting.media_region = facts.media_region
    meeting.control_region = control_region
    store_for_connection().meetings_create(meetings=[meeting])


def parsed_ingest(
    *, parsed: Sequence[Parsed], facts: Mapping[str, MeetingFacts] | None = None
) -> IngestResult:
    """Ingest bodies already parsed by :func:`message_parse` (quarantine reprocessing parses first),
    and reconcile's ``facts`` by meeting id (:func:`repairs_ingest`)."""
    started = time.perf_counter()
    accepted = [(message, event) for message, event in parsed if isinstance(event, ChimeEvent)]
    rejected = [(message, event) for message, event in parsed if isinstance(event, Rejection)]
    for message, rejection in rejected:
        if message.source != SOURCE_CHIME:
            raise ValueError(f"a {message.source} message was refused: {rejection}")
    for attempt in range(DEADLOCK_RETRIES):
        try:
            with transaction.atomic():
                store = store_for_connection()
                received_at = timezone.now()
                _quarantine(store, rejected=rejected, received_at=received_at)
                result, changes = _events_apply(
                    store, accepted=accepted, received_at=received_at, facts=facts or {}
                )
                for hook in hooks.in_transaction:
                    hook(changes)
            break
        except OperationalError as exc:
            # A deadlock or serialisation failure is retried; a database that is down raises again.
            if attempt == DEADLOCK_RETRIES - 1 or "deadlock" not in str(exc).lower():
                raise
            logger.warning("ingest retry after %s", exc)
            time.sleep(0.05 * (attempt + 1))
    result.received = len(parsed)
    result.quarantined = len(rejected)
    for message, rejection in rejected:
        result.tallies[(message.queue, rejection.code, "quarantined", message.source)] += 1
    _after_commit(
        hooks.Committed(
            changes=changes, tallies=Counter(result.tallies), seconds=time.perf_counter() - started
        )
    )
    return result


def messages_ingest_isolating(*, messages: Sequence[IncomingMessage]) -> IngestResult:
    """Ingest a batch; if it fails for a reason that is not transient, split it to find the message
    that cannot be stored and quarantine it with the error, so one poison message never blocks a
    queue. Transient database errors propagate: the caller deletes nothing."""
    if any(message.source != SOURCE_CHIME for message in messages):
        raise ValueError("repairs go through repairs_ingest: they are never quarantined")
    try:
        return messages_ingest(messages=messages)
    except TRANSIENT_DB_ERRORS:
        raise
    except Exception as exc:
        if len(messages) == 1:
            (message,) = messages
            logger.exception("message %s could not be ingested; quarantined", message.message_id)
            reason = Rejection("ingest_failed", f"{type(exc).__name__}: {exc}"[:2000])
            with transaction.atomic():
                _quarantine(store_for_connection(), rejected=[(message, reason)], received_at=timezone.now())
            result = IngestResult(received=1, quarantined=1)
            result.tallies[(message.queue, reason.code, "quarantined", message.source)] += 1
            _after_commit(hooks.Committed(tallies=Counter(result.tallies)))  # counted, not timed
            return result
    middle = len(messages) // 2
    result = messages_ingest_isolating(messages=messages[:middle])
    result.add(messages_ingest_isolating(messages=messages[middle:]))
    return result


def _after_commit(committed: hooks.Committed) -> None:
    for hook in hooks.after_commit:
        transaction.on_commit(partial(hook, committed), robust=True)


def quarantine_key(*, message: IncomingMessage, raw: bytes) -> str:
    """What names a quarantined message across its deliveries (``raw``: its whole body, as bytes).

    ``id:`` + SHA-256 of (queue, message id) when the message is ``keyed_by_id`` (SQS keeps the
    MessageId through every redelivery, and two messages sent with one body are two messages);
    else ``body:`` + SHA-256 of (queue, whole body): a file line has no id that survives a second
    run, and an SNS retry is the same signed body. Migration 0011 keys stored rows the same way.
    """
    digest = hashlib.sha256(message.queue.encode("utf-8", "surrogatepass") + b"\0")
    if message.keyed_by_id and message.message_id:
        digest.update(message.message_id.encode("utf-8", "surrogatepass"))
        return "id:" + digest.hexdigest()
    digest.update(raw)
    return "body:" + digest.hexdigest()


def _quarantine(
    store: Store, *, rejected: Sequence[tuple[IncomingMessage, Rejection]], received_at: datetime
) -> None:
    """Keep every rejected body (or its first 64 KiB) with its reason, one row per message: a
    message quarantined before (redelivered) counts one more delivery on its row."""
    rows = []
    for message, rejection in rejected:
        raw = message.body.encode("utf-8", "surrogatepass") if isinstance(message.body, str) else message.body
        rows.append(
            {
                "source_key": quarantine_key(message=message, raw=raw),
                "body": raw[: Quarantine.KEEP_BYTES],
                "body_size": len(raw),
                "truncated": len(raw) > Quarantine.KEEP_BYTES,
                "reason_code": rejection.code,
                "reason": rejection.message,
                "queue": message.queue,
                "sqs_message_id": message.message_id,
                "received_at": received_at,
                "last_received_at": received_at,
                "deliveries": 1,
            }
        )
    if rows:
        logger.info("quarantined %d message(s): %s", len(rows), "; ".join(str(r) for _, r in rejected[:5]))
        store.quarantine_upsert(rows=rows)


def _events_apply(
    store: Store,
    *,
    accepted: Sequence[tuple[IncomingMessage, ChimeEvent]],
    received_at: datetime,
    facts: Mapping[str, MeetingFacts],
) -> tuple[IngestResult, list[MeetingFolded]]:
    result = IngestResult()
    first_by_key: dict[str, tuple[IncomingMessage, ChimeEvent]] = {}
    repeats: Counter[str] = Counter()
    for pair in accepted:
        key = pair[1].key
        if key in first_by_key:
            repeats[key] += 1
        else:
            first_by_key[key] = pair
    if not first_by_key and not facts:
        return result, []

    # The log insert runs before the meeting locks, so batches of one meeting write their log rows
    # in parallel and hold the lock only to fold; keys go in sorted order, so two batches sharing
    # keys never wait on each other's (the second waits for the first to commit, holding no meeting).
    # The attendee rows the fold may ask for are read with the locks (Store.batch_start).
    events = [event for _, event in first_by_key.values()]
    meeting_events = [e for e in events if e.kind in (KIND_MEETING, KIND_PIPELINE)]
    every, touched = attendee_rows_wanted(events=meeting_events)
    start = store.batch_start(
        rows=[
            _event_row(message, event, received_at) for _key, (message, event) in sorted(first_by_key.items())
        ],
        meeting_ids=sorted({e.meeting_id for e in meeting_events} | set(facts)),
        every=every,
        touched=touched,
    )
    inserted = start.inserted
    streams = store.streams_lock(keys={stream_key(e) for e in events if e.kind == KIND_VOICE_CONNECTOR})
    repeats.update({key: 1 for key in first_by_key if key not in inserted})
    result.duplicates = sum(repeats.values())
    if repeats:
        store.duplicates_count(amounts=repeats)

    new_pairs = [pair for key, pair in first_by_key.items() if key in inserted]
    applied_ids = {id(pair) for pair in new_pairs}  # the first of each new key; the rest repeat
    for pair in accepted:
        outcome = "applied" if id(pair) in applied_ids else "duplicate"
        result.tallies[(pair[0].queue, pair[1].event_type, outcome, pair[1].source)] += 1
    new_events = [event for _, event in new_pairs]
    result.applied = len(new_events)

    folded = meetings_fold(
        meetings=start.meetings,
        events=[e for e in new_events if e.kind in (KIND_MEETING, KIND_PIPELINE)],
        reads=start.reads,
        facts=facts,
    )
    store.rows_write(
        attendees=[(item.meeting.meeting_id, row) for item in folded for row in item.written],
        # A meeting whose attendee rows move is written too (its row's version: Store.rows_write).
        meetings=[item.meeting for item in folded if item.meeting_written or item.written],
    )
    stream_events = [e for e in new_events if e.kind == KIND_VOICE_CONNECTOR]
    if stream_events:
        store.streams_write(streams=streams_fold(streams=streams, events=stream_events))
    changes = [item for item in folded if item.changed]
    result.changed_meetings = {item.meeting.meeting_id: item.meeting.seq for item in changes}
    return result, changes


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
        "source": event.source,
    }
