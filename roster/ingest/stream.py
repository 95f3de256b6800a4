"""Ingest a long stream of message bodies (``ingest_file``) on several threads, split by meeting.

One batch at a time leaves a core idle: the process waits while PostgreSQL works, and the
reverse. Here the stream is parsed once, then each event goes to a worker thread chosen by its
meeting, so one worker runs its batch's Python while PostgreSQL runs another's statements.

- A meeting's events all go to one worker, in the order below: workers never wait on each
  other's meeting locks, and never insert the same natural key (a key names one meeting).
- Events of no meeting (Voice Connector, unknown detail types) and rejected bodies go to the
  worker of meeting id "": the stream locks stay in one worker too.
- Each worker's batch is an ordinary :func:`parsed_ingest` transaction on the worker's own
  database connection: the same rules, hooks and quarantine as every other path.
- A worker that fails stops the stream: what the workers committed stays (as with one batch after
  another), nothing more is sent to them, and the error is raised to the caller.

One worker, in the caller's thread, batch after batch as before, on SQLite (the portable store:
one writer at a time is all it allows) and inside a transaction (a worker's own connection could
not see what the caller has not committed, and the caller's rollback could not undo the workers').

The order: a file, unlike a queue, can be read ahead, so each window of parsed events is put in
fold order (by meeting, then the fold's own order, event time first) before it is handed out.
The roster does not depend on arrival order (ROSTER.md), so the answer is the same, and it is
cheaper to reach: a batch holds a few meetings' runs of events instead of one or two events of
every meeting (fewer rows locked, read, written and broadcast), and an event older than one
already folded, whose attendee's history must be read back and folded again, only happens across
windows. The sort is stable: copies of one event keep their order (the first is logged, the rest
counted), and so do bodies of no meeting.
"""

from __future__ import annotations

import itertools
import queue
import threading
import zlib
from collections.abc import Iterable, Iterator

from django.db import connection

from roster.domain.events import ChimeEvent
from roster.domain.fold import fold_order
from roster.ingest.service import IncomingMessage, IngestResult, Parsed, messages_parse, parsed_ingest

BATCH_SIZE = 500
WORKERS = 4  # on two cores: x1.5 with 2 workers over one, about x1.65 with 3 or 4 (docs/benchmarks.md)
_QUEUED_BATCHES = 2  # per worker: parsing runs this far ahead of a slow worker, no further
WINDOW = 20_000  # events read ahead and put in fold order: about 2 KB each parsed, 40 MB


def messages_stream_ingest(
    *,
    messages: Iterable[IncomingMessage],
    workers: int = WORKERS,
    batch_size: int = BATCH_SIZE,
    window: int = WINDOW,
) -> IngestResult:
    """Ingest every message of ``messages`` in batches of up to ``batch_size`` per worker, each
    ``window`` of them in fold order."""
    ordered = _in_fold_order(messages=messages, window=window)
    if workers <= 1 or connection.vendor != "postgresql" or connection.in_atomic_block:
        return _ingest_here(parsed=ordered, batch_size=batch_size)
    pool = [_Worker() for _ in range(workers)]
    pending: list[list[Parsed]] = [[] for _ in pool]
    try:
        for message, event in ordered:
            meeting_id = event.meeting_id if isinstance(event, ChimeEvent) else ""
            index = zlib.crc32(meeting_id.encode("utf-8", "surrogatepass")) % len(pool)
            pending[index].append((message, event))
            if len(pending[index]) >= batch_size:
                pool[index].send(pending[index])
                pending[index] = []
            if any(worker.error for worker in pool):
                break
        else:
            for worker, batch in zip(pool, pending, strict=True):
                if batch:
                    worker.send(batch)
    finally:
        for worker in pool:
            worker.finish()
    for worker in pool:
        if worker.error is not None:
            raise worker.error
    total = IngestResult()
    for worker in pool:
        total.add(worker.result)
    return total


def _in_fold_order(*, messages: Iterable[IncomingMessage], window: int) -> Iterator[Parsed]:
    """Each message with its parse, every ``window`` of them sorted by meeting and fold order."""
    parsed = messages_parse(messages=messages)
    while chunk := list(itertools.islice(parsed, window)):
        yield from sorted(chunk, key=_fold_order)


def _fold_order(parsed: Parsed) -> tuple[str, tuple[int, int, str, str]]:
    """The meeting, then the fold's own order (copies of an event tie: the sort keeps theirs)."""
    event = parsed[1]
    return (event.meeting_id, fold_order(event)) if isinstance(event, ChimeEvent) else ("", _NO_ORDER)


_NO_ORDER = (0, 0, "", "")


def _ingest_here(*, parsed: Iterable[Parsed], batch_size: int) -> IngestResult:
    total = IngestResult()
    batch: list[Parsed] = []
    for pair in parsed:
        batch.append(pair)
        if len(batch) >= batch_size:
            total.add(parsed_ingest(parsed=batch))
            batch = []
    if batch:
        total.add(parsed_ingest(parsed=batch))
    return total


class _Worker:
    """One thread ingesting the batches sent to it, one after the other, on its own connection."""

    def __init__(self) -> None:
        self.result = IngestResult()
        self.error: BaseException | None = None
        self._batches: queue.Queue[list[Parsed] | None] = queue.Queue(maxsize=_QUEUED_BATCHES)
        self._thread = threading.Thread(target=self._run, name="roster-stream-ingest", daemon=True)
        self._thread.start()

    def send(self, batch: list[Parsed]) -> None:
        self._batches.put(batch)

    def finish(self) -> None:
        """No more batches: wait for the thread to ingest what it holds (or drop it, failed)."""
        self._batches.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            while (batch := self._batches.get()) is not None:
                if self.error is None:  # after a failure the rest is taken and dropped
                    try:
                        self.result.add(parsed_ingest(parsed=batch))
                    except BaseException as exc:  # noqa: BLE001 - raised by the caller's thread
                        self.error = exc
        finally:
            connection.close()  # this thread's own connection
