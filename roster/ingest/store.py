"""Every SQL statement of the ingest behind one interface: :class:`Store` (Django's ORM, portable:
SQLite for the tests and the demo) and :class:`PostgresStore` (production), side by side, held to
one contract by tests/ingest/test_store.py on both databases. Records go in and out as domain
types, and a Store is the FoldReads of roster.domain.plan.

PostgreSQL gets its own statements where they are the hot path: a batch's rows travel as one
JSON document unpacked by ``jsonb_to_recordset`` (Django's ``bulk_create`` prepares every value
through the field machinery: the largest cost of a batch in the profile), and the meeting lock
and the touched rows are plain SQL, the rows probed by (meeting, attendee) pair so that their
cost follows the batch, not the meetings' sizes.
"""

from __future__ import annotations

import hashlib
import json
import re
import weakref
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, models
from django.db.models import F, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from roster.domain.events import json_read
from roster.domain.fold import STORED_EVENT_FIELDS, AttendeeState, StoredEvent
from roster.domain.peak import Intervals
from roster.domain.plan import ATTENDEE_RECORD_FIELDS, MEETING_RECORD_FIELDS, FoldReads, MeetingRecord
from roster.domain.streams import STREAM_FIELDS, StreamKey, StreamState
from roster.models import Attendee, Event, Meeting, Quarantine, VoiceConnectorStream

# The fold reads event types with or without the "chime:" prefix; so must the queries.
MEETING_END_TYPES = ("chime:MeetingEnded", "MeetingEnded")

_ATTENDEE_KEY = ("meeting_id", "attendee_id")
_ATTENDEE_WRITTEN = tuple(name for name in ATTENDEE_RECORD_FIELDS if name != "attendee_id")
_STREAM_WRITTEN = STREAM_FIELDS[2:]  # all but the key


@dataclass(frozen=True, slots=True)
class BatchStart:
    """What a batch's first step gives (:meth:`Store.batch_start`): the keys its log insert stored,
    its meetings locked, and the fold's reads, the touched attendee rows read under the locks."""

    inserted: set[str]
    meetings: dict[str, MeetingRecord]
    reads: FoldReads


