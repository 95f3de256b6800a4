"""Following a meeting before its first event (DESIGN.md, the feed): an application that has just
called CreateMeeting subscribes to its id, and the roster does not know it yet.

The socket asks here; the sources layer answers (roster.sources.ahead, registered by roster.apps),
since the answer needs the Chime API and a socket stops at the live layer.
"""

from __future__ import annotations

from collections.abc import Callable

from roster.read.access import Access

# (meeting_id=, access=, admit=) -> whether the meeting now has a row the access may see.
expecters: list[Callable[..., bool]] = []


def meeting_expect(*, meeting_id: str, access: Access, admit: Callable[[], bool]) -> bool:
    """Whether the Chime API confirmed ``meeting_id`` within ``access``, its row now created.
    ``admit`` is asked before each call to the API: the socket's own share of the budget."""
    return any(expect(meeting_id=meeting_id, access=access, admit=admit) for expect in expecters)
