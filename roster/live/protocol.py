"""The roster socket protocol v1 (docs/feed.md) without I/O: its state and every decision.

A :class:`FeedSession` per socket knows what its client may see, follows and holds (the highest
``seq`` per meeting), and decides which client messages are valid, snapshot or changes, and what
each broadcast message becomes (forwarded, dropped, or a :class:`Gap` to repair from the
database). The socket (consumers.roster_socket) does the I/O in the order the protocol needs.
The broadcaster shares the group names, message types and frame format defined here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

PROTOCOL = 1
MAX_LISTED = 1000
CLOSE_UNAUTHENTICATED = 4401
CLOSE_REVOKED = 4403  # after an error "revoked": the token, user or host link ended

GROUP_ALL = "roster.all"  # full deltas of every meeting ("*" subscribers, filtered by access)
GROUP_LIST = "roster.list"  # meeting-only deltas (meeting lists)
DELTA_TYPE = "roster.delta"  # a broadcast message carrying a full delta frame
SUMMARY_TYPE = "roster.summary"  # a broadcast message carrying a meeting-only delta frame
FAMILY_TYPE = "roster.family"  # a broadcast message carrying a family frame (figures of a primary)
REQUESTS = ("auth", "subscribe", "unsubscribe", "ping")


def meeting_group(meeting_id: str) -> str:
    """A channel-layer group name (ASCII, bounded) for one meeting's full deltas."""
    return "roster.m." + hashlib.sha1(meeting_id.encode("utf-8")).hexdigest()[:24]


def family_group(primary_meeting_id: str) -> str:
    """The group of a family's frames (its primary's id)."""
    return "roster.f." + hashlib.sha1(primary_meeting_id.encode("utf-8")).hexdigest()[:24]


def family_text(figures: Mapping[str, Any]) -> str:
    """A ``family`` frame (roster.domain.family.FamilyFigures.frame_fields)."""
    return json.dumps({"type": "family", **figures}, separators=(",", ":"))


def frame(kind: str, meeting: dict[str, Any], attendees: list[dict[str, Any]]) -> str:
    """A snapshot, changes or delta frame as sent to clients."""
    return json.dumps({"type": kind, "meeting": meeting, "attendees": attendees}, separators=(",", ":"))


def frame_of_json(kind: str, meeting_json: str, attendees_json: str) -> str:
    """:func:`frame`, character for character, around a meeting and an attendee list already in
    compact JSON (roster.read.serializers.ChangeShown)."""
    return '{"type":"' + kind + '","meeting":' + meeting_json + ',"attendees":' + attendees_json + "}"


def message_text(message: dict[str, Any]) -> str:
    """Any other frame (hello, pong, heartbeat)."""
    return json.dumps(message, separators=(",", ":"))


def error_text(code: str, message: str, **extra: Any) -> str:
    return message_text({"type": "error", "code": code, "message": message, **extra})


def unsubscribed_text(meeting_id: str, reason: str = "scope") -> str:
    """The server stopped following a meeting for the client (it left the socket's scope)."""
    return message_text({"type": "unsubscribed", "meeting_id": meeting_id, "reason": reason})


class Access(Protocol):
    """What a socket may see (roster.read.access.Access)."""

    def allows(
        self,
        *,
        meeting_id: str,
        external_meeting_id: str = "",
        primary_meeting_id: str | None = None,
        primary_external_meeting_id: str = "",
    ) -> bool: ...


