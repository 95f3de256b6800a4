"""Reads: what the REST endpoints, the dashboard, the sockets, /healthz and the commands show.

Meetings and attendees are loaded with the columns their serializers show and no others, so the
fold's bookkeeping columns (however they change) are never read here; the one exception is the
join intervals the attendance summary is made of.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    Exists,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Upper
from django.utils import timezone

from roster.domain.attendance import Attendance, AttendeeTimes, attendance_summarize
from roster.domain.events import KIND_MEETING, KIND_PIPELINE
from roster.domain.family import FamilyFigures, FamilyMember, family_figures
from roster.domain.fold import STORED_EVENT_FIELDS, StoredEvent
from roster.domain.globs import glob_regex
from roster.domain.reconcile import AttendeeView, MeetingView
from roster.domain.timeline import timeline_build
from roster.models import Attendee, Event, Meeting, MeetingUser, Quarantine, QueueSource, VoiceConnectorStream
from roster.read.access import Access
from roster.read.serializers import (
    ATTENDEE_FIELDS,
    MEETING_FIELDS,
    attendee_as_dict,
    meeting_as_dict,
    stream_as_dict,
)


def _meetings() -> QuerySet[Meeting]:
    return Meeting.objects.only(*MEETING_FIELDS)


def _attendees(meeting: Meeting) -> QuerySet[Attendee]:
    return Attendee.objects.filter(meeting=meeting).only(*ATTENDEE_FIELDS).order_by("attendee_id")


def meeting_get(*, meeting_id: str) -> Meeting | None:
    """By meetingId, else by externalMeetingId (the most recently started one)."""
    meeting = _meetings().filter(meeting_id=meeting_id).first()
    if meeting is None:
        by_external_id = _meetings().filter(external_meeting_id=meeting_id)
        meeting = by_external_id.order_by("-started_at", "-created_at").first()
    return meeting


def roster_get(*, meeting_id: str) -> dict[str, Any] | None:
    """The roster of a meetingId or externalMeetingId (as :func:`meeting_get` finds it)."""
    meeting = meeting_get(meeting_id=meeting_id)
    return None if meeting is None else roster_read(meeting=meeting)


def _in_scope(access: Access) -> Q:
    """The meetings an access allows, as a database filter (its globs as regular expressions):
    those whose own ids match, and replicas whose primary's do (Access.allows, in SQL)."""
    if access.everything:
        return Q()
    if access.nothing:
        return Q(pk__in=[])
    own, by_primary_id, primary_own = Q(pk__in=[]), Q(pk__in=[]), Q(pk__in=[])
    for glob in access.globs:
        pattern = glob_regex(glob)
        own |= Q(meeting_id__regex=pattern) | Q(external_meeting_id__regex=pattern)
        by_primary_id |= Q(primary_meeting_id__regex=pattern)
        primary_own |= Q(external_meeting_id__regex=pattern)
    primary = Meeting.objects.filter(primary_own, meeting_id=OuterRef("primary_meeting_id"))
    return own | by_primary_id | (Q(primary_meeting_id__isnull=False) & Exists(primary))


def meetings_visible(*, access: Access) -> list[Meeting]:
    """Every meeting the caller may see (a socket subscribing to "*"), in the list's order."""
    return list(MEETING_SORTS["active"].apply(_meetings().filter(_in_scope(access))))


@dataclass(frozen=True, slots=True)
class _SortKey:
    name: str
    expression: Any
    kind: type  # of its values (a cursor is checked against it)
    descending: bool = False


@dataclass(frozen=True, slots=True)
class MeetingSort:
    """A meeting list order; its last key is ``meeting_id``, so every row has its own place and
    a cursor (the keys of a page's last row) says exactly where the next page starts."""

    keys: tuple[_SortKey, ...]

    def apply(self, meetings: QuerySet[Meeting]) -> QuerySet[Meeting]:
        """The meetings with their keys (attributes named as the keys) and in this order."""
        keyed = meetings.annotate(**{k.name: k.expression for k in self.keys})
        return keyed.order_by(*(F(k.name).desc() if k.descending else F(k.name).asc() for k in self.keys))

    def after(self, values: list[Any]) -> Q:
        """The rows after the one whose keys are ``values`` (keyset paging)."""
        after = Q(pk__in=[])
        for i, key in enumerate(self.keys):
            step = Q(**{f"{key.name}__{'lt' if key.descending else 'gt'}": values[i]})
            for earlier, value in zip(self.keys[:i], values[:i], strict=True):
                step &= Q(**{earlier.name: value})
            after |= step
        return after


