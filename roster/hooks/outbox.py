"""The transactional outbox: ingest's in-transaction hook point writes, for each meeting change
(each part, above HOOKS_MAX_BODY_BYTES) that matches a hook, one row naming the hooks it matched
(a payload, its body stored once), in the batch's own transaction, so a change is delivered if and
only if it was committed. Workers fan it out (:func:`deliveries_fan_out`) into one delivery per
hook, which they send, retry and record (:mod:`roster.hooks.delivery`).

Why two steps: one row and one index entry a change is what the ingest pays, where a delivery row
with its five index entries per hook per change cost it a quarter more time on one interleaved
queue with 3 hooks (bench.hooks_bench, overhead; docs/benchmarks.md).

The hot path reads no hook: each process keeps its list for HOOKS_CACHE_SECONDS (and drops it
when this process changes a hook). With no hook a batch costs one list check; with hooks, each
change is serialised once (the meeting's and attendees' dicts are the broadcaster's too) and the
batch's rows go in one bulk insert. A hook deleted meanwhile is left out at fan-out.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from roster.domain.hook_events import change_events
from roster.domain.plan import MEETING_PUBLIC_FIELDS, MeetingFolded
from roster.models import Hook, HookDelivery, HookPayload
from roster.read.serializers import ChangeShown, change_shown, compact_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HookFilter:
    """What a process remembers of a hook: its id and filters (the token's scope included)."""

    hook_id: int
    events: frozenset[str]  # empty: every type
    globs: tuple[str, ...]  # every one must match (the hook's, and its token's)

    def matches(self, *, events: Sequence[str], ids: Sequence[str]) -> bool:
        if self.events and self.events.isdisjoint(events):
            return False
        return all(any(fnmatchcase(value, glob) for value in ids if value) for glob in self.globs)


class _Cache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._filters: tuple[HookFilter, ...] = ()
        self._loaded = float("-inf")

    def get(self) -> tuple[HookFilter, ...]:
        if time.monotonic() - self._loaded < settings.HOOKS_CACHE_SECONDS:
            return self._filters
        with self._lock:
            rows = Hook.objects.filter(created_by_token__revoked_at__isnull=True) | Hook.objects.filter(
                created_by_token__isnull=True
            )
            filters = []
            for hook_id, events, glob, token_glob in rows.values_list(
                "pk", "events", "meetings", "created_by_token__meetings"
            ):
                globs = tuple(g for g in (glob or "*", token_glob) if g and g != "*")
                filters.append(HookFilter(hook_id, frozenset(events or ()), globs))
            self._filters, self._loaded = tuple(filters), time.monotonic()
        return self._filters

    def clear(self) -> None:
        self._loaded = float("-inf")


hooks_cache = _Cache()


def hooks_changed() -> None:
    """This process changed a hook: its next batch reads the list again (others within
    HOOKS_CACHE_SECONDS)."""
    hooks_cache.clear()


def deliveries_register(changes: Sequence[MeetingFolded]) -> None:
    """Ingest's in-transaction hook: the batch's outbox rows (each matching change's body once,
    with the ids of the hooks it matched) in one insert, and a kick of the delivery workers once
    the batch commits."""
    if not changes:
        return
    filters = hooks_cache.get()
    if not filters:
        return
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    new_id = _random_ids()
    payloads: list[tuple[Any, ...]] = []
    for change in changes:
        meeting = change.meeting
        ids = (meeting.meeting_id, meeting.external_meeting_id, meeting.primary_meeting_id or "")
        shown = change_shown(change)
        events = change_events(
            meeting_before=dict(zip(MEETING_PUBLIC_FIELDS, change.before, strict=False)),
            meeting_after=shown.meeting,
            attendees=[(change.rows_before.get(row.attendee_id), row) for row in change.changed_rows],
        )
        matching = [f.hook_id for f in filters if f.matches(events=events, ids=ids)]
        if not matching:
            continue
        events_text, hooks_text = compact_json(events), compact_json(matching)
        parts = body_parts(events_text=events_text, shown=shown)
        for index, body in enumerate(parts, start=1):
            row = (meeting.meeting_id, meeting.seq, index, len(parts), hooks_text, events_text, body, now)
            payloads.append((next(new_id), *row))
    if payloads:
        _rows_insert(HookPayload, _PAYLOAD_COLUMNS, payloads)
        transaction.on_commit(_kick, robust=True)


FAN_OUT_BATCH = 500  # outbox rows a worker fans out in one transaction


def deliveries_fan_out(*, limit: int = FAN_OUT_BATCH) -> int:
    """Write the deliveries of up to ``limit`` outbox rows (one per hook each matched that still
    exists), in one transaction with marking them fanned; how many rows were fanned out (0 when
    another worker is doing it: it carries on).

    Fan-outs run one at a time (an advisory lock on PostgreSQL; SQLite's transactions are
    IMMEDIATE, one writer at a time) and take rows in (meeting, seq, part) order. A meeting's
    changes commit in seq order (the ingest holds the meeting's row until commit), so whatever a
    fan-out sees of a meeting is its earliest rows not fanned out yet: per hook and meeting, the
    deliveries written are always the first changes, and the claim's "first pending" rule keeps
    their order from there."""
    with transaction.atomic():
        if not _fan_out_lock():
            return 0
        rows = list(
            HookPayload.objects.filter(fanned=False)
            .order_by("meeting_id", "seq", "part")
            .values_list("id", "hooks", "meeting_id", "seq", "part", "created_at")[:limit]
        )
        if not rows:
            return 0
        live = _hooks_held({hook for row in rows for hook in row[1]})
        adapt = connection.ops.adapt_datetimefield_value
        now = adapt(timezone.now())
        new_id = _random_ids()
        deliveries = [
            (hook, payload_id.hex, meeting_id, seq, part, next(new_id), now, adapt(created_at))
            for payload_id, hooks, meeting_id, seq, part, created_at in rows
            for hook in hooks
            if hook in live
        ]
        if deliveries:
            _rows_insert(HookDelivery, _DELIVERY_COLUMNS, deliveries)
        HookPayload.objects.filter(pk__in=[row[0] for row in rows]).update(fanned=True)
    return len(rows)


_FAN_OUT_LOCK = 0x686F6F6B  # "hook": the advisory lock key (one per database)


def _fan_out_lock() -> bool:
    if connection.vendor != "postgresql":
        return True  # SQLite: the IMMEDIATE transaction is the lock
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_FAN_OUT_LOCK])
        return bool(cursor.fetchone()[0])


