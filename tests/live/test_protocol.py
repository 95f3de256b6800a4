"""The feed protocol's state machine alone (roster.live.protocol): no Redis, no database, no event
loop. A fake world answers its reads the way the socket (consumers.roster_socket) does; the tests
check its decisions: auth flow, bad requests, subscribe order, snapshot or changes, duplicates,
gaps and their repair, and the scope filtering of "*"."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import pytest

from roster.live.protocol import (
    CLOSE_UNAUTHENTICATED,
    DELTA_TYPE,
    GROUP_ALL,
    GROUP_LIST,
    MAX_LISTED,
    SUMMARY_TYPE,
    Accept,
    AuthDeadline,
    CatchUp,
    Close,
    FeedProtocol,
    Gap,
    Heartbeats,
    Join,
    Leave,
    MeetingsRead,
    Send,
    SessionAccess,
    Steps,
    TokenCheck,
    frame,
    meeting_group,
)

NOW_MS = 1_700_000_000_123


@dataclass(frozen=True)
class GlobAccess:
    glob: str

    def allows(self, *, meeting_id: str, external_meeting_id: str = "") -> bool:
        return fnmatchcase(meeting_id, self.glob) or bool(
            external_meeting_id and fnmatchcase(external_meeting_id, self.glob)
        )


@dataclass
class Row:
    meeting_id: str
    external_meeting_id: str
    seq: int


@dataclass
class World:
    """The database as the protocol's reads see it."""

    tokens: dict[str, GlobAccess] = field(default_factory=lambda: {"good": GlobAccess("*")})
    rows: dict[str, Row] = field(default_factory=dict)

    def meeting_add(self, meeting_id: str, *, external: str = "", seq: int = 0) -> Row:
        self.rows[meeting_id] = Row(meeting_id, external or meeting_id, seq)
        return self.rows[meeting_id]

    def meetings_read(self, access: GlobAccess, meeting_ids: list[str] | None) -> list[Row | None]:
        def visible(row: Row | None) -> bool:
            return row is not None and access.allows(
                meeting_id=row.meeting_id, external_meeting_id=row.external_meeting_id
            )

        if meeting_ids is None:
            return [row for row in self.rows.values() if visible(row)]
        return [self.rows[m] if visible(self.rows.get(m)) else None for m in meeting_ids]

    def roster_read(self, meeting_id: str, since: int | None) -> dict[str, Any]:
        """One attendee per seq: attendee ``a<n>`` changed at seq n."""
        row = self.rows[meeting_id]
        meeting = {"meeting_id": meeting_id, "external_meeting_id": row.external_meeting_id, "seq": row.seq}
        first = 1 if since is None else since + 1
        return {
            "meeting": meeting,
            "attendees": [{"attendee_id": f"a{n}", "seq": n} for n in range(first, row.seq + 1)],
        }


def run(protocol: FeedProtocol, steps: Steps, world: World) -> list[Any]:
    """Perform ``steps`` as the socket does; every effect in order, each CatchUp followed by the
    Send of the frame made of its read."""
    record: list[Any] = []
    answer = None
    while True:
        try:
            effect = steps.send(answer)
        except StopIteration:
            return record
        record.append(effect)
        answer = None
        match effect:
            case TokenCheck(token):
                answer = world.tokens.get(token)
            case SessionAccess():
                answer = GlobAccess("*")
            case MeetingsRead(access, meeting_ids):
                answer = world.meetings_read(access, meeting_ids)
            case CatchUp(meeting, _, read_since, _):
                roster = world.roster_read(meeting.meeting_id, read_since)
                record.append(Send(protocol.caught_up(effect, roster)))


def sent(record: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(effect.text) for effect in record if isinstance(effect, Send)]


def feed_protocol() -> FeedProtocol:
    return FeedProtocol(allow_token=True, allow_session=False, clock_ms=lambda: NOW_MS)


def authenticated(world: World, glob: str = "*") -> FeedProtocol:
    world.tokens[glob] = GlobAccess(glob)
    protocol = feed_protocol()
    run(protocol, protocol.connect(bearer=glob, user=None), world)
    assert protocol.access == GlobAccess(glob)
    return protocol


def request(protocol: FeedProtocol, world: World, message: dict[str, Any] | str) -> list[Any]:
    text = message if isinstance(message, str) else json.dumps(message)
    return run(protocol, protocol.client_message(text), world)


