"""peak_joined: the most attendees joined at once, evaluated after each event in fold order.

Join intervals are counted steps: +1 at (start, join rank), -1 at (end, end rank). Within one
(timestamp, rank) every step has the same sign, so the count after each step peaks where the
count after each event does, and :func:`peak_sweep` over every row is the truth. A meeting keeps
four figures instead of its history (:class:`PeakState`), and :func:`peak_advance` counts a
batch's moved steps with them when that is exact without the history:

1. steps after the last one counted: in order;
2. new joins before it while the meeting is at its peak (a join burst out of order): each raises
   every later count by one, so the peak by as many;
3. new ends before it but after the peak was reached: no count before them moves, none rises.

Anything else answers None and the caller sweeps (Chime caps a meeting at 250 attendees).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from roster.domain.fold import JOIN_RANK, Position

Step = tuple[int, int, int]  # (timestamp, rank, +1 join / -1 end)
Intervals = Iterable[Sequence[int | None]]  # AttendeeState.intervals: [start, end or None, end rank]


@dataclass(frozen=True, slots=True)
class PeakState:
    """What a meeting keeps of its steps: enough to apply most batches without a sweep."""

    joined: int = 0
    peak: int = 0
    last: Position | None = None  # the latest step counted; None before the first
    # At or after the step where the count first reached ``peak`` (exact after a sweep, a bound
    # after rule 2); None while the peak is 0.
    peak_at: Position | None = None

    def marks(self) -> dict[str, Any]:
        """The positions as stored (``Meeting.peak_marks``); joined and peak have columns of their own."""
        return {
            "last": list(self.last) if self.last is not None else None,
            "at": list(self.peak_at) if self.peak_at is not None else None,
        }

    @classmethod
    def stored(cls, *, joined: int, peak: int, marks: Mapping[str, Any] | None) -> PeakState | None:
        """The state of a stored meeting; None when it has no marks (stored before they existed)."""
        if not marks:
            return None
        last, peak_at = marks["last"], marks["at"]
        return cls(
            joined=joined,
            peak=peak,
            last=tuple(last) if last else None,
            peak_at=tuple(peak_at) if peak_at else None,
        )


def presence_deltas(intervals: Intervals) -> Counter[Step]:
    """Join intervals as counted steps: +1 at (start, join rank), -1 at (end, end rank)."""
    deltas: Counter[Step] = Counter()
    for start, end, end_rank in intervals:
        deltas[(start, JOIN_RANK, 1)] += 1
        if end is not None:
            deltas[(end, end_rank, -1)] += 1
    return deltas


def steps_moved(changes: Iterable[tuple[Intervals, Intervals]]) -> Counter[Step]:
    """The steps that appeared (+) or vanished (-) when attendees' intervals went from old to new."""
    diff: Counter[Step] = Counter()
    for old, new in changes:
        diff.update(presence_deltas(new))
        diff.subtract(presence_deltas(old))
    return Counter({step: count for step, count in diff.items() if count})


def peak_sweep(rows: Iterable[Intervals]) -> PeakState:
    """The state from every row's intervals: the truth."""
    deltas: Counter[Step] = Counter()
    for intervals in rows:
        deltas.update(presence_deltas(intervals))
    swept = _steps_count(PeakState(), sorted(deltas.items()))
    if swept is None:
        raise ValueError("join intervals with an end before their start: the fold never makes them")
    return swept


def peak_advance(state: PeakState, moved: Mapping[Step, int]) -> PeakState | None:
    """``state`` with the moved steps counted, or None when only a sweep can tell (see above)."""
    if not moved:
        return state
    last = state.last
    late = {step: count for step, count in moved.items() if last is not None and step[:2] <= last}
    joined, peak, peak_at = state.joined, state.peak, state.peak_at
    if late:
        added = sum(late.values())
        if any(count < 0 for count in late.values()):
            return None
        if all(sign == 1 for _, _, sign in late) and joined == peak:  # rule 2
            joined, peak, peak_at = joined + added, peak + added, last
        elif all(sign == -1 for _, _, sign in late) and peak_at is not None and min(late)[:2] > peak_at:
            joined -= added  # rule 3
        else:
            return None
    fresh = sorted((step, count) for step, count in moved.items() if step not in late)
    return _steps_count(PeakState(joined=joined, peak=peak, last=last, peak_at=peak_at), fresh)


def _steps_count(state: PeakState, steps: Sequence[tuple[Step, int]]) -> PeakState | None:
    """Rule 1: counted steps after everything in ``state``, in order (None if a count goes wrong)."""
    joined, peak, peak_at = state.joined, state.peak, state.peak_at
    for (ts, rank, sign), count in steps:
        if count < 0:
            return None  # a step after everything counted cannot vanish: the state is stale
        joined += sign * count
        if joined < 0:
            return None
        if joined > peak:
            peak, peak_at = joined, (ts, rank)
    last = steps[-1][0][:2] if steps else state.last
    return PeakState(joined=joined, peak=peak, last=last, peak_at=peak_at)