def _hooks_held(hook_ids: set[int]) -> set[int]:
    """Which of these hooks exist, held (on PostgreSQL, ``FOR KEY SHARE``) so that none is deleted
    before the deliveries written for it commit."""
    if not hook_ids:
        return set()
    query = Hook.objects.filter(pk__in=hook_ids).values_list("pk", flat=True)
    if connection.vendor != "postgresql":
        return set(query)
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} FOR KEY SHARE", params)
        return {row[0] for row in cursor.fetchall()}


def _random_ids() -> Iterator[str]:
    """128-bit ids as 32 hex digits (what SQLite stores for a UUID, and PostgreSQL reads), time
    first, as UUIDv7 lays them out: the milliseconds (48 bits), then 80 random bits. Rising keys
    land in the right edge of their indexes, where random ones (uuid4) touched a page anywhere in
    them for every row, each page a full image in the WAL after a checkpoint. One read of the
    system's random source per 64 ids."""
    while True:
        stamp = f"{time.time_ns() // 1_000_000:012x}"
        block = os.urandom(10 * 64).hex()
        for start in range(0, len(block), 20):
            yield stamp + block[start : start + 20]


# The rows as the hot path writes them; the other columns take their database defaults.
_PAYLOAD_COLUMNS = ("id", "meeting_id", "seq", "part", "parts", "hooks", "events", "body", "created_at")
_DELIVERY_COLUMNS = (
    "hook",
    "payload",
    "meeting_id",
    "seq",
    "part",
    "delivery_id",
    "next_attempt_at",
    "created_at",
)
_CHUNK = 64  # rows per statement: well inside every backend's limit on parameters