def broadcast(row: Row, seq: int, *, kind: str = DELTA_TYPE) -> dict[str, Any]:
    """A broadcaster message as roster.live.broadcast.change_messages makes it."""
    meeting = {"meeting_id": row.meeting_id, "external_meeting_id": row.external_meeting_id, "seq": seq}
    attendees = [{"attendee_id": f"a{seq}", "seq": seq}] if kind == DELTA_TYPE else []
    return {
        "type": kind,
        "meeting_id": row.meeting_id,
        "external_meeting_id": row.external_meeting_id,
        "seq": seq,
        "text": frame("delta", meeting, attendees),
    }


# --- authentication --------------------------------------------------------------------------

HELLO = {"type": "hello", "protocol": 1, "heartbeat_seconds": 20.0}


def test_a_token_in_the_header_is_checked_before_the_handshake_is_accepted():
    protocol, world = feed_protocol(), World()
    record = run(protocol, protocol.connect(bearer="good", user=None), world)
    assert record[:2] == [TokenCheck("good"), Accept()]
    assert sent(record) == [HELLO]
    assert record[-1] == Heartbeats(20.0)


@pytest.mark.parametrize("bearer", ["crt_wrong", ""])  # "": an Authorization header naming no token
def test_a_bad_header_token_refuses_the_handshake(bearer):
    protocol = feed_protocol()
    record = run(protocol, protocol.connect(bearer=bearer, user=None), World())
    assert record == [TokenCheck(bearer), Close(CLOSE_UNAUTHENTICATED)]
    assert protocol.access is None


def test_without_credentials_the_socket_waits_for_an_auth_message():
    protocol, world = feed_protocol(), World()
    assert run(protocol, protocol.connect(bearer=None, user=None), world) == [Accept(), AuthDeadline(10.0)]

    (error,) = sent(request(protocol, world, {"type": "subscribe", "meetings": "*"}))
    assert error["code"] == "unauthenticated"
    assert protocol.groups == set()

    record = request(protocol, world, {"type": "auth", "token": "good"})
    assert record[0] == TokenCheck("good") and sent(record) == [HELLO] and record[-1] == Heartbeats(20.0)
    assert run(protocol, protocol.auth_expired(), world) == []  # the deadline passes quietly

    (again,) = sent(request(protocol, world, {"type": "auth", "token": "good"}))
    assert again["code"] == "already_authenticated"


@pytest.mark.parametrize("token", ["crt_wrong", 42, None])
def test_a_bad_auth_message_gets_bad_token_then_close(token):
    protocol, world = feed_protocol(), World()
    run(protocol, protocol.connect(bearer=None, user=None), world)
    record = request(protocol, world, {"type": "auth", "token": token})
    assert record[-1] == Close(CLOSE_UNAUTHENTICATED)
    assert [e["code"] for e in sent(record)] == ["bad_token"]
    assert (TokenCheck(token) in record) == isinstance(token, str)  # only strings are looked up


def test_no_credentials_in_time_closes_with_4401():
    protocol, world = feed_protocol(), World()
    run(protocol, protocol.connect(bearer=None, user=None), world)
    record = run(protocol, protocol.auth_expired(), world)
    assert sent(record) == [{"type": "error", "code": "unauthenticated", "message": "no credentials in time"}]
    assert record[-1] == Close(CLOSE_UNAUTHENTICATED)


def test_a_session_socket_uses_the_session_and_refuses_anything_else():
    user = object()
    protocol = FeedProtocol(allow_token=False, allow_session=True)
    record = run(protocol, protocol.connect(bearer="good", user=user), World())
    assert record[:2] == [SessionAccess(user), Accept()] and sent(record) == [HELLO]

    refused = FeedProtocol(allow_token=False, allow_session=True)
    assert run(refused, refused.connect(bearer="good", user=None), World()) == [Close(CLOSE_UNAUTHENTICATED)]
    (error,) = sent(request(refused, World(), {"type": "auth", "token": "good"}))
    assert error["code"] == "bad_message"


