"""The feed protocol's decisions alone (roster.live.protocol): no Redis, no database, no event loop.

Which client messages are valid and the error each bad one gets, snapshot or changes, and what
each broadcast message becomes: forwarded once in seq order, dropped (duplicate, out of scope,
not followed) or a gap to repair. The I/O around them (join before read, one turn at a time) is
tested through the real ASGI app in tests/consumers/test_feed.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import pytest

from roster.live.protocol import (
    DELTA_TYPE,
    FAMILY_TYPE,
    GROUP_ALL,
    GROUP_LIST,
    MAX_LISTED,
    SUMMARY_TYPE,
    BadRequest,
    Family,
    FeedSession,
    First,
    Gap,
    Subscription,
    family_group,
    family_text,
    frame,
    frame_of_json,
    meeting_group,
    request_parse,
    subscription_parse,
    unsubscription_parse,
)
from roster.read.serializers import ChangeShown

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)


@dataclass(frozen=True)
class GlobAccess:
    glob: str

    def allows(
        self,
        *,
        meeting_id: str,
        external_meeting_id: str = "",
        primary_meeting_id: str | None = None,
        primary_external_meeting_id: str = "",
    ) -> bool:
        ids = (meeting_id, external_meeting_id, primary_meeting_id or "", primary_external_meeting_id)
        return any(value and fnmatchcase(value, self.glob) for value in ids)


def scopes(externals: dict[str, str]) -> dict[str, dict[str, str]]:
    """What the socket reads for a rescope (roster.read.selectors.meetings_scope_ids)."""
    return {meeting_id: {"external_meeting_id": external} for meeting_id, external in externals.items()}


def session(glob: str = "*", **state: Any) -> FeedSession:
    feed = FeedSession(**state)
    assert json.loads(feed.hello(GlobAccess(glob), heartbeat_seconds=20.0)) == {
        "type": "hello",
        "protocol": 1,
        "heartbeat_seconds": 20.0,
    }
    return feed


def broadcast(meeting_id: str, seq: int, *, external: str = "", kind: str = DELTA_TYPE) -> dict[str, Any]:
    """A broadcaster message as roster.live.broadcast.change_messages makes it."""
    meeting = {"meeting_id": meeting_id, "external_meeting_id": external or meeting_id, "seq": seq}
    attendees = [{"attendee_id": f"a{seq}", "seq": seq}] if kind == DELTA_TYPE else []
    return {
        "type": kind,
        "meeting_id": meeting_id,
        "external_meeting_id": external or meeting_id,
        "seq": seq,
        "text": frame("delta", meeting, attendees),
    }


# --- client messages -------------------------------------------------------------------------


def parsed(text: str | None, *, authenticated: bool = True) -> Any:
    message = request_parse(text, authenticated=authenticated)
    if message["type"] == "subscribe":
        return subscription_parse(message)
    if message["type"] == "unsubscribe":
        return unsubscription_parse(message)
    return message


@pytest.mark.parametrize(
    "attendees",
    [
        [],
        [
            {
                "attendee_id": "a1",
                "external_user_id": 'Zoë "z" <b>',
                "seq": 3,
                "video": True,
                "joined_ms": None,
            }
        ],
    ],
)
def test_a_delta_built_around_the_changes_own_json_is_the_frame_character_for_character(attendees):
    """The broadcaster (and the hook outbox) serialise a change once and build around its text:
    the frame must be exactly what serialising the whole would give (clients and resume compare)."""
    meeting = {"meeting_id": "m-1", "external_meeting_id": "ext é", "seq": 3, "pipelines": {"p": "x"}}
    shown = ChangeShown.of(meeting=meeting, attendees=attendees)
    assert frame_of_json("delta", shown.meeting_json, shown.attendees_json) == frame(
        "delta", meeting, attendees
    )
    assert frame_of_json("delta", shown.meeting_json, "[]") == frame("delta", meeting, [])


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (None, "bad_message"),
        ("{not json", "bad_json"),
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
        ('{"type": "subscribe", "meetings": "*", "snapshots": false}', "bad_message"),
        ('{"type": "subscribe", "meetings": ["m"], "attendees": false, "snapshots": false}', "bad_message"),
        ('{"type": "subscribe", "meetings": "*", "attendees": false, "snapshots": 0}', "bad_message"),
    ],
)
def test_a_bad_request_gets_its_error_code(text, code):
    with pytest.raises(BadRequest) as bad:
        parsed(text)
    error = json.loads(bad.value.text())
    assert error["type"] == "error" and error["code"] == code and error["message"]


def test_error_messages_name_what_is_wrong():
    with pytest.raises(BadRequest) as unknown:
        parsed('{"type": "dance"}')
    assert json.loads(unknown.value.text()) == {
        "type": "error",
        "code": "unknown_type",
        "message": "unknown message type 'dance'",
    }
    with pytest.raises(BadRequest) as empty:
        parsed('{"type": "subscribe", "meetings": []}')
    assert str(empty.value) == '"meetings" is "*" or a list of 1 to 1000 meeting ids'


def test_only_auth_is_heard_before_authentication():
    assert parsed('{"type": "auth", "token": "t"}', authenticated=False) == {"type": "auth", "token": "t"}
    for text in ('{"type": "subscribe", "meetings": "*"}', '{"type": "dance"}', '{"type": "ping"}'):
        with pytest.raises(BadRequest) as bad:
            parsed(text, authenticated=False)
        assert bad.value.code == "unauthenticated"
        assert str(bad.value) == 'send {"type": "auth", "token": "..."} first'


def test_subscriptions_and_unsubscriptions_read_as_they_are_meant():
    assert parsed('{"type": "subscribe", "meetings": ["m-1", "m-2"], "since": {"m-1": 3}}') == Subscription(
        meetings=["m-1", "m-2"], since={"m-1": 3}, with_attendees=True
    )
    assert parsed('{"type": "subscribe", "meetings": "*", "attendees": false}') == Subscription(
        meetings=None, since={}, with_attendees=False
    )
    assert parsed(
        '{"type": "subscribe", "meetings": "*", "attendees": false, "snapshots": false, "since": {"m": 2}}'
    ) == Subscription(meetings=None, since={"m": 2}, with_attendees=False, snapshots=False)
    # A list subscription always carries attendees: "attendees": false is for meeting lists.
    assert parsed('{"type": "subscribe", "meetings": ["m"], "attendees": false}').with_attendees
    assert parsed('{"type": "unsubscribe", "meetings": "*"}') is None
    assert parsed('{"type": "unsubscribe", "meetings": ["m"]}') == ["m"]


def test_follow_and_unfollow_name_the_groups_and_keep_the_modes():
    feed = session()
    assert feed.follow(Subscription(meetings=None, since={}, with_attendees=True)) == GROUP_ALL
    assert feed.follow(Subscription(meetings=None, since={}, with_attendees=False)) == GROUP_LIST
    assert feed.follow_all and feed.follow_list
    feed.listed.update({"m-1", "m-2"})
    assert feed.unfollow(["m-1"]) == [meeting_group("m-1")] and feed.listed == {"m-2"}
    assert feed.unfollow(None) == [GROUP_ALL, GROUP_LIST]
    assert not feed.follow_all and not feed.follow_list and feed.listed == {"m-2"}


# --- catch-ups -------------------------------------------------------------------------------


def roster(meeting_id: str, seq: int, since: int | None) -> dict[str, Any]:
    """What roster_read gives: one attendee per seq (``a<n>`` changed at seq n)."""
    first = 1 if since is None else since + 1
    return {
        "meeting": {"meeting_id": meeting_id, "seq": seq},
        "attendees": [{"attendee_id": f"a{n}", "seq": n} for n in range(first, seq + 1)],
    }


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
    feed = session()
    assert feed.catch_up(seq=5, since=since, with_attendees=True) == read_since
    answer = json.loads(feed.caught_up(roster("m", 5, read_since), seq=5, since=since, with_attendees=True))
    assert answer["type"] == kind and [a["attendee_id"] for a in answer["attendees"]] == attendees
    assert feed.seqs == {"m": 5}


def test_a_since_ahead_of_what_the_read_found_gives_a_snapshot():
    # The meeting's seq was 8 when listed; the roster read, a moment later, says 6.
    feed = session()
    assert json.loads(feed.caught_up(roster("m", 6, 7), seq=8, since=7, with_attendees=True))["type"] == (
        "snapshot"
    )
    assert feed.seqs == {"m": 6}


def test_a_meeting_list_catches_up_without_attendees_even_with_since():
    feed = session()
    assert feed.catch_up(seq=4, since=2, with_attendees=False) is None  # nothing to read since
    answer = json.loads(feed.caught_up(roster("m", 4, None), seq=4, since=2, with_attendees=False))
    assert answer["type"] == "changes" and answer["attendees"] == [] and answer["meeting"]["seq"] == 4


# --- broadcast messages ----------------------------------------------------------------------


def test_deltas_are_forwarded_once_in_seq_order_and_duplicates_dropped():
    feed = session(listed={"m"}, seqs={"m": 5})
    assert feed.judge(broadcast("m", 4)) is None
    assert feed.judge(broadcast("m", 5)) is None  # the snapshot had it
    delta = broadcast("m", 6)
    assert feed.judge(delta) is delta["text"]  # the broadcaster's text, as is
    assert feed.judge(broadcast("m", 6)) is None
    assert feed.seqs == {"m": 6}


def test_a_gap_is_judged_as_such_and_nothing_is_forwarded():
    feed = session(listed={"m"}, seqs={"m": 5})
    assert feed.judge(broadcast("m", 7)) == Gap(meeting_id="m", held=5, with_attendees=True)
    assert feed.seqs == {"m": 5}
    assert feed.catch_up(seq=8, since=5, with_attendees=True) == 5  # the repair reads changes since 5
    feed.caught_up(roster("m", 8, 5), seq=8, since=5, with_attendees=True)
    assert feed.judge(broadcast("m", 8)) is None  # the catch-up had it
    assert feed.judge(broadcast("m", 9)) is not None


def test_star_forwards_meetings_in_scope_only_and_new_meetings_from_seq_1():
    feed = session("sales-*", follow_all=True, seqs={"m-1": 3})
    assert feed.judge(broadcast("m-2", 1, external="board")) is None
    assert feed.judge(broadcast("m-1", 4, external="sales-emea")) is not None
    assert feed.judge(broadcast("m-3", 1, external="sales-apac")) is not None
    assert feed.judge(broadcast("m-4", 2, external="sales-x")) == Gap("m-4", None, True)
    assert feed.judge(broadcast("m-1", 5, external="sales-emea", kind=SUMMARY_TYPE)) is None  # full comes


def test_summaries_serve_meeting_lists_only_when_no_full_delta_comes():
    feed = session(listed={"m-1"}, seqs={"m-1": 1, "m-2": 1})
    assert feed.judge(broadcast("m-2", 2, kind=SUMMARY_TYPE)) is None  # not following lists
    feed.follow_list = True
    assert feed.judge(broadcast("m-1", 2, kind=SUMMARY_TYPE)) is None  # listed: full deltas
    assert feed.judge(broadcast("m-1", 2)) is not None
    assert feed.judge(broadcast("m-2", 2, kind=SUMMARY_TYPE)) is not None
    assert feed.judge(broadcast("m-2", 3)) is None  # a full delta of an unlisted meeting
    feed.follow_all = True
    assert feed.judge(broadcast("m-2", 3, kind=SUMMARY_TYPE)) is None  # full deltas now
    assert feed.judge(broadcast("m-2", 3)) is not None

    scoped = session("sales-*", follow_list=True)
    assert scoped.judge(broadcast("m-3", 1, external="board", kind=SUMMARY_TYPE)) is None
    assert scoped.judge(broadcast("m-4", 1, external="sales-4", kind=SUMMARY_TYPE)) is not None


def test_a_list_without_snapshots_takes_each_meetings_first_object_as_is_then_checks_seqs():
    feed = session("sales-*")
    feed.follow(Subscription(meetings=None, since={}, with_attendees=False, snapshots=False))
    feed.hold("m-1", 4)  # a row the client shows, current
    assert feed.judge(broadcast("m-9", 7, external="sales-9", kind=SUMMARY_TYPE)) is not None  # no Gap
    assert feed.judge(broadcast("m-9", 7, external="sales-9", kind=SUMMARY_TYPE)) is None  # duplicate
    assert feed.judge(broadcast("m-9", 9, external="sales-9", kind=SUMMARY_TYPE)) == Gap("m-9", 7, False)
    assert feed.judge(broadcast("m-1", 6, external="sales-1", kind=SUMMARY_TYPE)) == Gap("m-1", 4, False)
    assert feed.judge(broadcast("m-2", 3, external="board", kind=SUMMARY_TYPE)) is None  # out of scope

    with_snapshots = session("sales-*", follow_list=True)  # the default: a catch-up when unheld
    assert with_snapshots.judge(broadcast("m-9", 7, external="sales-9", kind=SUMMARY_TYPE)) == Gap(
        "m-9", None, False
    )
    feed.unfollow(None)
    assert not feed.list_unheld


def test_a_meetings_first_message_is_checked_before_it_is_sent_then_forwarded_as_is():
    feed = session("sales-*", follow_all=True)
    first = broadcast("m-1", 1, external="sales-1")
    assert feed.judge(first) == First(
        "m-1", {"external_meeting_id": "sales-1"}, first["text"]
    )  # the socket checks it
    assert feed.judge(broadcast("m-1", 1, external="sales-1")) is None  # held meanwhile
    second = broadcast("m-1", 2, external="sales-1")
    assert feed.judge(second) is second["text"]
    feed.forget("m-1")  # the check failed: nothing held, the next is a gap repaired from the database
    assert feed.judge(broadcast("m-1", 3, external="sales-1")) == Gap("m-1", None, True)


def test_unknown_broadcast_types_and_unfollowed_meetings_are_ignored():
    feed = session(listed={"m"})
    assert feed.judge({"type": "roster.other"}) is None  # whatever else it carries
    assert feed.judge(broadcast("other", 1)) is None
    assert feed.judge(broadcast("m", 1)) is not None
    feed.unfollow(["m"])
    assert feed.judge(broadcast("m", 2)) is None


def test_nothing_is_forwarded_before_authentication():
    feed = FeedSession(follow_all=True, follow_list=True)
    assert feed.judge(broadcast("m", 1)) is None
    assert feed.judge(broadcast("m", 1, kind=SUMMARY_TYPE)) is None


# --- a scope that changed (a rule removed or added) --------------------------------------------


def test_a_narrower_scope_unsubscribes_what_left_it_and_forgets_it():
    feed = session("sales-*", listed={"m-1", "m-2"}, seqs={"m-1": 4, "m-2": 7})
    externals = {"m-1": "sales-emea", "m-2": "sales-board"}
    gone, groups = feed.rescope(GlobAccess("sales-emea"), scopes(externals))
    assert gone == ["m-2"] and groups == [meeting_group("m-2")]
    assert feed.listed == {"m-1"} and feed.seqs == {"m-1": 4}
    assert feed.judge(broadcast("m-2", 8, external="sales-board")) is None  # never forwarded again
    assert feed.judge(broadcast("m-1", 5, external="sales-emea")) is not None


def test_a_star_follower_loses_the_meetings_it_held_and_later_ones_outside():
    feed = session("*", follow_all=True, seqs={"m-1": 3, "m-2": 5})
    gone, groups = feed.rescope(GlobAccess("sales-*"), scopes({"m-1": "sales-1", "m-2": "board"}))
    assert gone == ["m-2"] and groups == []  # "*" keeps its group: the new scope filters it
    assert feed.seqs == {"m-1": 3}
    assert feed.judge(broadcast("m-2", 6, external="board")) is None
    assert feed.judge(broadcast("m-9", 1, external="board")) is None  # a new meeting outside
    assert feed.judge(broadcast("m-1", 4, external="sales-1")) is not None


def test_meetings_not_followed_are_forgotten_without_an_unsubscribed():
    feed = session("*", listed={"m-1"}, seqs={"m-1": 2, "m-2": 9})  # m-2: held, then unsubscribed
    gone, groups = feed.rescope(GlobAccess("nothing"), scopes({"m-1": "a", "m-2": "b"}))
    assert gone == ["m-1"] and groups == [meeting_group("m-1")]
    assert feed.seqs == {} and feed.listed == set()


def test_a_wider_scope_drops_nothing_and_a_meeting_back_in_scope_starts_from_a_snapshot():
    feed = session("sales-*", follow_all=True, seqs={"m-1": 3})
    assert feed.rescope(GlobAccess("board"), scopes({"m-1": "sales-1"})) == (["m-1"], [])
    assert feed.rescope(GlobAccess("*"), scopes({})) == ([], [])
    assert feed.judge(broadcast("m-1", 4, external="sales-1")) == Gap("m-1", None, True)  # a catch-up


def test_a_meeting_is_judged_by_its_external_id_or_its_meeting_id():
    feed = session("*", listed={"room-1", "m-2"}, seqs={"room-1": 1, "m-2": 1})
    gone, _ = feed.rescope(GlobAccess("room-*"), scopes({"m-2": "room-2"}))  # room-1 unknown: by its id
    assert gone == [] and feed.known() == ["m-2", "room-1"]


# --- families (shared/ROSTER.md "Meeting families") ---------------------------------------------


def family_message(primary: str, version: int, replicas: dict[str, int], *, external: str = "") -> dict:
    """A broadcaster family message as roster.live.broadcast.family_messages makes it."""
    figures = {
        "primary_meeting_id": primary,
        "family_joined": sum(replicas.values()),
        "family_peak_joined": sum(replicas.values()),
        "replicas": [{"meeting_id": m, "joined": n} for m, n in replicas.items()],
    }
    return {
        "type": FAMILY_TYPE,
        "primary_meeting_id": primary,
        "external_meeting_id": external or primary,
        "version": version,
        "text": family_text(figures),
    }


def test_family_subscriptions_parse():
    sub = parsed('{"type": "subscribe", "meetings": ["p"], "family": true}')
    assert (sub.meetings, sub.family, sub.families) == (["p"], True, [])
    sub = parsed('{"type": "subscribe", "families": ["p"]}')
    assert (sub.meetings, sub.family, sub.families) == ([], False, ["p"])
    sub = parsed('{"type": "subscribe", "meetings": "*", "attendees": false, "families": ["p"]}')
    assert (sub.meetings, sub.with_attendees, sub.families) == (None, False, ["p"])
    for bad in ('{"meetings": "*", "family": true}', '{"meetings": ["p"], "family": 1}', '{"families": "p"}'):
        with pytest.raises(BadRequest):
            parsed(json.dumps({"type": "subscribe", **json.loads(bad)}))


def test_family_frames_are_sent_when_they_change_and_new_replicas_are_followed():
    feed = session("webinar-*", listed={"p"})
    assert feed.family_start("p", follow=True) == family_group("p")
    first = feed.judge(family_message("p", 5, {"r1": 2}, external="webinar-1"))
    assert first == Family("p", first.text, ["r1"]) and feed.listed == {"p", "r1"}
    assert feed.judge(family_message("p", 6, {"r1": 2}, external="webinar-1")) is None  # same figures
    later = feed.judge(family_message("p", 9, {"r1": 3, "r2": 1}, external="webinar-1"))
    assert later.join == ["r2"] and json.loads(later.text)["type"] == "family"
    assert feed.judge(family_message("p", 7, {"r1": 1}, external="webinar-1")) is None  # older, late
    assert feed.judge(family_message("q", 1, {"r9": 1}, external="webinar-2")) is None  # not followed
    figures_only = session("*")
    figures_only.family_start("p", follow=False)
    assert figures_only.judge(family_message("p", 1, {"r1": 1})).join == []  # replicas not followed


def test_a_replica_is_in_scope_through_its_primary_and_its_family_leaves_with_it():
    feed = session("webinar-*", follow_all=True)
    replica = broadcast("r1", 1, external="overflow-1")
    assert feed.judge(replica) is None  # out of scope on its own
    replica |= {"primary_meeting_id": "p", "primary_external_meeting_id": "webinar-1"}
    judged = feed.judge(replica)
    assert judged.scope["primary_external_meeting_id"] == "webinar-1"  # the socket checks it
    feed.listed.add("p")
    feed.family_start("p", follow=True)
    gone, groups = feed.rescope(GlobAccess("other-*"), {"p": {"external_meeting_id": "webinar-1"}})
    assert gone == ["p", "r1"] and groups == [family_group("p"), meeting_group("p")]
    assert (
        feed.families == set() and feed.judge(family_message("p", 9, {"r1": 1}, external="webinar-1")) is None
    )