def _rows_insert(model: type[models.Model], columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows in plain SQL: COPY on PostgreSQL, multi-row INSERTs (64 rows each) elsewhere. Django's
    bulk_create cost about three times as much per batch here (psycopg escaping its UNNEST arrays
    in Python), and this runs in every ingest transaction that has a matching hook."""
    meta = model._meta
    quote = connection.ops.quote_name
    names = ", ".join(quote(meta.get_field(c).column) for c in columns)
    if connection.vendor == "postgresql":
        # COPY streams the rows and escapes them in C, where INSERT's SQL text (the bodies quoted
        # into it) must be parsed (bench.hooks_bench, overhead).
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({names}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            cursor.execute(
                f"INSERT INTO {quote(meta.db_table)} ({names}) VALUES {', '.join([one] * len(chunk))}",  # noqa: S608 - names from the model
                [value for row in chunk for value in row],
            )


_BODY_HEAD = '{"id":""'  # how every stored body starts: its delivery puts its id in
_BODY_HEAD_SPACED = '{"id": ""'  # how bodies stored before stop 23 start (json.dumps' own spacing)


def body_with_id(*, body: str, delivery_id: str) -> str:
    """The body as one delivery sends it: the stored payload with this delivery's id."""
    for head in (_BODY_HEAD, _BODY_HEAD_SPACED):
        if body.startswith(head):
            return head[:-1] + delivery_id + body[len(head) - 1 :]
    raise ValueError("not an outbox body")


def body_parts(*, events_text: str, shown: ChangeShown) -> list[str]:
    """The body of one change (``id`` empty), split into parts of at most HOOKS_MAX_BODY_BYTES by
    attendees when larger: every part carries the meeting (its ``seq``), the events, ``part`` and
    ``parts``. One attendee larger than the limit goes alone. Compact JSON, built around the
    change's own meeting and attendee texts (the broadcaster's too: serialised once); only a body
    over the limit is taken apart, attendee by attendee. JSON escapes every non-ASCII character:
    a body's length is its size in bytes."""
    limit = settings.HOOKS_MAX_BODY_BYTES
    head = _BODY_HEAD + ',"type":"roster.change","events":' + events_text + ',"meeting":' + shown.meeting_json
    whole = head + ',"attendees":' + shown.attendees_json + "}"
    if len(whole) <= limit:
        return [whole]
    head += ',"attendees":['
    texts = [compact_json(attendee) for attendee in shown.attendees]
    tail_room = len('],"part":99999,"parts":99999}') + 64  # the tail and the id to come
    chunks: list[list[str]] = [[]]
    used = len(head) + tail_room
    for text in texts:
        size = len(text) + 1
        if chunks[-1] and used + size > limit:
            chunks.append([])
            used = len(head) + tail_room
        chunks[-1].append(text)
        used += size
    n = len(chunks)
    return [head + ",".join(chunk) + f'],"part":{i},"parts":{n}}}' for i, chunk in enumerate(chunks, 1)]


def _kick() -> None:
    from roster.hooks.delivery import deliveries_kick

    deliveries_kick()


def outbox_prune(*, now: datetime | None = None, chunk: int = 5000) -> tuple[int, int]:
    """Forget what the outbox no longer needs: deliveries delivered more than HOOKS_KEEP_HOURS ago,
    then the fanned-out payloads older than that which no delivery points at any more (theirs
    delivered and forgotten, or their hook deleted). Dead and pending deliveries are kept, their
    payloads, and every payload not fanned out yet.
    In chunks, each its own short statement; how many (deliveries, payloads) went."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.HOOKS_KEEP_HOURS)
    delivered = HookDelivery.objects.filter(status=HookDelivery.Status.DELIVERED, delivered_at__lt=cutoff)
    unreferenced = HookPayload.objects.filter(fanned=True, created_at__lt=cutoff).exclude(
        Exists(HookDelivery.objects.filter(payload_id=OuterRef("pk")))
    )
    return _chunks_delete(delivered, chunk), _chunks_delete(unreferenced, chunk)


def _chunks_delete(rows: models.QuerySet, chunk: int) -> int:
    deleted = 0
    while ids := list(rows.values_list("pk", flat=True)[:chunk]):
        deleted += rows.model.objects.filter(pk__in=ids).delete()[0]
    return deleted