# --- bad requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (None, "bad_message"),  # a binary frame
        ("not json", "bad_json"),
        ("[1]", "bad_message"),
        ('{"type": 5}', "bad_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "subscribe"}', "bad_meetings"),
        ('{"type": "subscribe", "meetings": 5}', "bad_meetings"),
        ('{"type": "subscribe", "meetings": []}', "bad_meetings"),
        ('{"type": "subscribe", "meetings": ["m", ""]}', "bad_meetings"),
        (
            json.dumps({"type": "subscribe", "meetings": [f"m{i}" for i in range(MAX_LISTED + 1)]}),
            "bad_meetings",
        ),
        ('{"type": "subscribe", "meetings": ["m"], "since": {"m": "3"}}', "bad_since"),
        ('{"type": "subscribe", "meetings": ["m"], "since": {"m": -1}}', "bad_since"),
        ('{"type": "subscribe", "meetings": ["m"], "since": {"m": true}}', "bad_since"),
        ('{"type": "subscribe", "meetings": ["m"], "since": [1]}', "bad_since"),
        ('{"type": "subscribe", "meetings": ["m"], "attendees": "yes"}', "bad_message"),
        ('{"type": "unsubscribe", "meetings": [1]}', "bad_meetings"),
        ('{"type": "auth", "token": "good"}', "already_authenticated"),
    ],
)
def test_a_bad_request_gets_one_error_and_changes_nothing(text, code):
    world = World()
    world.meeting_add("m", seq=3)
    protocol = authenticated(world)
    record = run(protocol, protocol.client_message(text), world)
    assert len(record) == 1
    (error,) = sent(record)
    assert error["type"] == "error" and error["code"] == code and error["message"]
    assert protocol.groups == set() and protocol.listed == set() and protocol.seqs == {}


def test_error_messages_name_what_is_wrong():
    protocol, world = authenticated(World()), World()
    assert sent(request(protocol, world, '{"type": "dance"}')) == [
        {"type": "error", "code": "unknown_type", "message": "unknown message type 'dance'"}
    ]
    assert sent(request(protocol, world, {"type": "subscribe", "meetings": []})) == [
        {
            "type": "error",
            "code": "bad_meetings",
            "message": '"meetings" is "*" or a list of 1 to 1000 meeting ids',
        }
    ]


def test_ping_and_heartbeat_carry_the_time():
    protocol, world = authenticated(World()), World()
    assert sent(request(protocol, world, {"type": "ping"})) == [{"type": "pong", "time": NOW_MS}]
    assert json.loads(protocol.heartbeat()) == {"type": "heartbeat", "time": NOW_MS}


# --- subscribe and catch-ups -----------------------------------------------------------------


def test_subscribe_by_id_joins_before_reading_and_answers_in_the_listed_order():
    world = World()
    world.meeting_add("m-1", external="sales-1", seq=3)
    world.meeting_add("m-2", external="board", seq=2)  # out of the token's scope
    world.meeting_add("m-3", external="sales-3", seq=1)
    protocol = authenticated(world, "sales-*")
    record = request(protocol, world, {"type": "subscribe", "meetings": ["m-1", "nope", "m-2", "m-3"]})
    assert record[0] == MeetingsRead(GlobAccess("sales-*"), ["m-1", "nope", "m-2", "m-3"])
    effects = [type(e).__name__ for e in record[1:]]
    assert effects == ["Join", "CatchUp", "Send", "Send", "Send", "Join", "CatchUp", "Send"]
    assert record[1] == Join(meeting_group("m-1")) and record[6] == Join(meeting_group("m-3"))
    frames = sent(record)
    assert [f["type"] for f in frames] == ["snapshot", "error", "error", "snapshot"]
    assert frames[0]["meeting"]["seq"] == 3 and len(frames[0]["attendees"]) == 3
    assert frames[1] == {
        "type": "error",
        "code": "not_found",
        "message": "no meeting 'nope'",
        "meeting_id": "nope",
    }
    assert frames[2]["meeting_id"] == "m-2"  # out of scope looks exactly like absent
    assert protocol.listed == {"m-1", "m-3"} and protocol.seqs == {"m-1": 3, "m-3": 1}

    again = request(protocol, world, {"type": "subscribe", "meetings": ["m-1"]})
    assert not any(isinstance(e, Join) for e in again)  # already in the group


