"""Broadcaster: hands committed roster changes to live clients.

roster.ingest calls :func:`roster_changes_publish` from ``transaction.on_commit``, so nothing is
announced that was not durably written. Until the live-push work lands this only logs; the hook,
its arguments and its place after commit are the contract.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RosterChange:
    """One meeting's committed change: the meeting (new seq) and every attendee that changed."""

    meeting: dict[str, Any]
    attendees: list[dict[str, Any]]


def roster_changes_publish(changes: list[RosterChange]) -> None:
    for change in changes:
        logger.debug(
            "roster change meeting=%s seq=%s attendees=%d",
            change.meeting["meeting_id"],
            change.meeting["seq"],
            len(change.attendees),
        )
