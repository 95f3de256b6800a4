"""roster.domain.peak: the sweep is the truth; peak_advance answers exactly or asks for a sweep.

Each rule of peak_advance is shown by an example that it takes and one that it must refuse; the
properties in test_fold_properties.py then try every kind of move.
"""

from __future__ import annotations

import json

import pytest

from roster.dev.chime import BASE_TS as T
from roster.domain.peak import PeakState, peak_advance, peak_sweep, presence_deltas, steps_moved

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)


def test_presence_deltas_and_peak_sweep():
    intervals_a = [[T + 1, T + 5, 7], [T + 8, None, None]]
    intervals_b = [[T + 5, T + 9, 9]]
    assert presence_deltas(intervals_a) + presence_deltas(intervals_b) == {
        (T + 1, 3, 1): 1,
        (T + 5, 7, -1): 1,
        (T + 8, 3, 1): 1,
        (T + 5, 3, 1): 1,
        (T + 9, 9, -1): 1,
    }
    # At T+5 B joins (rank 3) before A leaves (rank 7): two at once, first reached there.
    assert peak_sweep([intervals_a, intervals_b]) == PeakState(
        joined=1, peak=2, last=(T + 9, 9), peak_at=(T + 5, 3)
    )
    assert peak_sweep([]) == PeakState()


def advanced(rows: list[list], changes: list[tuple[list, list]]) -> tuple[PeakState | None, PeakState]:
    """(peak_advance of the moves from the sweep of ``rows``, the sweep of the rows after them)."""
    after = list(rows)
    for old, new in changes:
        if old in after:
            after.remove(old)
        after.append(new)
    return peak_advance(peak_sweep(rows), steps_moved(changes)), peak_sweep(after)


def test_steps_after_the_last_counted_are_counted_in_order():
    a, b = [[T + 1, None, None]], [[T + 2, None, None]]
    result, truth = advanced([a, b], [(a, [[T + 1, T + 5, 7]]), ([], [[T + 6, None, None]])])
    assert result == truth == PeakState(joined=2, peak=2, last=(T + 6, 3), peak_at=(T + 2, 3))
    state = peak_sweep([a])
    assert peak_advance(state, steps_moved([])) is state  # nothing moved


def test_late_joins_while_at_the_peak_raise_it_by_as_many():
    """A join burst out of order: three joined, two more arrive with earlier times."""
    rows = [[[T + n, None, None]] for n in (3, 4, 5)]
    result, truth = advanced(rows, [([], [[T + 1, None, None]]), ([], [[T + 2, None, None]])])
    assert (result.joined, result.peak) == (truth.joined, truth.peak) == (5, 5)
    assert result.last == truth.last and result.peak_at >= truth.peak_at  # a bound, never earlier


def test_late_join_of_a_meeting_below_its_peak_asks_for_a_sweep():
    rows = [[[T + 1, T + 4, 7]], [[T + 2, None, None]]]  # peak 2, one joined now
    result, truth = advanced(rows, [([], [[T + 3, None, None]])])
    assert result is None and truth.peak == 3


def test_late_ends_after_the_peak_lower_only_the_count():
    rows = [[[T + 1, None, None]], [[T + 2, None, None]], [[T + 9, None, None]]]
    a = rows[0]
    result, truth = advanced(rows, [(a, [[T + 1, T + 5, 7]])])  # the peak (3) was reached at T+9
    assert result is None and truth.peak == 2  # T+5 is before it: only a sweep can tell
    result, truth = advanced(rows[:2], [(a, [[T + 1, T + 5, 7]])])  # peak 2 reached at T+2
    assert result is not None and truth.last == (T + 5, 7)
    assert (
        (result.joined, result.peak, result.peak_at)
        == (truth.joined, truth.peak, truth.peak_at)
        == (
            1,
            2,
            (T + 2, 3),
        )
    )


def test_late_end_before_the_peak_vanishing_steps_and_mixes_ask_for_a_sweep():
    a, b = [[T + 1, T + 8, 7]], [[T + 2, None, None]]
    state = peak_sweep([a, b])
    assert peak_advance(state, steps_moved([(b, [[T + 2, T + 4, 7]])])) is not None  # after T+2
    assert peak_advance(state, steps_moved([(a, [])])) is None  # steps vanished
    assert peak_advance(state, steps_moved([([], [[T, T + 3, 7]])])) is None  # a late join and end
    stale = PeakState(joined=0, peak=1, last=(T + 1, 3), peak_at=(T + 1, 3))
    assert peak_advance(stale, steps_moved([([], [[T + 2, T + 3, 7]])])) is not None
    assert peak_advance(stale, {(T + 5, 7, -1): 1}) is None  # the count would go below zero


def test_marks_survive_the_meeting_row_and_a_row_without_marks_is_unknown():
    state = peak_sweep([[[T + 1, T + 5, 7]], [[T + 2, None, None]]])
    marks = json.loads(json.dumps(state.marks()))
    assert PeakState.stored(joined=state.joined, peak=state.peak, marks=marks) == state
    assert PeakState.stored(joined=0, peak=0, marks=PeakState().marks()) == PeakState()
    assert PeakState.stored(joined=3, peak=4, marks=None) is None