@pytest.mark.parametrize(
    ("since", "kind", "read_since", "attendees"),
    [
        (None, "snapshot", None, ["a1", "a2", "a3", "a4", "a5"]),
        (3, "changes", 3, ["a4", "a5"]),
        (5, "changes", 5, []),
        (0, "changes", 0, ["a1", "a2", "a3", "a4", "a5"]),
        (6, "snapshot", None, ["a1", "a2", "a3", "a4", "a5"]),  # ahead of the server: not usable
    ],
)
def test_since_gives_changes_when_usable_else_a_snapshot(since, kind, read_since, attendees):
    world = World()
    world.meeting_add("m", seq=5)
    protocol = authenticated(world)
    message: dict[str, Any] = {"type": "subscribe", "meetings": ["m"]}
    if since is not None:
        message["since"] = {"m": since}
    record = request(protocol, world, message)
    (catch_up,) = [e for e in record if isinstance(e, CatchUp)]
    assert catch_up.read_since == read_since
    (answer,) = sent(record)
    assert answer["type"] == kind and [a["attendee_id"] for a in answer["attendees"]] == attendees
    assert protocol.seqs == {"m": 5}


def test_a_since_ahead_of_what_the_read_found_gives_a_snapshot():
    # The meeting's seq was 8 when listed; the roster read (a moment later, another replica?) says 6.
    protocol = authenticated(World())
    catch_up = CatchUp(meeting=Row("m", "m", 8), since=7, read_since=7, with_attendees=True)
    roster = {"meeting": {"meeting_id": "m", "seq": 6}, "attendees": [{"attendee_id": "a6"}]}
    assert json.loads(protocol.caught_up(catch_up, roster))["type"] == "snapshot"
    assert protocol.seqs == {"m": 6}


def test_star_joins_its_group_first_then_catches_up_every_meeting_in_scope():
    world = World()
    world.meeting_add("m-1", external="sales-1", seq=2)
    world.meeting_add("m-2", external="board", seq=4)
    world.meeting_add("m-3", external="sales-3", seq=6)
    protocol = authenticated(world, "sales-*")
    record = request(protocol, world, {"type": "subscribe", "meetings": "*", "since": {"m-3": 5}})
    assert record[:2] == [Join(GROUP_ALL), MeetingsRead(GlobAccess("sales-*"), None)]
    frames = sent(record)
    assert [(f["type"], f["meeting"]["meeting_id"]) for f in frames] == [
        ("snapshot", "m-1"),
        ("changes", "m-3"),
    ]
    assert protocol.follow_all and not protocol.follow_list and protocol.listed == set()


def test_star_without_attendees_follows_meeting_objects_only():
    world = World()
    world.meeting_add("m-1", seq=4)
    protocol = authenticated(world)
    record = request(
        protocol, world, {"type": "subscribe", "meetings": "*", "attendees": False, "since": {"m-1": 2}}
    )
    assert record[0] == Join(GROUP_LIST)
    (catch_up,) = [e for e in record if isinstance(e, CatchUp)]
    assert catch_up.read_since is None  # no attendees wanted: nothing to read since
    (answer,) = sent(record)
    assert answer["type"] == "changes" and answer["attendees"] == [] and answer["meeting"]["seq"] == 4
    assert protocol.follow_list and not protocol.follow_all


# --- broadcast messages ----------------------------------------------------------------------


def listening(world: World, glob: str = "*", **subscribe: Any) -> FeedProtocol:
    protocol = authenticated(world, glob)
    request(protocol, world, {"type": "subscribe", **subscribe})
    return protocol


def test_deltas_are_forwarded_once_in_seq_order_and_duplicates_dropped():
    world = World()
    row = world.meeting_add("m", seq=5)
    protocol = listening(world, meetings=["m"])
    assert protocol.broadcast_judge(broadcast(row, 4)) is None
    assert protocol.broadcast_judge(broadcast(row, 5)) is None  # the snapshot had it
    delta = broadcast(row, 6)
    assert protocol.broadcast_judge(delta) is delta["text"]  # the broadcaster's text, as is
    assert protocol.broadcast_judge(broadcast(row, 6)) is None
    assert protocol.seqs == {"m": 6}


def test_a_gap_is_repaired_with_the_changes_since_the_held_seq():
    world = World()
    row = world.meeting_add("m", seq=5)
    protocol = listening(world, meetings=["m"])
    row.seq = 8  # 6 and 7 were committed; 6's frame was lost
    assert protocol.broadcast_judge(broadcast(row, 7)) == Gap(meeting_id="m", held=5, with_attendees=True)
    assert protocol.seqs == {"m": 5}  # nothing forwarded
    record = run(protocol, protocol.gap_repair(Gap("m", 5, True)), world)
    assert record[0] == MeetingsRead(GlobAccess("*"), ["m"])
    (changes,) = sent(record)
    assert changes["type"] == "changes" and [a["attendee_id"] for a in changes["attendees"]] == [
        "a6",
        "a7",
        "a8",
    ]
    assert protocol.seqs == {"m": 8}
    assert protocol.broadcast_judge(broadcast(row, 8)) is None  # the catch-up had it
    assert protocol.broadcast_judge(broadcast(row, 9)) is not None


