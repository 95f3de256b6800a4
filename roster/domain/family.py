"""Meeting families (shared/ROSTER.md "Meeting families"): a primary and its replicas, summed.

Computed on read, never stored: ``family_joined`` is the sum of the members' joined counts;
``family_peak_joined`` is the peak of that sum in event time, which is the peak of one meeting
whose attendees are every member's (roster.domain.peak's sweep over all their join intervals;
the steps of different meetings interleave at the same (timestamp, rank) grain as one meeting's).

The sweep reads every member's intervals (10,000 rows for a 40-replica webinar), so
:func:`family_peak_known` first tries the members' own figures, which decide it without the
history in the usual cases: the peak of the sum is at least the sum now and at most the sum of
the peaks, so when those meet (nobody left anywhere: a join burst) it is that; and when at most
one member ever had anyone, it is that member's peak.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from roster.domain.peak import Intervals, peak_sweep


@dataclass(frozen=True, slots=True)
class FamilyMember:
    """One meeting of a family as stored: its joined count now and its own peak."""

    meeting_id: str
    joined: int
    peak: int
    external_meeting_id: str = ""
    seq: int = 0


@dataclass(frozen=True, slots=True)
class FamilyFigures:
    """What the family view shows (REST ``family``, the feed's ``family`` frame, the pages)."""

    primary_meeting_id: str
    family_joined: int
    family_peak_joined: int
    replicas: tuple[FamilyMember, ...]  # by meeting_id
    # The sum of the members' seqs: it rises with every change of any member (a replica joining
    # the family too), so of two readings the later one is the larger (never shown).
    version: int = 0

    def frame_fields(self) -> dict[str, Any]:
        """The feed's ``family`` frame without its type (docs/feed.md)."""
        return {
            "primary_meeting_id": self.primary_meeting_id,
            "family_joined": self.family_joined,
            "family_peak_joined": self.family_peak_joined,
            "replicas": [{"meeting_id": r.meeting_id, "joined": r.joined} for r in self.replicas],
        }

    def as_dict(self) -> dict[str, Any]:
        """REST's ``family`` object: the frame's fields, ``replicas`` as a count, ``members``
        each with its external id too."""
        return {
            "primary_meeting_id": self.primary_meeting_id,
            "family_joined": self.family_joined,
            "family_peak_joined": self.family_peak_joined,
            "replicas": len(self.replicas),
            "members": [
                {"meeting_id": r.meeting_id, "external_meeting_id": r.external_meeting_id, "joined": r.joined}
                for r in self.replicas
            ],
        }


def family_peak_known(members: Sequence[FamilyMember]) -> int | None:
    """The family's peak when the members' own figures decide it, else None (sweep)."""
    joined = sum(m.joined for m in members)
    peaks = [m.peak for m in members]
    if joined == sum(peaks):  # the sum now reaches the bound every earlier sum stays under
        return joined
    if sum(1 for peak in peaks if peak) <= 1:  # the others never had anyone
        return max(peaks, default=0)
    return None


def family_peak_sweep(rows: Iterable[Intervals]) -> int:
    """The peak of the family's sum in event time from every member's attendees' intervals."""
    return peak_sweep(rows).peak


def family_figures(
    *,
    primary: FamilyMember,
    replicas: Iterable[FamilyMember],
    intervals: Callable[[], Iterable[Intervals]],
) -> FamilyFigures:
    """The family figures; ``intervals`` (every member's attendees' join intervals) is called only
    when the members' own figures do not decide the peak."""
    ordered = tuple(sorted(replicas, key=lambda r: r.meeting_id))
    members = (primary, *ordered)
    peak = family_peak_known(members)
    if peak is None:
        peak = family_peak_sweep(intervals())
    return FamilyFigures(
        primary_meeting_id=primary.meeting_id,
        family_joined=sum(m.joined for m in members),
        family_peak_joined=peak,
        replicas=ordered,
        version=sum(m.seq for m in members),
    )