class BadRequest(Exception):
    """A client message the protocol refuses: an ``error`` frame, and the socket stays usable."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code, self.extra = code, extra

    def text(self) -> str:
        return error_text(self.code, str(self), **self.extra)


def request_parse(text: str | None, *, authenticated: bool) -> dict[str, Any]:
    """A client frame as a request whose ``type`` is one of REQUESTS (else BadRequest)."""
    if text is None:
        raise BadRequest("bad_message", "messages are JSON text frames")
    try:
        message = json.loads(text)
    except ValueError:
        raise BadRequest("bad_json", "message is not valid JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise BadRequest("bad_message", 'a message is a JSON object with a string "type"')
    kind = message["type"]
    if kind != "auth" and not authenticated:
        raise BadRequest("unauthenticated", 'send {"type": "auth", "token": "..."} first')
    if kind not in REQUESTS:
        raise BadRequest("unknown_type", f"unknown message type {kind!r}")
    return message


@dataclass(frozen=True, slots=True)
class Subscription:
    meetings: list[str] | None  # None: "*", every meeting in scope
    since: dict[str, int]  # the seq the client holds, per meeting
    with_attendees: bool  # False: meeting objects only (meeting lists)
    snapshots: bool = True  # False ("*" without attendees only): catch up only the meetings in since
    family: bool = False  # the listed meetings' replicas too, and their family frames
    families: list[str] = field(default_factory=list)  # family frames only (dashboard pages)


def subscription_parse(message: dict[str, Any]) -> Subscription:
    meetings = message.get("meetings")
    family = message.get("family", False)
    if not isinstance(family, bool) or (family and not isinstance(meetings, list)):
        raise BadRequest("bad_message", '"family" is true or false, true with a list of "meetings"')
    families = message.get("families", [])
    if (
        not isinstance(families, list)
        or len(families) > MAX_LISTED
        or not all(isinstance(m, str) and m for m in families)
    ):
        raise BadRequest("bad_meetings", f'"families" is a list of at most {MAX_LISTED} primary meeting ids')
    if families and meetings is None:
        return Subscription(meetings=[], since={}, with_attendees=True, families=families)
    since = message.get("since") or {}
    with_attendees = message.get("attendees", True)
    if not isinstance(since, dict) or not all(
        isinstance(k, str) and type(v) is int and v >= 0 for k, v in since.items()
    ):
        raise BadRequest("bad_since", '"since" maps meeting ids to non-negative integer seqs')
    if not isinstance(with_attendees, bool):
        raise BadRequest("bad_message", '"attendees" is true or false')
    snapshots = message.get("snapshots", True)
    if snapshots is not True and (snapshots is not False or meetings != "*" or with_attendees):
        raise BadRequest("bad_message", '"snapshots": false goes with "meetings": "*" and "attendees": false')
    if meetings == "*":
        return Subscription(
            meetings=None, since=since, with_attendees=with_attendees, snapshots=snapshots, families=families
        )
    if (
        not isinstance(meetings, list)
        or not meetings
        or len(meetings) > MAX_LISTED
        or not all(isinstance(m, str) and m for m in meetings)
    ):
        raise BadRequest("bad_meetings", f'"meetings" is "*" or a list of 1 to {MAX_LISTED} meeting ids')
    return Subscription(meetings=meetings, since=since, with_attendees=True, family=family, families=families)


def unsubscription_parse(message: dict[str, Any]) -> list[str] | None:
    """The meeting ids to stop following; None for "*"."""
    meetings = message.get("meetings")
    if meetings == "*":
        return None
    if not isinstance(meetings, list) or not all(isinstance(m, str) for m in meetings):
        raise BadRequest("bad_meetings", '"meetings" is "*" or a list of meeting ids')
    return meetings


@dataclass(frozen=True, slots=True)
class Gap:
    """A broadcast message past ``held + 1``: frames were lost on the way, repair from the database."""

    meeting_id: str
    held: int | None
    with_attendees: bool


@dataclass(frozen=True, slots=True)
class First:
    """The first message of a meeting the client holds nothing of, to forward once the socket has
    seen the meeting in its own database under this external id (a message on the layer proves
    nothing: another deployment, or anyone who can publish to Redis, may have sent it)."""

    meeting_id: str
    scope: dict[str, Any]  # what the message says it is judged by (Access.allows's arguments)
    text: str


@dataclass(frozen=True, slots=True)
class Family:
    """A family frame to send, after following ``join`` (replicas the socket follows from now on:
    join their groups and send each its snapshot first)."""

    primary_meeting_id: str
    text: str
    join: list[str]


def family_replica_ids(text: str) -> list[str]:
    return [replica["meeting_id"] for replica in json.loads(text)["replicas"]]


@dataclass
class FeedSession:
    """Protocol v1 for one socket: its state, and every decision that depends on it."""

    access: Access | None = None  # set once authenticated
    seqs: dict[str, int] = field(default_factory=dict)  # the highest seq the client holds
    listed: set[str] = field(default_factory=set)  # meetings subscribed by id
    follow_all: bool = False  # "*" with attendees
    follow_list: bool = False  # "*" without attendees (meeting lists)
    list_unheld: bool = False  # a list without snapshots: a meeting's first delta is forwarded as is
    groups: set[str] = field(default_factory=set)  # groups the socket should be in
    families: set[str] = field(default_factory=set)  # primaries whose family frames are sent
    family_follow: set[str] = field(default_factory=set)  # primaries whose replicas are followed
    family_sent: dict[str, tuple[int, str]] = field(default_factory=dict)  # (version, frame) last sent

    def hello(self, access: Access, *, heartbeat_seconds: float) -> str:
        self.access = access
        return message_text({"type": "hello", "protocol": PROTOCOL, "heartbeat_seconds": heartbeat_seconds})

    def follow(self, subscription: Subscription) -> str:
        """The group of a ``"*"`` subscription, now followed."""
        if subscription.with_attendees:
            self.follow_all = True
            return GROUP_ALL
        self.follow_list = True
        self.list_unheld = not subscription.snapshots
        return GROUP_LIST

    def unfollow(self, meetings: list[str] | None) -> list[str]:
        """The groups to leave for an unsubscribe (of these meetings, or of "*")."""
        if meetings is None:
            self.follow_all = self.follow_list = self.list_unheld = False
            return [GROUP_ALL, GROUP_LIST]
        self.listed.difference_update(meetings)
        dropped = self.families.intersection(meetings)
        self.families.difference_update(dropped)
        self.family_follow.difference_update(dropped)
        for primary in dropped:
            self.family_sent.pop(primary, None)
        return [meeting_group(meeting_id) for meeting_id in meetings] + [family_group(m) for m in dropped]

    def family_start(self, primary_meeting_id: str, *, follow: bool) -> str:
        """Family frames of this primary from now on (its replicas followed too when ``follow``):
        the group to join before the family is read."""
        self.families.add(primary_meeting_id)
        if follow:
            self.family_follow.add(primary_meeting_id)
        return family_group(primary_meeting_id)

    def family_read(self, primary_meeting_id: str, text: str, *, version: int) -> Family | None:
        """A family frame (read, or from the broadcaster) of a family at ``version`` (the sum of
        its members' seqs): what to send, or None when the socket does not follow that family (any
        more) or it says nothing new: the same figures, or older than those sent (another
        process's reading that arrived late)."""
        sent = self.family_sent.get(primary_meeting_id)
        if primary_meeting_id not in self.families or (sent and (version < sent[0] or text == sent[1])):
            return None
        self.family_sent[primary_meeting_id] = (version, text)
        join: list[str] = []
        if primary_meeting_id in self.family_follow:
            join = [m for m in family_replica_ids(text) if m not in self.listed]
            self.listed.update(join)
        return Family(primary_meeting_id, text, join)

    def catch_up(self, *, seq: int, since: int | None, with_attendees: bool) -> int | None:
        """Before a catch-up read of a meeting now at ``seq``: the seq to read changes after, or None
        for every attendee (a snapshot). The client holds a usable seq when it is not ahead."""
        return since if since is not None and since <= seq and with_attendees else None

    def hold(self, meeting_id: str, seq: int) -> None:
        """The client holds ``seq`` of this meeting (a list's row it said is current)."""
        self.seqs[meeting_id] = seq

    def forget(self, meeting_id: str) -> None:
        """The client holds nothing of this meeting (a First that was not sent)."""
        self.seqs.pop(meeting_id, None)

    def known(self) -> list[str]:
        """Every meeting the session lists or holds a seq of: what a new scope is judged on."""
        return sorted(self.listed | self.seqs.keys())

    def rescope(self, access: Access, scopes: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[str]]:
        """The credential now grants ``access`` (a rule removed or added, a glob edited). Every
        meeting of :meth:`known` it no longer allows is forgotten (listed, held seq), so none of
        its later messages is forwarded, and a widened scope later starts it over from a snapshot.

        ``scopes``: what those meetings are judged by (Access.allows's arguments but meeting_id:
        their externalMeetingId, their primary's ids; absent: none). Returns the meetings the
        client followed that left the scope (each gets an ``unsubscribed``) and the groups to
        leave (a family's too, when its primary left)."""
        self.access = access
        following_held = self.follow_all or self.follow_list
        gone: list[str] = []
        groups: list[str] = []
        for meeting_id in self.known():
            if access.allows(meeting_id=meeting_id, **scopes.get(meeting_id, {})):
                continue
            if meeting_id in self.families:
                self.families.discard(meeting_id)
                self.family_follow.discard(meeting_id)
                self.family_sent.pop(meeting_id, None)
                groups.append(family_group(meeting_id))
            if meeting_id in self.listed:
                self.listed.discard(meeting_id)
                groups.append(meeting_group(meeting_id))
                gone.append(meeting_id)
            elif following_held:
                gone.append(meeting_id)
            self.seqs.pop(meeting_id, None)
        return gone, groups

    def caught_up(self, roster: dict[str, Any], *, seq: int, since: int | None, with_attendees: bool) -> str:
        """The frame of a catch-up read (of a meeting at ``seq`` before it); the client holds the
        read's seq from now on."""
        meeting = roster["meeting"]
        self.seqs[meeting["meeting_id"]] = meeting["seq"]
        usable = since is not None and since <= seq and since <= meeting["seq"]
        attendees = roster["attendees"] if with_attendees else []
        return frame("changes" if usable else "snapshot", meeting, attendees)

    def judge(self, message: dict[str, Any]) -> str | First | Gap | Family | None:
        """A broadcaster message: its text to forward (its seq is then held: send it), None to drop
        it (not followed, out of scope, a duplicate), a First to check before forwarding, or a
        Gap. The hot path (a meeting already held): nothing allocated."""
        kind = message["type"]
        if kind == FAMILY_TYPE:
            primary = message["primary_meeting_id"]
            if primary not in self.families or not self._allows({**message, "meeting_id": primary}):
                return None
            return self.family_read(primary, message["text"], version=message["version"])
        if kind not in (DELTA_TYPE, SUMMARY_TYPE):
            return None
        meeting_id = message["meeting_id"]
        if kind == DELTA_TYPE:
            if meeting_id not in self.listed and not (self.follow_all and self._allows(message)):
                return None
            with_attendees = True
        else:
            if meeting_id in self.listed or self.follow_all or not self.follow_list:
                return None  # a full delta of the same seq comes through another group
            if not self._allows(message):
                return None
            with_attendees = False
        seq, held = message["seq"], self.seqs.get(meeting_id)
        if held is not None and seq <= held:
            return None  # a duplicate
        # A meeting object is whole: a list without snapshots takes a meeting's first one as is.
        first_of_list = held is None and not with_attendees and self.list_unheld
        if not first_of_list and seq > (1 if held is None else held + 1):
            return Gap(meeting_id=meeting_id, held=held, with_attendees=with_attendees)
        self.seqs[meeting_id] = seq
        if held is None:
            return First(meeting_id, _scope_of(message), message["text"])
        return message["text"]

    def _allows(self, message: dict[str, Any]) -> bool:
        return self.access is not None and self.access.allows(
            meeting_id=message["meeting_id"], **_scope_of(message)
        )


def _scope_of(message: Mapping[str, Any]) -> dict[str, Any]:
    """What a broadcaster message says the meeting is judged by (Access.allows's arguments)."""
    scope = {"external_meeting_id": message["external_meeting_id"]}
    if message.get("primary_meeting_id"):
        scope["primary_meeting_id"] = message["primary_meeting_id"]
        scope["primary_external_meeting_id"] = message.get("primary_external_meeting_id", "")
    return scope