class Store:
    """The ingest's statements through Django's ORM: correct on any database."""

    # --- a batch's first step ------------------------------------------------------------------

    def batch_start(
        self,
        *,
        rows: Sequence[dict[str, Any]],
        meeting_ids: Sequence[str],
        every: Collection[str],
        touched: Mapping[str, Collection[str]],
    ) -> BatchStart:
        """Insert the log ``rows`` (:meth:`events_insert`), then lock ``meeting_ids``
        (:meth:`meetings_lock`) and read the attendee rows the fold may ask for: every row of the
        ``every`` meetings, and the ``touched`` ones (meeting -> attendee ids). The fold's
        :meth:`attendee_rows` is then answered from them; it may ask for less, never for more."""
        inserted = self.events_insert(rows=rows)
        meetings = self.meetings_lock(meeting_ids=meeting_ids)
        read = self.attendee_rows(every=every, touched=touched) if every or touched else {}
        return BatchStart(inserted, meetings, RowsRead(store=self, rows=read, every=every, touched=touched))

    # --- the event log -------------------------------------------------------------------------

    def events_insert(self, *, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Insert log rows (column dicts); returns the keys that were new. A key already stored, or
        being stored by a concurrent transaction (waited for), is not inserted: a duplicate."""
        return set(self._insert(model=Event, rows=rows, conflict=("key",), returning="key"))

    def duplicates_count(self, *, amounts: Mapping[str, int]) -> None:
        """Add ``amounts[key]`` to the ``duplicate_count`` of each logged event."""
        by_amount: dict[int, list[str]] = defaultdict(list)
        for key, amount in amounts.items():
            by_amount[amount].append(key)
        for amount, keys in by_amount.items():
            Event.objects.filter(key__in=keys).update(duplicate_count=F("duplicate_count") + amount)

    def quarantine_upsert(self, *, rows: Sequence[dict[str, Any]]) -> None:
        """One row per ``source_key``: a key not stored yet is inserted, as its first row in
        ``rows`` with the ``deliveries`` of all of them; a stored key adds those ``deliveries`` to
        its row and takes the latest ``last_received_at``. The rest of a stored row (body, reason,
        ``received_at``) stays the first delivery's."""
        merged = _deliveries_merged(rows)
        if not merged:
            return
        keys = [row["source_key"] for row in merged]
        stored = set(Quarantine.objects.filter(source_key__in=keys).values_list("source_key", flat=True))
        for row in merged:
            if row["source_key"] in stored:
                Quarantine.objects.filter(source_key=row["source_key"]).update(
                    deliveries=F("deliveries") + row["deliveries"],
                    last_received_at=Greatest(
                        "last_received_at",
                        Value(row["last_received_at"], output_field=models.DateTimeField()),
                    ),
                )
        Quarantine.objects.bulk_create(
            [Quarantine(**row) for row in merged if row["source_key"] not in stored]
        )

    # --- meetings and their rows ---------------------------------------------------------------

    def meetings_lock(self, *, meeting_ids: Sequence[str]) -> dict[str, MeetingRecord]:
        """Create the missing meeting rows, then lock them all in id order (no deadlock between
        workers: every transaction takes its meetings in the same order)."""
        if not meeting_ids:
            return {}
        self._meetings_create(meeting_ids)
        locked = (
            Meeting.objects.select_for_update()
            .filter(meeting_id__in=meeting_ids)
            .order_by("meeting_id")
            .values_list(*MEETING_RECORD_FIELDS)
        )
        return {values[0]: MeetingRecord(*values) for values in locked}

    def _meetings_create(self, meeting_ids: Sequence[str]) -> None:
        """Blank rows for these meetings (a row a concurrent batch just created is kept)."""
        self.meetings_create(meetings=[MeetingRecord.new(meeting_id) for meeting_id in meeting_ids])

    def meetings_create(self, *, meetings: Sequence[MeetingRecord]) -> None:
        """Rows for these meetings as given, unless a row exists (it is kept as it is)."""
        now = timezone.now()
        rows = [{**_meeting_columns(meeting), "created_at": now, "updated_at": now} for meeting in meetings]
        self._insert(model=Meeting, rows=rows, conflict=("meeting_id",))

    def meetings_write(self, *, meetings: Sequence[MeetingRecord]) -> None:
        self._update(model=Meeting, rows=_meeting_rows(meetings), key="meeting_id")

    def attendees_write(self, *, rows: Sequence[tuple[str, AttendeeState]]) -> None:
        """Insert or update (meeting id, row) pairs: the whole state, bookkeeping and seq included."""
        self._insert(
            model=Attendee, rows=_attendee_rows(rows), conflict=_ATTENDEE_KEY, update=_ATTENDEE_WRITTEN
        )

    def rows_write(
        self, *, attendees: Sequence[tuple[str, AttendeeState]], meetings: Sequence[MeetingRecord]
    ) -> None:
        """The fold's writes: :meth:`attendees_write` and :meth:`meetings_write`. The meeting of
        every attendee row written is written too (raises otherwise): PostgresStore.batch_start
        knows a meeting's attendee rows have not moved since its snapshot by the meeting row's
        version."""
        _meetings_cover(attendees=attendees, meetings=meetings)
        self.attendees_write(rows=attendees)
        self.meetings_write(meetings=meetings)

    # --- what the fold reads (roster.domain.plan.FoldReads) ------------------------------------

    def attendee_rows(
        self, *, every: Sequence[str], touched: Mapping[str, Collection[str]]
    ) -> dict[str, dict[str, AttendeeState]]:
        # Two plain IN lists rather than one OR per meeting (far cheaper to build); a row of an
        # untouched (meeting, attendee) pair that this brings back is left out below.
        parents = sorted({parent for wanted in touched.values() for parent in wanted})
        query = Q(meeting_id__in=list(every)) | Q(meeting_id__in=list(touched), attendee_id__in=parents)
        values = Attendee.objects.filter(query).values_list("meeting_id", *ATTENDEE_RECORD_FIELDS)
        return _rows_by_meeting(
            ((meeting_id, AttendeeState(*state)) for meeting_id, *state in values), every, touched
        )

    def attendee_histories(
        self, *, refold: Mapping[str, Collection[str]]
    ) -> dict[str, dict[str, list[StoredEvent]]]:
        parents = sorted({parent for wanted in refold.values() for parent in wanted})
        histories: dict[str, dict[str, list[StoredEvent]]] = defaultdict(lambda: defaultdict(list))
        for meeting_id, parent_id, *values in self._attendee_history_rows(sorted(refold), parents):
            if parent_id == "" or parent_id in refold[meeting_id]:  # not another meeting's attendee
                histories[meeting_id][parent_id].append(StoredEvent(*values))
        return histories

    def meeting_histories(self, *, meeting_ids: Sequence[str]) -> dict[str, list[StoredEvent]]:
        histories: dict[str, list[StoredEvent]] = defaultdict(list)
        for meeting_id, *values in self._meeting_history_rows(list(meeting_ids)):
            histories[meeting_id].append(StoredEvent(*values))
        return histories

    def _attendee_history_rows(self, meeting_ids: list[str], parents: list[str]) -> Iterable[Sequence[Any]]:
        """(meeting id, parent id, *STORED_EVENT_FIELDS) of these meetings' events of these parents,
        and their meeting ends."""
        query = Q(meeting_id__in=meeting_ids) & (
            Q(parent_id__in=parents) | Q(parent_id="", event_type__in=MEETING_END_TYPES)
        )
        return Event.objects.filter(query).values_list("meeting_id", "parent_id", *STORED_EVENT_FIELDS)

    def _meeting_history_rows(self, meeting_ids: list[str]) -> Iterable[Sequence[Any]]:
        """(meeting id, *STORED_EVENT_FIELDS) of these meetings' meeting-level events."""
        return Event.objects.filter(meeting_id__in=meeting_ids, parent_id="").values_list(
            "meeting_id", *STORED_EVENT_FIELDS
        )

    def joined_intervals(self, *, others_than: Mapping[str, Collection[str]]) -> dict[str, list[Intervals]]:
        intervals: dict[str, list[Intervals]] = defaultdict(list)
        rows = Attendee.objects.filter(meeting_id__in=list(others_than)).values_list(
            "meeting_id", "attendee_id", "intervals"
        )
        for meeting_id, attendee_id, joined in rows:
            if attendee_id not in others_than[meeting_id]:
                intervals[meeting_id].append(joined)
        return intervals

    # --- Voice Connector streams ---------------------------------------------------------------

    def streams_lock(self, *, keys: Collection[StreamKey]) -> dict[StreamKey, StreamState]:
        """Create the missing stream rows, then lock them in key order."""
        if not keys:
            return {}
        VoiceConnectorStream.objects.bulk_create(
            [
                VoiceConnectorStream(voice_connector_id=vc, transaction_id=tx, status="", status_at=-1)
                for vc, tx in sorted(keys)
            ],
            ignore_conflicts=True,
        )
        query = Q()
        for vc, tx in keys:
            query |= Q(voice_connector_id=vc, transaction_id=tx)
        locked = (
            VoiceConnectorStream.objects.select_for_update()
            .filter(query)
            .order_by("voice_connector_id", "transaction_id")
            .values_list(*STREAM_FIELDS)
        )
        return {(values[0], values[1]): StreamState(*values) for values in locked}

    def streams_write(self, *, streams: Sequence[StreamState]) -> None:
        now = timezone.now()
        for state in streams:  # a handful per batch: Voice Connector events are rare
            VoiceConnectorStream.objects.filter(
                voice_connector_id=state.voice_connector_id, transaction_id=state.transaction_id
            ).update(updated_at=now, **{name: getattr(state, name) for name in _STREAM_WRITTEN})

    # --- batch statements, one per table (PostgresStore: one round trip each) -------------------

    def _insert(
        self,
        *,
        model: type[models.Model],
        rows: Sequence[dict[str, Any]],
        conflict: Sequence[str],
        update: Sequence[str] = (),
        returning: str | None = None,
    ) -> list[Any]:
        """INSERT every row (dicts keyed by column); on a ``conflict`` update the ``update`` columns
        or, without them, skip the row. Returns ``returning`` of each row written (in no order)."""
        if not rows:
            return []
        objects = [model(**row) for row in rows]
        if update:
            model.objects.bulk_create(
                objects,
                batch_size=500,
                update_conflicts=True,
                unique_fields=[_field_name(model, name) for name in conflict],
                update_fields=[_field_name(model, name) for name in update],
            )
            return [row[returning] for row in rows] if returning else []
        if returning is None:
            model.objects.bulk_create(objects, batch_size=500, ignore_conflicts=True)
            return []
        # Skip-on-conflict with RETURNING: only the rows that were not there yet.
        (single,) = conflict
        wanted = [row[single] for row in rows]
        existing = set(model.objects.filter(**{f"{single}__in": wanted}).values_list(single, flat=True))
        fresh = [obj for obj, row in zip(objects, rows, strict=True) if row[single] not in existing]
        model.objects.bulk_create(fresh, batch_size=500)
        return [getattr(obj, returning) for obj in fresh]

    def _update(self, *, model: type[models.Model], rows: Sequence[dict[str, Any]], key: str) -> None:
        """UPDATE existing rows, matched on ``key``, to the other columns of each dict."""
        if not rows:
            return
        assigned = [_field_name(model, name) for name in rows[0] if name != key]
        model.objects.bulk_update([model(**row) for row in rows], assigned)


class PostgresStore(Store):
    """The same contract in PostgreSQL's own statements: one round trip per table and batch."""

    def batch_start(
        self,
        *,
        rows: Sequence[dict[str, Any]],
        meeting_ids: Sequence[str],
        every: Collection[str],
        touched: Mapping[str, Collection[str]],
    ) -> BatchStart:
        # One statement for the three steps, its answer one JSON text. The log insert runs first
        # (the lock waits on it: a duplicate key held by a batch that waits for one of these
        # meetings is waited for before this batch takes any meeting), then the locks in id order.
        # The rows are read in the statement's snapshot, which a batch committed while this one
        # waited for a lock is not in: a meeting whose locked row is not the row of the snapshot
        # (its xmin moved) has its rows read again. Sound because every batch that writes a
        # meeting's attendee rows writes its meeting row too (Store.rows_write).
        if not rows or not meeting_ids:
            return super().batch_start(rows=rows, meeting_ids=meeting_ids, every=every, touched=touched)
        insert, insert_params = self._insert_statement(model=Event, rows=rows, conflict=("key",))
        locked = ", ".join(f'locked."{name}"' for name in MEETING_RECORD_FIELDS)
        current = "(locked.version = seen.xmin) IS TRUE"  # the row locked is the snapshot's
        answers = [
            "(SELECT keys FROM logged)",
            f"(SELECT coalesce(json_agg(json_build_array({locked}, {current})), '[]') "
            "FROM locked LEFT JOIN roster_meeting AS seen ON seen.meeting_id = locked.meeting_id)",
        ]
        params = [*insert_params, list(meeting_ids)]
        select = _attendee_rows_select(every=every, touched=touched)
        if select is not None:
            columns = _quoted(("meeting_id", *ATTENDEE_RECORD_FIELDS))
            answers.append(
                f"(SELECT coalesce(json_agg(json_build_array({columns})), '[]') FROM ({select[0]}) AS read)"
            )
            params += select[1]
        sql = (
            f'WITH inserted AS ({insert} RETURNING "key"), '
            "logged AS (SELECT coalesce(json_agg(key), '[]') AS keys FROM inserted), "
            f"locked AS (SELECT {_quoted(MEETING_RECORD_FIELDS)}, xmin AS version FROM roster_meeting "
            "WHERE meeting_id = ANY(%s) AND (SELECT keys FROM logged) IS NOT NULL "
            "ORDER BY meeting_id FOR UPDATE) "
            f"SELECT json_build_array({', '.join(answers)})::text"
        )
        ((answer,),) = self._fetch(sql, params)
        keys, locked, *read = json_read(answer)
        meetings, stale = {}, set()
        for *values, current in locked:
            meetings[values[0]] = MeetingRecord(*values)
            if not current:
                stale.add(values[0])
        missing = [meeting_id for meeting_id in meeting_ids if meeting_id not in meetings]
        if missing:  # a meeting's first batch: create its row, then lock it
            self._meetings_create(missing)
            meetings.update(self._meetings_locked(missing))
            stale.update(missing)
        found: dict[str, dict[str, AttendeeState]] = defaultdict(dict)
        for meeting_id, *values in read[0] if read else ():
            if meeting_id not in stale:
                found[meeting_id][values[0]] = AttendeeState(*values)
        again = {meeting_id: wanted for meeting_id, wanted in touched.items() if meeting_id in stale}
        again_every = [meeting_id for meeting_id in every if meeting_id in stale]
        if again or again_every:
            found.update(self.attendee_rows(every=again_every, touched=again))
        return BatchStart(set(keys), meetings, RowsRead(store=self, rows=found, every=every, touched=touched))

    def rows_write(
        self, *, attendees: Sequence[tuple[str, AttendeeState]], meetings: Sequence[MeetingRecord]
    ) -> None:
        # One statement: the attendees' upsert as a data-modifying WITH of the meetings' UPDATE.
        # They write different tables (the attendee triggers write only roster_meetinguser), so
        # running them together changes nothing but the round trip and statement saved.
        if not attendees or not meetings:
            super().rows_write(attendees=attendees, meetings=meetings)
            return
        _meetings_cover(attendees=attendees, meetings=meetings)
        upsert, upsert_params = self._insert_statement(
            model=Attendee, rows=_attendee_rows(attendees), conflict=_ATTENDEE_KEY, update=_ATTENDEE_WRITTEN
        )
        update, update_params = self._update_statement(
            model=Meeting, rows=_meeting_rows(meetings), key="meeting_id"
        )
        self._execute_prepared(
            f"WITH attendees_written AS ({upsert}) {update}", [*upsert_params, *update_params]
        )

    def meetings_lock(self, *, meeting_ids: Sequence[str]) -> dict[str, MeetingRecord]:
        # Lock the rows that exist, then create and lock the missing ones (a meeting's first
        # batch), so most batches take one query.
        if not meeting_ids:
            return {}
        meetings = self._meetings_locked(meeting_ids)
        missing = [meeting_id for meeting_id in meeting_ids if meeting_id not in meetings]
        if missing:
            self._meetings_create(missing)
            meetings.update(self._meetings_locked(missing))
        return meetings

    def _meetings_locked(self, meeting_ids: Sequence[str]) -> dict[str, MeetingRecord]:
        rows = self._fetch(
            f"SELECT {_quoted(MEETING_RECORD_FIELDS)} FROM roster_meeting "
            "WHERE meeting_id = ANY(%s) ORDER BY meeting_id FOR UPDATE",
            [list(meeting_ids)],
        )
        return {row[0]: MeetingRecord(*_json_decoded(row, _MEETING_JSON)) for row in rows}

    def attendee_rows(
        self, *, every: Sequence[str], touched: Mapping[str, Collection[str]]
    ) -> dict[str, dict[str, AttendeeState]]:
        select = _attendee_rows_select(every=every, touched=touched)
        rows = self._fetch(*select) if select else []
        return _rows_by_meeting(
            ((row[0], AttendeeState(*_json_decoded(row[1:], _ATTENDEE_JSON))) for row in rows), every, touched
        )

    # The fold's histories: the portable queries' rows without the ORM's work per row (a converter
    # call per value, a JSON decoder per detail through the field): a sixth of a large batch's time.
    def _attendee_history_rows(self, meeting_ids: list[str], parents: list[str]) -> Iterable[Sequence[Any]]:
        rows = self._fetch(
            f"SELECT {_quoted(('meeting_id', 'parent_id', *STORED_EVENT_FIELDS))} FROM roster_event "
            "WHERE meeting_id = ANY(%s) "
            "AND (parent_id = ANY(%s) OR (parent_id = '' AND event_type = ANY(%s)))",
            [meeting_ids, parents, list(MEETING_END_TYPES)],
        )
        return (_json_decoded(row, _HISTORY_JSON) for row in rows)

    def _meeting_history_rows(self, meeting_ids: list[str]) -> Iterable[Sequence[Any]]:
        rows = self._fetch(
            f"SELECT {_quoted(('meeting_id', *STORED_EVENT_FIELDS))} FROM roster_event "
            "WHERE meeting_id = ANY(%s) AND parent_id = ''",
            [meeting_ids],
        )
        return (_json_decoded(row, _MEETING_HISTORY_JSON) for row in rows)

    def quarantine_upsert(self, *, rows: Sequence[dict[str, Any]]) -> None:
        # One statement; a redelivery racing another worker's waits for its row, then adds to it.
        # Plain parameters, not a JSON document: bodies are bytes, and a batch holds few rejections.
        merged = _deliveries_merged(rows)
        if not merged:
            return
        # Every column, the model's defaults for those the rows leave out (no database defaults).
        fields = [field for field in Quarantine._meta.concrete_fields if not field.primary_key]
        objects = [Quarantine(**row) for row in merged]
        table = Quarantine._meta.db_table
        values = ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * len(objects))
        self._execute(
            f"INSERT INTO {table} ({_quoted([field.column for field in fields])}) VALUES {values} "
            'ON CONFLICT ("source_key") DO UPDATE SET '
            f'"deliveries" = {table}."deliveries" + EXCLUDED."deliveries", '
            f'"last_received_at" = GREATEST({table}."last_received_at", EXCLUDED."last_received_at")',
            [
                field.get_db_prep_save(getattr(obj, field.attname), connection)
                for obj in objects
                for field in fields
            ],
        )

    def _insert(
        self,
        *,
        model: type[models.Model],
        rows: Sequence[dict[str, Any]],
        conflict: Sequence[str],
        update: Sequence[str] = (),
        returning: str | None = None,
    ) -> list[Any]:
        if not rows:
            return []
        sql, params = self._insert_statement(model=model, rows=rows, conflict=conflict, update=update)
        if returning is None:
            self._execute(sql, params)
            return []
        return [row[0] for row in self._fetch(f'{sql} RETURNING "{returning}"', params)]

    @staticmethod
    def _insert_statement(
        *,
        model: type[models.Model],
        rows: Sequence[dict[str, Any]],
        conflict: Sequence[str],
        update: Sequence[str] = (),
    ) -> tuple[str, list[Any]]:
        names = tuple(rows[0])
        action = (
            "DO UPDATE SET " + ", ".join(f'"{name}" = EXCLUDED."{name}"' for name in update)
            if update
            else "DO NOTHING"
        )
        sql = (
            f"INSERT INTO {model._meta.db_table} ({_quoted(names)}) "
            f"SELECT {_quoted(names)} FROM jsonb_to_recordset(%s::jsonb) AS {_recordset(model, names)} "
            f"ON CONFLICT ({_quoted(conflict)}) {action}"
        )
        return sql, [_document(rows)]

    def _update(self, *, model: type[models.Model], rows: Sequence[dict[str, Any]], key: str) -> None:
        if rows:
            self._execute(*self._update_statement(model=model, rows=rows, key=key))

    @staticmethod
    def _update_statement(
        *, model: type[models.Model], rows: Sequence[dict[str, Any]], key: str
    ) -> tuple[str, list[Any]]:
        names = tuple(rows[0])
        table = model._meta.db_table
        sql = (
            f"UPDATE {table} SET "
            + ", ".join(f'"{name}" = x."{name}"' for name in names if name != key)
            + f" FROM jsonb_to_recordset(%s::jsonb) AS {_recordset(model, names)}"
            + f' WHERE {table}."{key}" = x."{key}"'
        )
        return sql, [_document(rows)]

    @staticmethod
    def _execute(sql: str, params: list[Any]) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    @staticmethod
    def _fetch(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    @staticmethod
    def _execute_prepared(sql: str, params: list[Any]) -> None:
        """Run ``sql`` as a statement this session prepared once: PostgreSQL then skips parsing,
        analysing and planning it, about 0.2 ms of a 3.3 ms batch of 10 for the row writes.
        Only where it measured faster: ``batch_start``'s generic plan runs slower than its custom
        ones (docs/benchmarks.md). A prepared statement outlives a rollback and ends with its
        session (a new connection prepares again); behind a pooler that hands a session's
        transactions to other server connections, INGEST_PREPARED_STATEMENTS turns it off."""
        if not settings.INGEST_PREPARED_STATEMENTS:
            PostgresStore._execute(sql, params)
            return
        name, prepare = _prepared(sql, len(params))
        with connection.cursor() as cursor:
            known = _PREPARED_IN.setdefault(connection.connection, set())
            if name not in known:
                cursor.execute(prepare)
                known.add(name)
            cursor.execute(f"EXECUTE {name}({', '.join(['%s'] * len(params))})", params)


_PORTABLE, _POSTGRES = Store(), PostgresStore()
# The statements each database session has prepared (PostgresStore._execute_prepared).
_PREPARED_IN: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


@lru_cache(maxsize=64)
def _prepared(sql: str, count: int) -> tuple[str, str]:
    """A statement's name (from its text) and its PREPARE, placeholders numbered."""
    if sql.count("%") != count or sql.count("%s") != count:
        raise ValueError("a prepared statement's text holds no % but its placeholders")
    numbers = iter(range(1, count + 1))
    name = "roster_" + hashlib.blake2b(sql.encode(), digest_size=8).hexdigest()
    return name, f"PREPARE {name} AS " + re.sub("%s", lambda _: f"${next(numbers)}", sql)


def store_for_connection() -> Store:
    """The store for the database this thread talks to: the one place that asks which it is."""
    return _POSTGRES if connection.vendor == "postgresql" else _PORTABLE


# --- helpers -----------------------------------------------------------------------------------


def _meeting_columns(meeting: MeetingRecord) -> dict[str, Any]:
    return {name: getattr(meeting, name) for name in MEETING_RECORD_FIELDS}


def _attendee_columns(state: AttendeeState) -> dict[str, Any]:
    return {name: getattr(state, name) for name in ATTENDEE_RECORD_FIELDS}


def _attendee_rows(rows: Sequence[tuple[str, AttendeeState]]) -> list[dict[str, Any]]:
    return [{"meeting_id": meeting_id, **_attendee_columns(state)} for meeting_id, state in rows]


def _meeting_rows(meetings: Sequence[MeetingRecord]) -> list[dict[str, Any]]:
    now = timezone.now()
    return [{**_meeting_columns(meeting), "updated_at": now} for meeting in meetings]


def _deliveries_merged(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Quarantine rows, one per ``source_key`` (a message delivered twice in one batch: PostgreSQL's
    upsert cannot touch a row twice in one statement): each the first of its key, in the order
    they came (the rows' ids keep the arrival order), with the deliveries summed and the latest
    ``last_received_at``. Not in key order as the log's keys are: two batches holding the same
    two poison messages in opposite orders at once is a rare deadlock, retried like any other."""
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        first = merged.get(row["source_key"])
        if first is None:
            merged[row["source_key"]] = dict(row)
        else:
            first["deliveries"] += row["deliveries"]
            first["last_received_at"] = max(first["last_received_at"], row["last_received_at"])
    return list(merged.values())


def _rows_by_meeting(
    rows: Any, every: Collection[str], touched: Mapping[str, Collection[str]]
) -> dict[str, dict[str, AttendeeState]]:
    """Rows by meeting and attendee id, keeping only what was asked for."""
    every = set(every)
    found: dict[str, dict[str, AttendeeState]] = defaultdict(dict)
    for meeting_id, state in rows:
        if meeting_id in every or state.attendee_id in touched.get(meeting_id, ()):
            found[meeting_id][state.attendee_id] = state
    return found


@dataclass(frozen=True, slots=True)
class RowsRead:
    """The fold's reads (roster.domain.plan.FoldReads) once :meth:`Store.batch_start` has read the
    attendee rows with the locks: those are answered from what it read, the rest by the store."""

    store: Store
    rows: Mapping[str, Mapping[str, AttendeeState]]
    every: Collection[str]
    touched: Mapping[str, Collection[str]]

    def attendee_rows(
        self, *, every: Sequence[str], touched: Mapping[str, Collection[str]]
    ) -> dict[str, dict[str, AttendeeState]]:
        for meeting_id, wanted in touched.items():
            if meeting_id not in self.every and not set(wanted) <= set(self.touched.get(meeting_id, ())):
                raise LookupError(f"attendee rows of {meeting_id} were not read with the lock: {wanted}")
        if not set(every) <= set(self.every):
            raise LookupError(f"every attendee row of {every} was not read with the lock")
        pairs = ((meeting_id, state) for meeting_id, by_id in self.rows.items() for state in by_id.values())
        return _rows_by_meeting(pairs, every, touched)

    def attendee_histories(
        self, *, refold: Mapping[str, Collection[str]]
    ) -> dict[str, dict[str, list[StoredEvent]]]:
        return self.store.attendee_histories(refold=refold)

    def meeting_histories(self, *, meeting_ids: Sequence[str]) -> dict[str, list[StoredEvent]]:
        return self.store.meeting_histories(meeting_ids=meeting_ids)

    def joined_intervals(self, *, others_than: Mapping[str, Collection[str]]) -> dict[str, list[Intervals]]:
        return self.store.joined_intervals(others_than=others_than)


def _meetings_cover(
    *, attendees: Sequence[tuple[str, AttendeeState]], meetings: Sequence[MeetingRecord]
) -> None:
    uncovered = {meeting_id for meeting_id, _ in attendees} - {meeting.meeting_id for meeting in meetings}
    if uncovered:
        raise ValueError(f"attendee rows written without their meeting's row: {sorted(uncovered)}")


def _attendee_rows_select(
    *, every: Collection[str], touched: Mapping[str, Collection[str]]
) -> tuple[str, list[Any]] | None:
    """The attendee rows of the ``every`` meetings and the ``touched`` (meeting, attendee) pairs,
    one probe each of the unique index (with two IN lists PostgreSQL reads every row of the
    batch's meetings): (meeting id, *ATTENDEE_RECORD_FIELDS); None when nothing is asked."""
    columns = _quoted(("meeting_id", *ATTENDEE_RECORD_FIELDS))
    selects, params = [], []
    if every:
        selects.append(f"SELECT {columns} FROM roster_attendee WHERE meeting_id = ANY(%s)")
        params.append(list(every))
    pairs = sorted((meeting_id, parent) for meeting_id, wanted in touched.items() for parent in wanted)
    if pairs:
        selects.append(
            f"SELECT {columns} "
            "FROM unnest(%s::varchar[], %s::varchar[]) AS touched(m, a) "
            "JOIN roster_attendee ON meeting_id = touched.m AND attendee_id = touched.a"
        )
        params += [[m for m, _ in pairs], [a for _, a in pairs]]
    return (" UNION ALL ".join(selects), params) if selects else None


# JSON columns come back from a raw PostgreSQL cursor as text: their positions in a record.
_MEETING_JSON = tuple(
    i
    for i, name in enumerate(MEETING_RECORD_FIELDS)
    if name in ("pipelines", "peak_marks", "reconcile_missed")
)
_ATTENDEE_JSON = tuple(
    i for i, name in enumerate(ATTENDEE_RECORD_FIELDS) if name in ("capabilities", "intervals")
)
# ... and of a history row: (meeting id, parent id, *STORED_EVENT_FIELDS), a meeting's without parent.
_HISTORY_JSON = (2 + STORED_EVENT_FIELDS.index("detail"),)
_MEETING_HISTORY_JSON = (1 + STORED_EVENT_FIELDS.index("detail"),)


def _json_decoded(row: Sequence[Any], positions: Sequence[int]) -> list[Any]:
    values = list(row)
    for i in positions:
        if values[i] is not None:
            values[i] = json_read(values[i])
    return values


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} in a batch")


def _document(rows: Sequence[dict[str, Any]]) -> str:
    """A batch's rows as one JSON text, for ``jsonb_to_recordset``. orjson writes it, datetimes
    included, in a fraction of json.dumps' time (the log's document was a tenth of the ingest's);
    an integer beyond 64 bits, which a detail may hold, is left to json. Neither meets a NaN or
    an infinity: the parser refuses them (roster.domain.events)."""
    try:
        return orjson.dumps(rows).decode()
    except orjson.JSONEncodeError:
        return json.dumps(rows, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


@cache
def _recordset(model: type[models.Model], names: tuple[str, ...]) -> str:
    """``x(col type, ...)`` for jsonb_to_recordset, from the model's own column types."""
    fields = {field.attname: field for field in model._meta.concrete_fields}
    return "x(" + ", ".join(f'"{name}" {fields[name].db_type(connection)}' for name in names) + ")"


def _field_name(model: type[models.Model], attname: str) -> str:
    for field in model._meta.concrete_fields:
        if field.attname == attname:
            return field.name
    raise LookupError(attname)
