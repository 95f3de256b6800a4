"""roster.domain.family: the peak of the family's sum, by example and by property.

The oracle of the properties is independent of roster.domain.peak: at every (timestamp, rank)
where anything changes, count the intervals open there, and take the most.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from roster.dev.chime import BASE_TS as T
from roster.domain.family import FamilyMember, family_figures, family_peak_known, family_peak_sweep
from roster.domain.fold import JOIN_RANK
from roster.domain.peak import peak_sweep

LEFT, DROPPED, ENDED = 7, 6, 9


def member(meeting_id: str, rows: list[list[list]]) -> FamilyMember:
    state = peak_sweep(rows)
    return FamilyMember(meeting_id=meeting_id, joined=state.joined, peak=state.peak)


def figures(members: dict[str, list[list[list]]], *, primary: str = "p"):
    swept: list[bool] = []

    def intervals():
        swept.append(True)
        return [row for rows in members.values() for row in rows]

    replicas = [member(m, rows) for m, rows in members.items() if m != primary]
    result = family_figures(primary=member(primary, members[primary]), replicas=replicas, intervals=intervals)
    return result, bool(swept)


def test_peak_of_the_sum_is_not_the_sum_of_peaks():
    """Two people in the primary until T+10, then two others in a replica: never four at once."""
    members = {
        "p": [[[T + 1, T + 10, LEFT]], [[T + 2, T + 10, LEFT]]],
        "r1": [[[T + 11, None, None]], [[T + 12, None, None]]],
    }
    result, swept = figures(members)
    assert (result.family_joined, result.family_peak_joined, swept) == (2, 2, True)
    assert [(r.meeting_id, r.joined) for r in result.replicas] == [("r1", 2)]
    assert result.frame_fields() == {
        "primary_meeting_id": "p",
        "family_joined": 2,
        "family_peak_joined": 2,
        "replicas": [{"meeting_id": "r1", "joined": 2}],
    }
    assert result.as_dict()["replicas"] == 1


def test_same_grain_joins_in_one_member_and_leaves_in_another_overlap():
    """At T+5 a join (rank 3) in the replica comes before a leave (rank 7) in the primary."""
    members = {"p": [[[T + 1, T + 5, LEFT]]], "r1": [[[T + 5, None, None]]]}
    assert figures(members)[0].family_peak_joined == 2


def test_a_join_burst_needs_no_sweep():
    members = {"p": [[[T + 1, None, None]]], **{f"r{i}": [[[T + i, None, None]]] * 3 for i in range(40)}}
    result, swept = figures(members)
    assert (result.family_joined, result.family_peak_joined, swept) == (121, 121, False)
    assert [r.meeting_id for r in result.replicas] == sorted(f"r{i}" for i in range(40))


def test_only_one_member_ever_had_anyone():
    members = {"p": [], "r1": [[[T + 1, T + 3, DROPPED]], [[T + 2, None, None]]]}
    result, swept = figures(members)
    assert (result.family_joined, result.family_peak_joined, swept) == (1, 2, False)
    assert family_peak_known([]) == 0


def oracle(rows: list[list[list]]) -> int:
    intervals = [iv for row in rows for iv in row]
    grains = {(s, JOIN_RANK) for s, _, _ in intervals} | {(e, r) for _, e, r in intervals if e is not None}
    return max(
        (
            sum(1 for s, e, r in intervals if (s, JOIN_RANK) <= g and (e is None or g < (e, r)))
            for g in grains
        ),
        default=0,
    )


@st.composite
def attendee(draw) -> list[list]:
    """One attendee's join intervals, as the fold makes them (ordered, each ended but the last)."""
    ts, out = T + draw(st.integers(0, 5)), []
    for _ in range(draw(st.integers(1, 3))):
        end = ts + draw(st.integers(0, 4))
        rank = draw(st.sampled_from((DROPPED, LEFT, 8, ENDED)))
        out.append([ts, end, rank])
        ts = end + draw(st.integers(1, 3))
    if draw(st.booleans()):
        out[-1] = [out[-1][0], None, None]
    return out


families = st.dictionaries(
    st.sampled_from(["p", "r1", "r2", "r3"]), st.lists(attendee(), max_size=5), min_size=1
).map(lambda d: {"p": [], **d})


@settings(max_examples=150, deadline=None)
@given(families, st.randoms(use_true_random=False))
def test_family_peak_properties(members: dict[str, list], rnd: random.Random):
    result, _ = figures(members)
    own = [member(m, rows) for m, rows in members.items()]
    all_rows = [row for rows in members.values() for row in rows]
    assert result.family_peak_joined == oracle(all_rows)
    assert max(m.peak for m in own) <= result.family_peak_joined <= sum(m.peak for m in own)
    assert result.family_joined == sum(m.joined for m in own) <= result.family_peak_joined
    known = family_peak_known(own)
    assert known is None or known == result.family_peak_joined  # the shortcut is never wrong
    shuffled = list(all_rows)
    rnd.shuffle(shuffled)
    assert family_peak_sweep(shuffled) == result.family_peak_joined  # order does not matter
    reordered = family_figures(primary=own[0], replicas=reversed(own[1:]), intervals=lambda: shuffled)
    assert reordered == result