def test_a_gap_in_a_meeting_that_left_the_scope_sends_nothing():
    world = World()
    row = world.meeting_add("m", seq=2)
    protocol = listening(world, meetings=["m"])
    del world.rows["m"]
    assert run(protocol, protocol.gap_repair(Gap("m", 2, True)), world) == [
        MeetingsRead(GlobAccess("*"), ["m"])
    ]
    assert protocol.seqs == {"m": 2} and row.seq == 2


def test_star_forwards_meetings_in_scope_only_and_new_meetings_from_seq_1():
    world = World()
    sales = world.meeting_add("m-1", external="sales-emea", seq=3)
    board = Row("m-2", "board", 0)
    newcomer = Row("m-3", "sales-apac", 0)
    protocol = listening(world, "sales-*", meetings="*")
    assert protocol.broadcast_judge(broadcast(board, 1)) is None
    assert protocol.broadcast_judge(broadcast(sales, 4)) is not None
    assert protocol.broadcast_judge(broadcast(newcomer, 1)) is not None
    assert protocol.broadcast_judge(broadcast(Row("m-4", "sales-x", 0), 2)) == Gap("m-4", None, True)
    assert protocol.broadcast_judge(broadcast(sales, 5, kind=SUMMARY_TYPE)) is None  # the full delta comes


def test_summaries_serve_meeting_lists_only_when_no_full_delta_comes():
    world = World()
    listed = world.meeting_add("m-1", seq=1)
    other = world.meeting_add("m-2", external="sales-2", seq=1)
    hidden = Row("m-3", "board", 0)
    protocol = listening(world, "*", meetings=["m-1"])
    assert protocol.broadcast_judge(broadcast(other, 2, kind=SUMMARY_TYPE)) is None  # not following lists
    request(protocol, world, {"type": "subscribe", "meetings": "*", "attendees": False})
    assert protocol.broadcast_judge(broadcast(listed, 2, kind=SUMMARY_TYPE)) is None  # listed: full deltas
    assert protocol.broadcast_judge(broadcast(listed, 2)) is not None
    assert protocol.broadcast_judge(broadcast(other, 2, kind=SUMMARY_TYPE)) is not None
    assert protocol.broadcast_judge(broadcast(other, 3)) is None  # a full delta of an unlisted meeting
    request(protocol, world, {"type": "subscribe", "meetings": "*"})
    assert protocol.broadcast_judge(broadcast(other, 3, kind=SUMMARY_TYPE)) is None  # full deltas now
    assert protocol.broadcast_judge(broadcast(other, 3)) is not None

    scoped = listening(World(), "sales-*", meetings="*", attendees=False)
    assert scoped.broadcast_judge(broadcast(hidden, 1, kind=SUMMARY_TYPE)) is None
    assert scoped.broadcast_judge(broadcast(Row("m-4", "sales-4", 0), 1, kind=SUMMARY_TYPE)) is not None


def test_unknown_broadcast_types_are_ignored():
    world = World()
    row = world.meeting_add("m", seq=0)
    protocol = listening(world, meetings=["m"])
    assert protocol.broadcast_judge({"type": "roster.other"}) is None  # whatever else it carries
    assert protocol.broadcast_judge(broadcast(row, 1)) is not None


def test_unsubscribe_leaves_groups_joined_and_stops_forwarding():
    world = World()
    row = world.meeting_add("m", seq=1)
    protocol = listening(world, meetings=["m"])
    request(protocol, world, {"type": "subscribe", "meetings": "*"})
    assert protocol.groups == {meeting_group("m"), GROUP_ALL}

    assert request(protocol, world, {"type": "unsubscribe", "meetings": ["m", "never"]}) == [
        Leave(meeting_group("m"))
    ]
    assert protocol.broadcast_judge(broadcast(row, 2)) is not None  # still followed through "*"
    assert request(protocol, world, {"type": "unsubscribe", "meetings": "*"}) == [Leave(GROUP_ALL)]
    assert protocol.groups == set() and not protocol.follow_all
    assert protocol.broadcast_judge(broadcast(row, 3)) is None