_NO_START = 2**62  # sorts a meeting with no started_at after every real time, either way
_STATUS_RANK = Case(
    When(status=Meeting.Status.ACTIVE, then=Value(0)),
    When(status=Meeting.Status.UNKNOWN, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)
_BY_ID = _SortKey("k_id", F("meeting_id"), str)
MEETING_SORTS: dict[str, MeetingSort] = {
    # Active first, then unknown, then ended; newest started first (never started last).
    "active": MeetingSort(
        (
            _SortKey("k_rank", _STATUS_RANK, int),
            _SortKey("k_started", Coalesce("started_at", Value(-1)), int, descending=True),
            _BY_ID,
        )
    ),
    "newest": MeetingSort(
        (_SortKey("k_started", Coalesce("started_at", Value(-1)), int, descending=True), _BY_ID)
    ),
    "oldest": MeetingSort((_SortKey("k_started", Coalesce("started_at", Value(_NO_START)), int), _BY_ID)),
    "name": MeetingSort((_SortKey("k_name", Upper("external_meeting_id"), str), _BY_ID)),
}
PAGE_DEFAULT, PAGE_MAX = 50, 200


@dataclass(frozen=True, slots=True)
class MeetingFilter:
    """What a meeting list asks for (REST, the dashboard's list); every field may be left out."""

    q: str = ""  # a substring of externalMeetingId or of an attendee's externalUserId, or a meetingId
    status: str = ""  # "active", "ended", "unknown" or "" (any)
    started_after: int | None = None  # epoch ms, inclusive
    started_before: int | None = None  # epoch ms, exclusive
    sort: str = "active"  # a MEETING_SORTS key


class _HoldsShortPiece(Func):
    """``user_upper`` holds ``piece`` (1 or 2 characters). On PostgreSQL, through the GIN index of
    every 1- and 2-character piece of a name (migration 0010), the one index a search this short
    can use; elsewhere, a plain position test."""

    function = "INSTR"
    template = "%(function)s(%(expressions)s) > 0"
    output_field = BooleanField()
    conditional = True

    def __init__(self, piece: Any) -> None:
        super().__init__(F("user_upper"), piece)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        # roster_short_grams(user_upper) @> ARRAY[piece]::text[], the indexed expression as is.
        return self.as_sql(
            compiler,
            connection,
            template="roster_short_grams(%(expressions)s]::text[]",
            arg_joiner=") @> ARRAY[",
        )


TRIGRAM = 3  # pg_trgm indexes a substring of at least 3 characters


def _people_matching(q: str) -> QuerySet[MeetingUser]:
    """The meetings' people whose externalUserId contains ``q``, case-insensitively (both sides
    upper-cased by the database, as the triggers of migration 0010 store them), for a correlated
    EXISTS. From 3 characters the trigram index answers the LIKE; under 3, the index of short
    pieces. EXISTS, not ``meeting_id IN (...)``: a one-letter search matches most people, and
    an IN list that large is rescanned for every meeting."""
    upper = Upper(Value(q, output_field=CharField()))
    if len(q) >= TRIGRAM:
        return MeetingUser.objects.filter(user_upper__contains=upper)
    return MeetingUser.objects.filter(_HoldsShortPiece(upper))


@dataclass(frozen=True, slots=True)
class MeetingPage:
    meetings: list[Meeting]
    after: list[Any] | None  # the last row's sort keys when more rows follow (the next cursor)
    families: dict[str, FamilyFigures] = field(default_factory=dict)  # of the rows with replicas


def meetings_page(
    *,
    access: Access,
    where: MeetingFilter = MeetingFilter(),
    after: list[Any] | None = None,
    limit: int = PAGE_DEFAULT,
) -> MeetingPage:
    """One page of the meetings the caller may see, filtered and sorted in the database.

    ``after`` is the previous page's ``MeetingPage.after`` (roster.web.api encodes it as the
    cursor); a row changed between two pages is seen where it stood when each page was read.

    Replicas are folded under their primary (docs/decisions.md): a replica whose primary the
    caller sees is not a row of its own, and the primary's row has its family's figures
    (``families``); a search (``q``) folds nothing, so it finds a replica by its own ids.
    """
    sort = MEETING_SORTS[where.sort]
    scope = _in_scope(access)
    meetings = sort.apply(_meetings().filter(scope))
    if not where.q:
        primary_seen = Meeting.objects.filter(scope, meeting_id=OuterRef("primary_meeting_id"))
        meetings = meetings.filter(Q(primary_meeting_id__isnull=True) | ~Exists(primary_seen))
        # Which rows have replicas, in the same query: a page without families costs no other.
        replicas = Meeting.objects.filter(primary_meeting_id=OuterRef("meeting_id"))
        meetings = meetings.annotate(has_replicas=Exists(replicas))
    if where.q:
        meetings = meetings.filter(
            Q(external_meeting_id__icontains=where.q)
            | Q(meeting_id=where.q)
            | Exists(_people_matching(where.q).filter(meeting_id=OuterRef("meeting_id")))
        )
    if where.status:
        meetings = meetings.filter(status=where.status)
    if where.started_after is not None:
        meetings = meetings.filter(started_at__gte=where.started_after)
    if where.started_before is not None:
        meetings = meetings.filter(started_at__lt=where.started_before)
    if after is not None:
        meetings = meetings.filter(sort.after(after))
    rows = list(meetings[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return MeetingPage(
        meetings=rows,
        after=[getattr(rows[-1], k.name) for k in sort.keys] if more else None,
        families=families_read(primaries=[m for m in rows if getattr(m, "has_replicas", False)]),
    )


ScopeIds = dict[str, Any]  # Access.allows's keyword arguments but meeting_id


def meeting_scope_ids(*, meeting_id: str) -> ScopeIds | None:
    """What a scope judges the meeting by (Access.allows: its externalMeetingId, "" when none,
    and its primary's ids when it is a replica), or None when this database has no such meeting
    (a socket checks a meeting's first message from the layer with it)."""
    return meetings_scope_ids(meeting_ids=[meeting_id]).get(meeting_id)


def meetings_scope_ids(*, meeting_ids: Collection[str]) -> dict[str, ScopeIds]:
    """:func:`meeting_scope_ids` of each of these meetings this database holds: a socket whose
    scope changed judges what it follows with them (a list of thousands is read in chunks, within
    every database's limit on parameters)."""
    ids = list(meeting_ids)
    found: dict[str, ScopeIds] = {}
    for start in range(0, len(ids), 500):
        rows = Meeting.objects.filter(meeting_id__in=ids[start : start + 500]).values_list(
            "meeting_id", "external_meeting_id", "primary_meeting_id"
        )
        for meeting_id, external, primary in rows:
            found[meeting_id] = {"external_meeting_id": external}
            if primary:  # the same shape as a broadcaster message's (roster.live.protocol._scope_of)
                found[meeting_id]["primary_meeting_id"] = primary
    primaries = {s["primary_meeting_id"] for s in found.values() if "primary_meeting_id" in s}
    if primaries:
        externals = dict(
            Meeting.objects.filter(meeting_id__in=primaries).values_list("meeting_id", "external_meeting_id")
        )
        for scope in found.values():
            if "primary_meeting_id" in scope:
                scope["primary_external_meeting_id"] = externals.get(scope["primary_meeting_id"], "")
    return found


def meeting_visible(*, access: Access, meeting_id: str) -> Meeting | None:
    """The meeting, or None when it does not exist *or* the caller may not see it (same answer)."""
    meeting = _meetings().filter(meeting_id=meeting_id).first()
    return meeting if meeting is not None and _allows(access, meeting) else None


def _allows(access: Access, meeting: Meeting) -> bool:
    if access.allows(meeting_id=meeting.meeting_id, external_meeting_id=meeting.external_meeting_id):
        return True
    if not meeting.primary_meeting_id:
        return False
    scope = meeting_scope_ids(meeting_id=meeting.meeting_id) or {}
    return access.allows(meeting_id=meeting.meeting_id, **scope)


_MEMBER_COLUMNS = ("meeting_id", "joined_count", "peak_joined", "external_meeting_id", "seq")


def _member(meeting: Meeting) -> FamilyMember:
    return FamilyMember(*(getattr(meeting, name) for name in _MEMBER_COLUMNS))


def _family(primary: FamilyMember, replicas: list[FamilyMember]) -> FamilyFigures:
    members = [primary.meeting_id, *(r.meeting_id for r in replicas)]
    return family_figures(
        primary=primary,
        replicas=replicas,
        intervals=lambda: (
            Attendee.objects.filter(meeting_id__in=members)
            .values_list("intervals", flat=True)
            .iterator(chunk_size=2000)
        ),
    )


def _replicas_of(primary_ids: Collection[str]) -> dict[str, list[FamilyMember]]:
    rows = Meeting.objects.filter(primary_meeting_id__in=list(primary_ids)).values_list(
        "primary_meeting_id", *_MEMBER_COLUMNS
    )
    replicas: dict[str, list[FamilyMember]] = {}
    for primary_id, *member in rows:
        replicas.setdefault(primary_id, []).append(FamilyMember(*member))
    return replicas


def family_read(*, primary: Meeting) -> FamilyFigures:
    """The family figures of a meeting as primary (no replicas: its own figures), computed now
    from the stored rows (roster.domain.family): never stored. The caller checked access: a scope
    that allows the primary allows its replicas."""
    primary.refresh_from_db(fields=MEETING_FIELDS)
    return _family(_member(primary), _replicas_of([primary.meeting_id]).get(primary.meeting_id, []))


def family_get(*, primary_meeting_id: str, access: Access) -> FamilyFigures | None:
    """The family of a primary the caller may see, or None (absent and out of scope alike)."""
    primary = meeting_visible(access=access, meeting_id=primary_meeting_id)
    return None if primary is None else family_read(primary=primary)


def families_read(*, primaries: Collection[Meeting]) -> dict[str, FamilyFigures]:
    """The families of these meetings that have replicas (a meeting list's page): one query for
    every replica; the peak is swept only for a family whose own figures do not decide it."""
    replicas = _replicas_of([p.meeting_id for p in primaries]) if primaries else {}
    found = [p for p in primaries if p.meeting_id in replicas]
    return {p.meeting_id: _family(_member(p), replicas[p.meeting_id]) for p in found}


def families_get(*, meeting_ids: Collection[str]) -> dict[str, FamilyFigures]:
    """The families of those of these meetings that have replicas, as stored now (the broadcaster,
    after a batch; no access: sockets judge each family frame by its primary)."""
    replicas = _replicas_of(meeting_ids) if meeting_ids else {}
    if not replicas:
        return {}
    rows = Meeting.objects.filter(meeting_id__in=list(replicas)).values_list(*_MEMBER_COLUMNS)
    return {row[0]: _family(FamilyMember(*row), replicas[row[0]]) for row in rows}


def roster_read(*, meeting: Meeting, since: int | None = None) -> dict[str, Any]:
    """The meeting (read again: the caller's copy may be old) and its attendees (those changed
    after ``since``, when given)."""
    meeting.refresh_from_db()
    attendees = _attendees(meeting)
    if since is not None:
        attendees = attendees.filter(seq__gt=since)
    return {"meeting": meeting_as_dict(meeting), "attendees": [attendee_as_dict(a) for a in attendees]}


def roster_family_read(*, meeting: Meeting) -> dict[str, Any]:
    """:func:`roster_read`, with ``family`` (its figures as REST shows them) when the meeting is a
    primary with replicas (a replica's meeting object names its primary)."""
    roster = roster_read(meeting=meeting)
    if not meeting.primary_meeting_id:
        family = family_read(primary=meeting)
        if family.replicas:
            roster["family"] = family.as_dict()
    return roster


def meeting_read(*, meeting: Meeting, since: int | None = None) -> dict[str, Any]:
    """:func:`roster_read` without attendees (a meeting list's row); ``since`` is ignored."""
    meeting.refresh_from_db(fields=MEETING_FIELDS)
    return {"meeting": meeting_as_dict(meeting), "attendees": []}


def timeline_get(*, meeting: Meeting) -> dict[str, Any]:
    """The meeting's lanes, folded again from its event log; ``end`` is null while it goes on."""
    rows = Event.objects.filter(meeting_id=meeting.meeting_id).values_list(*STORED_EVENT_FIELDS)
    timeline = timeline_build(meeting.meeting_id, [StoredEvent(*row) for row in rows])
    timeline["end"] = meeting.ended_at if meeting.status == Meeting.Status.ENDED else None
    return timeline


def reconcile_view_get(*, meeting_id: str) -> MeetingView | None:
    """What a reconcile check reads of one meeting before it calls the Chime API: the planner's
    view (roster.domain.reconcile), its control region ("" when unknown) included. The latest
    known event is that of its meeting and pipeline events (their timestamps are Chime's)."""
    meeting = (
        Meeting.objects.filter(meeting_id=meeting_id)
        .values_list(
            "status",
            "primary_meeting_id",
            "external_meeting_id",
            "media_region",
            "reconcile_missed",
            "control_region",
        )
        .first()
    )
    if meeting is None:
        return None
    status, primary, external, media_region, missed, region = meeting
    latest = (
        Event.objects.filter(meeting_id=meeting_id, kind__in=(KIND_MEETING, KIND_PIPELINE))
        .order_by("-timestamp")
        .values_list("timestamp", flat=True)
        .first()
    )
    rows = Attendee.objects.filter(meeting_id=meeting_id).values_list(
        "attendee_id", "presence", "external_user_id"
    )
    view = MeetingView(
        meeting_id=meeting_id,
        status=status,
        latest_event_at=latest,
        attendees=tuple(AttendeeView(*row) for row in rows.order_by("attendee_id")),
        missed=frozenset(missed or ()),
        primary_meeting_id=primary,
        external_meeting_id=external,
        media_region=media_region,
        control_region=region,
    )
    return view


def reconcile_due_list(*, with_blank_region: bool) -> list[str]:
    """The meetings a reconcile cycle checks, in order: ``active`` ones and ``unknown`` ones never
    checked (``reconciled_at`` null: ROSTER.md allows one check), the one whose latest known
    meeting event is oldest first (a lost MeetingEnded shows as a meeting gone quiet), meetings
    with no known event last. Meetings with no control region only ``with_blank_region``
    (CHIME_CONTROL_REGION set): with none there is nowhere to ask."""
    latest = (
        Event.objects.filter(meeting_id=OuterRef("meeting_id"), kind__in=(KIND_MEETING, KIND_PIPELINE))
        .order_by("-timestamp")
        .values("timestamp")[:1]
    )
    due = Meeting.objects.filter(
        Q(status=Meeting.Status.ACTIVE) | Q(status=Meeting.Status.UNKNOWN, reconciled_at__isnull=True)
    )
    if not with_blank_region:
        due = due.exclude(control_region="")
    return list(
        due.annotate(latest=Subquery(latest))
        .order_by(F("latest").asc(nulls_last=True), "meeting_id")
        .values_list("meeting_id", flat=True)
    )


def attendance_get(*, meeting: Meeting, now_ms: int | None = None) -> Attendance:
    """The attendance summary (roster.domain.attendance) from the rows' join intervals, the one
    bookkeeping column read here; a join still open counts up to ``now_ms`` (default: now)."""
    rows = Attendee.objects.filter(meeting=meeting).values_list(*(f.name for f in fields(AttendeeTimes)))
    return attendance_summarize(
        (AttendeeTimes(*row) for row in rows),
        started_at=meeting.started_at,
        ended_at=meeting.ended_at,
        peak=meeting.peak_joined,
        now=int(time.time() * 1000) if now_ms is None else now_ms,
    )


STREAM_STATUSES = ("STARTED", "UPDATED", "FAILED", "ENDED")
STREAMS_LISTED = 500


def voice_connector_streams_list(*, status: str = "", limit: int = STREAMS_LISTED) -> dict[str, Any]:
    """The newest streams (by their status time), optionally of one status, with counts per status.

    Streams are not meetings: no access rule reaches them, the caller checks staff.
    """
    streams = VoiceConnectorStream.objects.order_by(
        F("status_at").desc(), "voice_connector_id", "transaction_id"
    )
    if status:
        streams = streams.filter(status=status)
    rows = list(streams[: limit + 1])
    counts = {name: 0 for name in STREAM_STATUSES}
    for row in VoiceConnectorStream.objects.values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    return {
        "streams": [stream_as_dict(s) for s in rows[:limit]],
        "counts": counts,
        "truncated": len(rows) > limit,
    }


def queue_lag_get() -> dict[str, Any]:
    """The worst lag of the enabled queues, for the dashboard header (no queue names: any
    logged-in user sees it).

    ``lag_seconds``: the age of the oldest message the drains last received (SQS has no such
    attribute; the drain records it). ``stalled``: messages wait but no drain polled for a while,
    so the lag is unknown and growing. ``warn`` when either holds.
    """
    rows = list(
        QueueSource.objects.filter(enabled=True).values("backlog", "oldest_age_seconds", "last_poll_at")
    )
    now = timezone.now()
    stall_after = max(60.0, 3.0 * settings.SQS_WAIT_SECONDS)
    lags = [r["oldest_age_seconds"] for r in rows if r["oldest_age_seconds"] is not None]
    backlogs = [r["backlog"] for r in rows if r["backlog"] is not None]
    stalled_since = [
        r["last_poll_at"]
        for r in rows
        if r["backlog"]
        and (r["last_poll_at"] is None or (now - r["last_poll_at"]).total_seconds() > stall_after)
    ]
    lag = max(lags, default=None)
    backlog = sum(backlogs) if backlogs else None
    polled = [t for t in stalled_since if t is not None]  # stalled queues that were ever polled
    stalled_seconds = round((now - min(polled)).total_seconds()) if polled else None
    parts = []
    if stalled_since:
        parts.append(f"queue not drained for {stalled_seconds} s" if stalled_seconds else "queue not drained")
    if lag is not None and lag > settings.QUEUE_LAG_WARN_SECONDS:
        parts.append(f"queue lag {round(lag)} s")
    if parts and backlog:
        parts.append(f"{backlog} waiting")
    return {
        "lag_seconds": round(lag, 1) if lag is not None else None,
        "backlog": backlog,
        "threshold_seconds": settings.QUEUE_LAG_WARN_SECONDS,
        "stalled": bool(stalled_since),
        "stalled_seconds": stalled_seconds,
        "warn": bool(parts),
        "message": " · ".join(parts).capitalize(),
    }


def queue_urls_enabled() -> list[str]:
    """The enabled queues' URLs, in URL order: what /healthz checks, and what drain_sqs drains when
    none is named or configured."""
    return list(QueueSource.objects.filter(enabled=True).order_by("url").values_list("url", flat=True))


def queue_urls_configured() -> tuple[list[str], list[str]]:
    """What workers drain (SQS_QUEUE_URLS, seeded as enabled rows, then the other enabled rows), and
    the queues disabled in admin; each in the order they were configured."""
    rows = dict(QueueSource.objects.order_by("id").values_list("url", "enabled"))
    drained = [url for url in settings.SQS_QUEUE_URLS if rows.get(url, True)]
    drained += [url for url, enabled in rows.items() if enabled and url not in drained]
    disabled = [url for url, enabled in rows.items() if not enabled]
    return list(dict.fromkeys(drained)), disabled


@dataclass(frozen=True, slots=True)
class QueueActivity:
    source: QueueSource | None  # None: no row, so no worker drains the queue
    events: int  # stored from the queue since the time asked
    quarantined: int


def queue_activity_get(*, url: str, since: datetime) -> QueueActivity:
    """A queue's row (its drain's figures) and what was stored from it since ``since``."""
    return QueueActivity(
        source=QueueSource.objects.filter(url=url).first(),
        events=Event.objects.filter(received_at__gte=since, queue=url).count(),
        quarantined=Quarantine.objects.filter(received_at__gte=since, queue=url).count(),
    )
