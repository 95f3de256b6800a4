"""Ingest's hook points: *in the transaction*, *after commit*, and *before a worker exits*.

The layers above ingest register into them at start-up (roster.apps): the broadcaster and the
metrics after commit and before exit, the outbound-hook outbox in the transaction. Ingest calls
them and imports none of them, so nothing is announced that was not committed, and a hook that
writes does so in the batch's own transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from roster.domain.plan import MeetingFolded

Tally = tuple[str, str, str, str]  # (queue, event type or rejection code, outcome, source)


@dataclass(frozen=True, slots=True)
class Committed:
    """What one committed ingest transaction did."""

    changes: Sequence[MeetingFolded] = ()  # meetings whose roster changed (seq raised)
    tallies: Counter[Tally] = field(default_factory=Counter)  # messages by outcome
    seconds: float | None = None  # the batch's time, parse to commit; None when not timed


# Called with the batch's changed meetings, inside its transaction: a hook that raises rolls the
# batch back (the messages stay in their queue and come back).
in_transaction: list[Callable[[Sequence[MeetingFolded]], None]] = []
# Called once the batch committed, in this order; a hook that raises is logged, the others run.
after_commit: list[Callable[[Committed], None]] = []
# Called by a forked ingest worker (roster.ingest.stream) before it exits, whose exit skips atexit:
# each sends what the after-commit hooks still hold in this process.
before_exit: list[Callable[[], None]] = []
