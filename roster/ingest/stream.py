"""Ingest a long stream of message bodies (``ingest_file``) on worker processes, split by meeting.

One batch at a time leaves a core idle: the process waits while PostgreSQL works, and the
reverse; and threads of one process run their Python on one core at a time (the GIL held worker
threads to about 80 % of one core). Here each message goes to a forked worker process chosen by
its meeting, so the workers' Python runs on both cores while PostgreSQL runs others' statements.

- The split reads the meeting id off the body's bytes (the first ``meetingId`` value), without
  parsing it: the reader stays cheap, and the parsing runs in the workers, side by side. The split
  only decides where the work goes, never what is stored: a body sent to an unexpected worker is
  ingested by the same rules, and two workers holding one meeting's events serialise on its row
  lock, as the drain's consumers do. Events of no meeting and bodies that are not JSON share one
  worker, and the Voice Connector stream locks with them.
- Each worker parses what it receives, puts each window of it in fold order (below) and ingests
  batches of ``batch_size``, each an ordinary :func:`parsed_ingest` transaction on the worker's
  own database connection: the same rules, hooks and quarantine as every other path.
- A worker that fails stops the stream: what the workers committed stays (as with one batch after
  another), the rest of the stream is not read, and the error is raised to the caller.
- A worker runs ``hooks.before_exit`` before it exits (a forked process's exit skips atexit): the
  live clients and the metrics hear of everything it committed.

One worker, in the caller's process, batch after batch, on SQLite (the portable store: one writer
at a time is all it allows) and inside a transaction (a worker's own connection could not see what
the caller has not committed, and the caller's rollback could not undo the workers').

The order: a file, unlike a queue, can be read ahead, so each window of parsed events is put in
fold order (by meeting, then the fold's own order, event time first) before it is ingested. The
roster does not depend on arrival order (ROSTER.md), so the answer is the same, and it is cheaper
to reach: a batch holds a few meetings' runs of events instead of one or two events of every
meeting (fewer rows locked, read, written and broadcast), and an event older than one already
folded, whose attendee's history must be read back and folded again, only happens across
windows. The sort is stable: copies of one event keep their order (the first is logged, the rest
counted), and so do bodies of no meeting.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import pickle
import zlib
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection

from django.db import connection, connections

from roster.domain.events import ChimeEvent
from roster.domain.fold import fold_order
from roster.ingest import hooks
from roster.ingest.service import IncomingMessage, IngestResult, Parsed, messages_parse, parsed_ingest

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
WORKERS = 6  # processes: on two cores, 6 kept both busiest (docs/benchmarks.md)
WINDOW = 40_000  # events read ahead in all, each worker its share, in fold order: 2 KB each parsed
CHUNK = 200  # messages per write to a worker; a failed worker is looked for at each write


def messages_stream_ingest(
    *,
    messages: Iterable[IncomingMessage],
    workers: int = WORKERS,
    batch_size: int = BATCH_SIZE,
    window: int = WINDOW,
) -> IngestResult:
    """Ingest every message of ``messages`` in batches of up to ``batch_size`` per worker, each
    ``window`` of them in fold order. It forks: a command's own process calls it (``ingest_file``),
    never a server's or a Celery worker's."""
    if workers <= 1 or connection.vendor != "postgresql" or connection.in_atomic_block:
        return _ingest_here(messages=messages, batch_size=batch_size, window=window)
    connections.close_all()  # a forked worker must never share this process's connections
    pool: list[_Worker] = []
    try:
        for _ in range(workers):  # in the try: a fork that fails still ends the ones started
            pool.append(_Worker(batch_size=batch_size, window=max(1, window // workers)))
        for message in messages:
            if pool[_meeting_hash(message.body) % len(pool)].send(message):
                break  # a worker failed: read no further
    finally:
        for worker in pool:  # every worker told first: each ingests what it holds meanwhile
            worker.close()
        outcomes = [worker.outcome() for worker in pool]
    total = IngestResult()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        total.add(outcome)
    return total


def _ingest_here(*, messages: Iterable[IncomingMessage], batch_size: int, window: int) -> IngestResult:
    total = IngestResult()
    batch: list[Parsed] = []
    for pair in _in_fold_order(messages=messages, window=window):
        batch.append(pair)
        if len(batch) >= batch_size:
            total.add(parsed_ingest(parsed=batch))
            batch = []
    if batch:
        total.add(parsed_ingest(parsed=batch))
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
_MEETING_FIELD = b"meetingId"
_NOT_IN_VALUE = b'\\": \t\r\n'  # quotes, escapes (an SNS Message holds the event as a string), spaces


def _meeting_hash(body: str | bytes) -> int:
    """A number that is the same for every body of one meeting: the CRC-32 of the first
    ``meetingId`` value as written, its quotes, escapes and spaces left out (0 for none)."""
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    start = raw.find(_MEETING_FIELD)
    if start < 0:
        return 0
    start += len(_MEETING_FIELD)
    ends = [end for end in (raw.find(b",", start), raw.find(b"}", start)) if end >= 0]
    return zlib.crc32(raw[start : min(ends, default=len(raw))].translate(None, _NOT_IN_VALUE))


_Fields = tuple[str | bytes, str, str, bool, str]  # an IncomingMessage's, in order: cheap to pickle


class _Worker:
    """A forked process ingesting the messages sent to it; its outcome (its IngestResult, or the
    error that stopped it) comes back on the same pipe."""

    def __init__(self, *, batch_size: int, window: int) -> None:
        context = multiprocessing.get_context("fork")
        self._pipe, theirs = context.Pipe()
        self._process = context.Process(
            target=_work, args=(theirs, batch_size, window), name="roster-stream-ingest", daemon=True
        )
        self._process.start()
        theirs.close()
        self._chunk: list[_Fields] = []
        self._outcome: IngestResult | BaseException | None = None

    def send(self, message: IncomingMessage) -> bool:
        """Queue one message; True once this worker has failed."""
        self._chunk.append(
            (message.body, message.queue, message.message_id, message.keyed_by_id, message.source)
        )
        if len(self._chunk) < CHUNK:
            return False
        self._put(self._chunk)
        self._chunk = []
        if self._outcome is None and self._pipe.poll():  # it only answers early when it failed
            self._outcome = self._read()
        return self._outcome is not None

    def close(self) -> None:
        """No more messages: the worker ingests what it holds, then answers."""
        if self._outcome is None:
            if self._chunk:
                self._put(self._chunk)
            self._put(None)

    def outcome(self) -> IngestResult | BaseException:
        """Wait for the worker's outcome and its exit."""
        if self._outcome is None:
            self._outcome = self._read()
        self._process.join()
        self._pipe.close()
        return self._outcome

    def _put(self, item: list[_Fields] | None) -> None:
        with contextlib.suppress(OSError):  # it stopped: its outcome says why
            self._pipe.send(item)

    def _read(self) -> IngestResult | BaseException:
        try:
            return self._pipe.recv()
        except EOFError:
            self._process.join()
            return RuntimeError(f"an ingest worker died (exit code {self._process.exitcode})")


def _work(pipe: Connection, batch_size: int, window: int) -> None:
    """A worker process: ingest what comes until the end mark, send the outcome, then run the
    before-exit hooks."""
    outcome: IngestResult | BaseException
    try:
        outcome = _ingest_here(messages=_received(pipe), batch_size=batch_size, window=window)
    except BaseException as exc:  # noqa: BLE001 - raised by the caller's process
        logger.exception("stream ingest worker failed")
        outcome = _picklable(exc)
    finally:
        connections.close_all()
    pipe.send(outcome)  # at once: a failure stops the reader (the caller waits for this exit anyway)
    pipe.close()
    for hook in hooks.before_exit:
        try:
            hook()
        except Exception:  # noqa: BLE001 - what is committed stays committed; the rest must run
            logger.exception("stream ingest worker: %s failed before exit", hook)


def _received(pipe: Connection) -> Iterator[IncomingMessage]:
    while (chunk := pipe.recv()) is not None:
        for fields in chunk:
            yield IncomingMessage(*fields)


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any exception that does not travel is told as text
        return RuntimeError(f"an ingest worker failed: {type(exc).__name__}: {exc}")
    return exc
