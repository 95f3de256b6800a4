"""roster.ingest.store: one contract for both stores. The suite runs on PostgreSQL (PostgresStore)
and on SQLite (the portable Store), so each test here holds both to the same answers."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from roster.dev.chime import BASE_TS, as_json, detail, envelope
from roster.domain.fold import AttendeeState
from roster.domain.plan import MeetingRecord
from roster.domain.streams import StreamState
from roster.ingest.store import PostgresStore, _prepared, store_for_connection
from roster.models import Attendee, Event, Quarantine
from tests.conftest import ingest

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def store():
    return store_for_connection()


def test_the_store_is_the_one_of_the_database_in_use(store):
    assert isinstance(store, PostgresStore) == (connection.vendor == "postgresql")


def log_row(key: str, *, meeting_id: str = "m-1") -> dict:
    return {
        "key": key,
        "kind": "meeting",
        "detail_type": "Chime Meeting State Change",
        "event_type": "chime:AttendeeJoined",
        "meeting_id": meeting_id,
        "attendee_id": "a-1",
        "parent_id": "a-1",
        "timestamp": BASE_TS,
        "detail": {"note": "é ✓", "nested": [1, None]},
        "envelope_id": "",
        "account": "",
        "region": "",
        "queue": "q",
        "sqs_message_id": "",
        "received_at": NOW,
        "duplicate_count": 0,
    }


def test_events_insert_returns_only_new_keys_and_duplicates_are_counted(store):
    assert store.events_insert(rows=[log_row("k1"), log_row("k2")]) == {"k1", "k2"}
    assert store.events_insert(rows=[log_row("k2"), log_row("k3")]) == {"k3"}
    assert store.events_insert(rows=[]) == set()
    store.duplicates_count(amounts={"k1": 2, "k2": 1})
    store.duplicates_count(amounts={"k1": 1})
    counts = dict(Event.objects.values_list("key", "duplicate_count"))
    assert counts == {"k1": 3, "k2": 1, "k3": 0}
    assert Event.objects.get(key="k1").detail == {"note": "é ✓", "nested": [1, None]}


def test_meetings_lock_creates_the_missing_and_returns_what_is_stored(store):
    with transaction.atomic():
        created = store.meetings_lock(meeting_ids=["m-a", "m-b"])
    assert created == {"m-a": MeetingRecord.new("m-a"), "m-b": MeetingRecord.new("m-b")}
    written = MeetingRecord(
        meeting_id="m-a",
        external_meeting_id="standup",
        media_region="eu-west-1",
        status="active",
        started_at=BASE_TS,
        ended_at=None,
        peak_joined=7,
        joined_count=3,
        dropped_count=1,
        video_count=2,
        sharing_count=1,
        transcription="failed",
        transcription_message="Internal error",
        pipelines={"p-1": "in_progress"},
        seq=12,
        peak_marks={"last": [BASE_TS + 5, 7], "at": [BASE_TS + 2, 3]},
    )
    with transaction.atomic():
        store.meetings_write(meetings=[written])
        assert store.meetings_lock(meeting_ids=["m-a", "m-b", "m-c"]) == {
            "m-a": written,
            "m-b": MeetingRecord.new("m-b"),
            "m-c": MeetingRecord.new("m-c"),
        }
    assert store.meetings_lock(meeting_ids=[]) == {}


def row(attendee_id: str, **fields) -> AttendeeState:
    return AttendeeState(attendee_id=attendee_id, **fields)


def test_attendees_write_upserts_whole_rows_and_attendee_rows_reads_what_was_asked(store):
    with transaction.atomic():
        store.meetings_lock(meeting_ids=["m-1", "m-2"])
    first = row(
        "a-1",
        external_user_id="ana",
        presence="joined",
        network_type="Voip",
        video=True,
        first_joined_at=BASE_TS,
        joined_since=BASE_TS,
        capabilities={"audio": "SendReceive", "video": None, "content": "Receive"},
        intervals=[[BASE_TS, None, None]],
        folded_ts=BASE_TS,
        folded_rank=3,
        external_user_id_own=True,
        seq=4,
    )
    store.attendees_write(rows=[("m-1", first), ("m-1", row("a-2")), ("m-2", row("a-1", presence="left"))])
    updated = row("a-1", presence="left", joined_ms=5, intervals=[[BASE_TS, BASE_TS + 5, 7]], seq=5)
    store.attendees_write(rows=[("m-1", updated)])

    rows = store.attendee_rows(every=["m-2"], touched={"m-1": ["a-1", "a-9"]})
    assert rows == {"m-1": {"a-1": updated}, "m-2": {"a-1": row("a-1", presence="left")}}
    assert rows["m-1"]["a-1"].seq == 5  # not compared by ==, stored all the same
    assert store.attendee_rows(every=[], touched={"m-1": ["a-2"]}) == {"m-1": {"a-2": row("a-2")}}
    assert store.attendee_rows(every=["m-1"], touched={}) == {"m-1": {"a-1": updated, "a-2": row("a-2")}}
    assert store.joined_intervals(others_than={"m-1": {"a-2"}, "m-2": set()}) == {
        "m-1": [[[BASE_TS, BASE_TS + 5, 7]]],
        "m-2": [[]],
    }


def test_rows_write_writes_the_attendees_and_the_meetings_of_a_batch_together(store):
    """PostgreSQL writes both in one statement (the attendees' upsert inside the meetings'
    UPDATE): each table must come out as written alone."""
    with transaction.atomic():
        meetings = store.meetings_lock(meeting_ids=["m-1", "m-2"])
        meetings["m-1"].seq, meetings["m-1"].joined_count, meetings["m-2"].status = 3, 1, "ended"
        store.rows_write(
            attendees=[("m-1", row("a-1", presence="joined", seq=3)), ("m-2", row("a-1", presence="left"))],
            meetings=[meetings["m-1"], meetings["m-2"]],
        )
    with transaction.atomic():
        store.rows_write(attendees=[("m-1", row("a-2", seq=4))], meetings=[meetings["m-1"]])
        store.rows_write(attendees=[], meetings=[meetings["m-2"]])  # one side alone
        assert store.meetings_lock(meeting_ids=["m-1", "m-2"]) == meetings
    # A meeting's attendee rows never move without its row (PostgresStore.batch_start relies on it).
    with pytest.raises(ValueError, match="without their meeting"), transaction.atomic():
        store.rows_write(attendees=[("m-1", row("a-3"))], meetings=[meetings["m-2"]])
    assert store.attendee_rows(every=["m-1", "m-2"], touched={}) == {
        "m-1": {"a-1": row("a-1", presence="joined", seq=3), "a-2": row("a-2", seq=4)},
        "m-2": {"a-1": row("a-1", presence="left")},
    }


def test_batch_start_logs_locks_and_reads_the_rows_the_fold_may_ask_for(store):
    joined = row(
        "a-1",
        presence="joined",
        capabilities={"audio": "SendReceive", "video": None, "content": "Receive"},
        intervals=[[BASE_TS, None, None]],
        seq=3,
    )
    with transaction.atomic():
        meetings = store.meetings_lock(meeting_ids=["m-1", "m-2"])
        meetings["m-1"].seq = 3
        store.rows_write(
            attendees=[
                ("m-1", joined),
                ("m-1", row("a-2")),
                ("m-2", row("a-1")),
            ],
            meetings=[meetings["m-1"], meetings["m-2"]],
        )
    with transaction.atomic():
        start = store.batch_start(
            rows=[log_row("k1"), log_row("k2", meeting_id="m-2")],
            meeting_ids=["m-1", "m-2", "m-3"],
            every=["m-2"],
            touched={"m-1": ["a-1", "a-9"], "m-3": ["a-1"]},
        )
    assert start.inserted == {"k1", "k2"}
    assert start.meetings == {"m-1": meetings["m-1"], "m-2": meetings["m-2"], "m-3": MeetingRecord.new("m-3")}
    reads = start.reads
    assert reads.attendee_rows(every=["m-2"], touched={"m-1": ["a-1"], "m-3": ["a-1"]}) == {
        "m-1": {"a-1": joined},
        "m-2": {"a-1": row("a-1")},
    }
    assert reads.attendee_rows(every=[], touched={"m-2": ["a-1"]}) == {"m-2": {"a-1": row("a-1")}}
    # Asking for a row it did not read is the caller's bug, not an absent row.
    with pytest.raises(LookupError):
        reads.attendee_rows(every=[], touched={"m-1": ["a-2"]})
    with pytest.raises(LookupError):
        reads.attendee_rows(every=["m-1"], touched={})
    assert reads.joined_intervals(others_than={"m-1": {"a-1"}}) == {"m-1": [[]]}  # the store's own
    with transaction.atomic():
        again = store.batch_start(
            rows=[log_row("k2"), log_row("k3")], meeting_ids=["m-1"], every=[], touched={}
        )
    assert again.inserted == {"k3"}
    assert again.reads.attendee_rows(every=[], touched={}) == {}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_batch_start_reads_the_rows_a_batch_committed_while_it_waited_for_the_lock():
    """PostgresStore.batch_start reads the rows in the statement that takes the locks, so in the
    snapshot taken before it waited: a batch that committed meanwhile (an existing meeting's row
    moved, or a meeting created) must have its rows read again."""
    import threading

    from django.db import connection as this_connection

    store = store_for_connection()
    with transaction.atomic():
        store.meetings_lock(meeting_ids=["m-1"])
    holding, release, waiting = threading.Event(), threading.Event(), []

    def first_batch() -> None:
        try:
            with transaction.atomic():
                meetings = store.batch_start(
                    rows=[log_row("k1")], meeting_ids=["m-1", "m-2"], every=[], touched={"m-1": ["a-1"]}
                )
                store.rows_write(
                    attendees=[("m-1", row("a-1", presence="joined")), ("m-2", row("a-2", presence="left"))],
                    meetings=list(meetings.meetings.values()),
                )
                holding.set()
                release.wait(30)
        finally:
            this_connection.close()

    def second_batch() -> None:
        try:
            holding.wait(30)
            with transaction.atomic():
                start = store.batch_start(
                    rows=[log_row("k2")],
                    meeting_ids=["m-1", "m-2"],
                    every=["m-2"],
                    touched={"m-1": ["a-1"]},
                )
                waiting.append(start.reads.attendee_rows(every=["m-2"], touched={"m-1": ["a-1"]}))
        finally:
            this_connection.close()

    threads = [threading.Thread(target=first_batch), threading.Thread(target=second_batch)]
    for thread in threads:
        thread.start()
    assert holding.wait(30)
    with this_connection.cursor() as cursor:  # the second batch is waiting for the first's lock
        for _ in range(300):
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the second batch never waited for the lock")
    release.set()
    for thread in threads:
        thread.join(30)
    assert waiting == [
        {"m-1": {"a-1": row("a-1", presence="joined")}, "m-2": {"a-2": row("a-2", presence="left")}}
    ]


def test_histories_are_the_rows_events_the_meeting_ends_and_the_meeting_level_events(store):
    def body(event_type: str, meeting_id: str, attendee_id: str | None, ms: int, **extra) -> str:
        return as_json(envelope(detail(event_type, meeting_id, attendee_id, BASE_TS + ms, **extra)))

    ingest(
        [
            body("MeetingStarted", "m-1", None, 0),
            body("AttendeeJoined", "m-1", "a-1", 1),
            body("AttendeeContentJoined", "m-1", "a-1#content", 2),
            body("AttendeeJoined", "m-1", "a-2", 3),
            body("MediaPipelineInProgress", "m-1", None, 4, mediaPipelineId="p-1"),
            body("MeetingEnded", "m-1", None, 9),
            body("AttendeeJoined", "m-2", "a-1", 5),  # another meeting's a-1
        ]
    )
    histories = store.attendee_histories(refold={"m-1": {"a-1"}})
    assert set(histories) == {"m-1"}
    assert {k: sorted(e.event_type for e in v) for k, v in histories["m-1"].items()} == {
        "a-1": ["chime:AttendeeContentJoined", "chime:AttendeeJoined"],
        "": ["chime:MeetingEnded"],
    }
    level = store.meeting_histories(meeting_ids=["m-1", "m-2"])
    assert sorted(e.event_type for e in level["m-1"]) == [
        "chime:MediaPipelineInProgress",
        "chime:MeetingEnded",
        "chime:MeetingStarted",
    ]
    assert "m-2" not in level
    pipeline = next(e for e in level["m-1"] if e.event_type == "chime:MediaPipelineInProgress")
    assert pipeline.detail["mediaPipelineId"] == "p-1" and pipeline.source == "chime"  # decoded, whole
    (joined,) = (e for e in histories["m-1"]["a-1"] if e.event_type == "chime:AttendeeJoined")
    assert (joined.attendee_id, joined.timestamp, joined.kind) == ("a-1", BASE_TS + 1, "meeting")


def test_streams_lock_creates_blank_rows_and_streams_write_stores_the_state(store):
    key = ("vc-1", "tx-1")
    with transaction.atomic():
        assert store.streams_lock(keys={key}) == {key: StreamState(*key, status="", status_at=-1)}
    state = StreamState(*key, status="ENDED", status_at=BASE_TS, call_id="c-1", failure_reason="")
    store.streams_write(streams=[state])
    with transaction.atomic():
        assert store.streams_lock(keys={key, ("vc-1", "tx-2")})[key] == state
    assert store.streams_lock(keys=set()) == {}


def quarantine_row(
    key: str, *, body: bytes = b"\xff not utf-8", at: datetime = NOW, reason: str = "bad"
) -> dict:
    return {
        "source_key": key,
        "body": body,
        "body_size": len(body),
        "truncated": False,
        "reason_code": "not_utf8",
        "reason": reason,
        "queue": "q",
        "sqs_message_id": "m",
        "received_at": at,
        "last_received_at": at,
        "deliveries": 1,
    }


def test_quarantine_upsert_keeps_one_row_per_key_and_counts_its_deliveries(store):
    later = NOW + timedelta(minutes=5)
    with transaction.atomic():  # a key twice in one batch (SQS delivers at least once)
        store.quarantine_upsert(
            rows=[
                quarantine_row("k1"),
                quarantine_row("k2", body=b"two"),
                quarantine_row("k2", body=b"two", at=later),
            ]
        )
    with transaction.atomic():  # a redelivery in a later batch
        store.quarantine_upsert(rows=[quarantine_row("k3"), quarantine_row("k1", at=later, reason="again")])
    store.quarantine_upsert(rows=[])
    store.quarantine_upsert(rows=[quarantine_row("k3", at=NOW - timedelta(minutes=1))])  # a late one
    rows = {q.source_key: q for q in Quarantine.objects.all()}
    assert {key: (q.deliveries, q.received_at, q.last_received_at) for key, q in rows.items()} == {
        "k1": (2, NOW, later),
        "k2": (2, NOW, later),
        "k3": (2, NOW, NOW),  # the latest delivery stays the latest
    }
    assert bytes(rows["k1"].body) == b"\xff not utf-8"  # the bytes as received
    assert rows["k1"].reason == "bad"  # the first delivery's reason is kept
    assert bytes(rows["k2"].body) == b"two"


@pytest.mark.postgres
def test_an_attendee_rows_update_is_hot_and_writes_no_index_entry():
    """roster_attendee keeps no index on a column an update moves (``seq`` above all) and room in
    its pages (migration 0018): the ingest's updates of a row are HOT. An index added on such a
    column, or the room taken away, fails this."""

    def body(event_type: str, ms: int) -> str:
        return as_json(envelope(detail(event_type, "m-hot", "a-1", BASE_TS + ms, externalUserId="ana")))

    def counts() -> tuple[int, int, int]:  # this transaction's, so far
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                "WHERE relname = 'roster_attendee'"
            )
            return cursor.fetchone()

    before = counts()
    ingest([body("AttendeeJoined", 0)])
    for n, event_type in enumerate(["AttendeeVideoStarted", "AttendeeVideoStopped", "AttendeeLeft"], start=1):
        ingest([body(event_type, n)])
    assert tuple(after - first for after, first in zip(counts(), before, strict=True)) == (1, 3, 3)


def _prepared_here() -> list[tuple[str, int]]:
    """This session's prepared statements of the ingest: (statement, times executed)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements "
            "WHERE name LIKE 'roster_%%'"
        )
        return cursor.fetchall()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_row_writes_are_prepared_once_per_session_and_again_on_a_new_one(settings):
    def body(event_type: str, ms: int) -> str:
        return as_json(envelope(detail(event_type, "m-prep", "a-1", BASE_TS + ms, externalUserId="ana")))

    connection.close()
    ingest([body("AttendeeJoined", 0)])
    ingest([body("AttendeeVideoStarted", 1)])
    ((statement, executed),) = _prepared_here()
    assert statement.startswith("PREPARE roster_") and "INSERT INTO roster_attendee" in statement
    assert executed == 2

    connection.close()  # a new session has none: it prepares again, and the batch goes through
    ingest([body("AttendeeLeft", 2)])
    assert [executed for _, executed in _prepared_here()] == [1]
    assert Attendee.objects.get(meeting_id="m-prep").presence == "left"

    settings.INGEST_PREPARED_STATEMENTS = False  # behind a transaction-mode pooler
    connection.close()
    ingest([body("AttendeeJoined", 3)])
    assert _prepared_here() == []
    assert Attendee.objects.get(meeting_id="m-prep").presence == "joined"


def test_a_prepared_statement_text_holds_no_percent_sign_but_its_placeholders():
    with pytest.raises(ValueError, match="placeholders"):
        _prepared("SELECT %s WHERE x LIKE 'a%%'", 1)
    name, prepare = _prepared("SELECT %s, %s", 2)
    assert prepare == f"PREPARE {name} AS SELECT $1, $2"
