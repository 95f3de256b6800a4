"""Follow a meeting before its first event (DESIGN.md, the feed; issue #15 point 4).

An application that has just called CreateMeeting subscribes to the new meeting's id before Chime
sent a single event about it. Instead of ``not_found``, the roster asks the Chime API (GetMeeting,
in ``CHIME_CONTROL_REGION``, within reconcile's API budget) and, when the meeting exists and the
socket's scope allows it by id, by its ExternalMeetingId or by its primary's, creates its row
(status ``unknown``, ``seq`` 0): the socket then sends an empty snapshot and the deltas follow.

What keeps a client from spending the budget: a known id never calls the API (a known meeting out
of scope stays ``not_found``), an id that is not a Chime meeting id never does either, a miss is
remembered for a minute per process, and each socket has a few lookups a minute
(``SOCKET_LOOKUPS_PER_MINUTE``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from roster.domain.plan import MeetingFacts
from roster.domain.reconcile import ChimeMeeting
from roster.ingest.service import meeting_expected_create
from roster.read.access import Access
from roster.read.selectors import meeting_scope_ids
from roster.sources.reconcile import chime_meeting_lookup

logger = logging.getLogger(__name__)

# Chime's MeetingId pattern (botocore's model: GuidString).
MEETING_ID = re.compile(r"[a-fA-F0-9]{8}(?:-[a-fA-F0-9]{4}){3}-[a-fA-F0-9]{12}")
MISS_SECONDS = 60.0  # how long an id GetMeeting did not find is not asked again (per process)
_MISSES_MAX = 10_000
_misses: dict[str, float] = {}  # meeting id -> monotonic time until which it is not asked again


def meeting_expect(*, meeting_id: str, access: Access, admit: Callable[[], bool]) -> bool:
    """Whether ``meeting_id`` is a meeting the Chime API confirmed within ``access``; its row is
    then created (kept when it exists). ``admit`` is the socket's own say, asked before a call."""
    region = settings.CHIME_CONTROL_REGION
    if (
        not region
        or not MEETING_ID.fullmatch(meeting_id)
        or meeting_scope_ids(meeting_id=meeting_id) is not None
    ):
        return False
    now = time.monotonic()
    if _misses.get(meeting_id, 0.0) > now or not admit():
        return False
    try:
        chime = chime_meeting_lookup(meeting_id=meeting_id, region=region)
    except (BotoCoreError, ClientError) as exc:  # throttled past its retries, or down: not a miss
        logger.warning("GetMeeting %s for a subscriber failed: %s", meeting_id, exc)
        return False
    if chime is None:
        if len(_misses) >= _MISSES_MAX:
            _misses.clear()
        _misses[meeting_id] = now + MISS_SECONDS
        return False
    if not _allowed(access, meeting_id, chime):
        return False
    meeting_expected_create(
        meeting_id=meeting_id,
        facts=MeetingFacts(
            primary_meeting_id=chime.primary_meeting_id,
            external_meeting_id=chime.external_meeting_id or "",
            media_region=chime.media_region or "",
        ),
        control_region=region,
    )
    return True


def _allowed(access: Access, meeting_id: str, chime: ChimeMeeting) -> bool:
    """The scope judged as it will be once the row exists: by id or ExternalMeetingId, or, for a
    replica, by its primary's (a scope that allows a primary allows its replicas)."""
    primary = chime.primary_meeting_id
    primary_scope = (meeting_scope_ids(meeting_id=primary) or {}) if primary else {}
    return access.allows(
        meeting_id=meeting_id,
        external_meeting_id=chime.external_meeting_id or "",
        primary_meeting_id=primary,
        primary_external_meeting_id=primary_scope.get("external_meeting_id", ""),
    )
