"""Draining SQS with boto3: long poll, ingest, then delete what was durably handled.

A message is deleted only after the transaction that stored it (or quarantined it) committed.
A transient failure (database or network down) deletes nothing: SQS redelivers the batch after
its visibility timeout and the natural key makes the redelivery harmless. A message that the
ingest cannot store for any other reason is isolated (the batch is split) and quarantined with
the error, then deleted: one poison message never blocks a queue. A poison message redelivered
(its delete lost to a crash) finds its quarantine row by queue and MessageId and counts one more
delivery there.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import close_old_connections
from django.db.models import F
from django.utils import timezone

from roster.ingest import TRANSIENT_DB_ERRORS, IncomingMessage, IngestResult, messages_ingest_isolating
from roster.models import QueueSource

logger = logging.getLogger(__name__)

TRANSIENT_SQS_ERRORS = (BotoCoreError, ClientError)
HEALTH_WRITE_SECONDS = 5.0
_REGION_IN_URL = re.compile(r"sqs[.-]([a-z0-9-]+)\.amazonaws\.com")


def queue_region(queue_url: str) -> str:
    """The region named in a queue URL, else AWS_REGION (local endpoints name none)."""
    match = _REGION_IN_URL.search(queue_url)
    return match.group(1) if match else settings.AWS_REGION


def sqs_client(
    *,
    queue_url: str = "",
    wait_seconds: int | None = None,
    timeout: float | None = None,
    max_attempts: int = 3,
) -> Any:
    """A boto3 SQS client whose read timeout outlasts the long poll (or is ``timeout``)."""
    wait = settings.SQS_WAIT_SECONDS if wait_seconds is None else wait_seconds
    config = Config(
        connect_timeout=5 if timeout is None else timeout,
        read_timeout=wait + 10 if timeout is None else timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=20,
    )
    return boto3.client(
        "sqs",
        region_name=queue_region(queue_url) if queue_url else settings.AWS_REGION,
        endpoint_url=settings.AWS_ENDPOINT_URL_SQS,
        config=config,
    )


def queue_receive(*, client: Any, queue_url: str, wait_seconds: int, max_messages: int) -> list[dict]:
    response = client.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max_messages,
        WaitTimeSeconds=wait_seconds,
        # SentTimestamp gives the age of the oldest message received (SQS has no such attribute).
        MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
    )
    return response.get("Messages", [])


def messages_oldest_age(*, messages: Sequence[dict], now_ms: int | None = None) -> float:
    """Seconds since the oldest of ``messages`` was sent (0 for none, or none with a SentTimestamp)."""
    stamps = (m.get("Attributes", {}).get("SentTimestamp") for m in messages)
    sent = [int(stamp) for stamp in stamps if stamp]
    if not sent:
        return 0.0
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return max(0.0, (now - min(sent)) / 1000)


def queue_delete(*, client: Any, queue_url: str, messages: Sequence[dict]) -> None:
    """Delete handled messages; one SQS refuses is logged (it comes back and dedupes)."""
    if not messages:
        return
    response = client.delete_message_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
    )
    for failure in response.get("Failed", []):
        logger.warning(
            "delete failed on %s: %s %s (the message will be redelivered and deduplicated)",
            queue_url,
            failure.get("Code"),
            failure.get("Message"),
        )


class BackgroundDeleter:
    """Deletes committed messages off the drain thread, so it is back to receiving at once.

    At most ``pending`` DeleteMessageBatch calls wait or run at a time; one more waits for a
    free place (back-pressure, so a slow SQS cannot pile up receipts until they lapse). A delete
    that fails is logged: the message comes back after its visibility timeout and dedupes.
    """

    def __init__(self, *, threads: int = 2, pending: int = 8) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sqs-delete")
        self._places = threading.BoundedSemaphore(pending)

    def submit(self, *, client: Any, queue_url: str, messages: Sequence[dict]) -> None:
        self._places.acquire()
        try:
            self._executor.submit(self._delete, client, queue_url, messages)
        except BaseException:
            self._places.release()
            raise

    def _delete(self, client: Any, queue_url: str, messages: Sequence[dict]) -> None:
        try:
            queue_delete(client=client, queue_url=queue_url, messages=messages)
        except Exception as exc:  # noqa: BLE001 - the messages come back and dedupe
            logger.warning(
                "delete of %d message(s) on %s failed: %s (they will be redelivered and deduplicated)",
                len(messages),
                queue_url,
                exc,
            )
        finally:
            self._places.release()

    def close(self) -> None:
        """Wait for every delete submitted."""
        self._executor.shutdown(wait=True)


def queue_drain_once(
    *,
    client: Any,
    queue_url: str,
    wait_seconds: int,
    max_messages: int | None = None,
    health: _QueueHealth | None = None,
    deleter: BackgroundDeleter | None = None,
) -> IngestResult:
    """One long poll (plus what is waiting behind it), ingest, delete (by ``deleter`` if given).

    Raises on transient failure, having deleted nothing. ``health`` is told how old the oldest
    message received was (0 when the poll came back empty: nothing was waiting).
    """
    per_receive = max_messages or settings.SQS_MAX_MESSAGES
    received = queue_receive(
        client=client, queue_url=queue_url, wait_seconds=wait_seconds, max_messages=per_receive
    )
    # A full receive of messages that waited means a backlog: gather it (without waiting) into
    # one transaction, up to SQS_BATCH_MESSAGES. Fewer, larger transactions are what make ingest
    # fast; a drain that keeps up skips the receive that would come back empty.
    if received and messages_oldest_age(messages=received) >= settings.SQS_GATHER_AFTER_SECONDS:
        while len(received) % per_receive == 0 and len(received) < settings.SQS_BATCH_MESSAGES:
            more = queue_receive(client=client, queue_url=queue_url, wait_seconds=0, max_messages=per_receive)
            received.extend(more)
            if not more:
                break
    if health is not None:  # gathered ones included; 0 for an empty poll
        health.oldest_age = messages_oldest_age(messages=received)
    if not received:
        return IngestResult()
    close_old_connections()
    try:
        result = messages_ingest_isolating(
            messages=[
                IncomingMessage(body=m["Body"], queue=queue_url, message_id=m["MessageId"], keyed_by_id=True)
                for m in received
            ]
        )
    finally:
        close_old_connections()
    for start in range(0, len(received), 10):  # DeleteMessageBatch takes at most 10
        chunk = received[start : start + 10]
        if deleter is None:
            queue_delete(client=client, queue_url=queue_url, messages=chunk)
        else:
            deleter.submit(client=client, queue_url=queue_url, messages=chunk)
    return result


@dataclass
class DrainLoop:
    """Drain one queue until ``stop`` is set (or, with ``until_empty``, until a poll comes back empty).

    A stop request is honoured between batches: the batch in hand is always finished.
    """

    queue_url: str
    stop: threading.Event
    wait_seconds: int
    until_empty: bool = False
    on_batch: Callable[[IngestResult], None] | None = None
    backoff_seconds: float = 1.0

    def run(self) -> IngestResult:
        total = IngestResult()
        client = sqs_client(queue_url=self.queue_url, wait_seconds=self.wait_seconds)
        health = _QueueHealth(self.queue_url)
        deleter = BackgroundDeleter()
        try:
            self._loop(client=client, health=health, deleter=deleter, total=total)
        finally:
            deleter.close()  # the batches in hand are deleted before the loop says it is done
        health.flush()
        return total

    def _loop(
        self, *, client: Any, health: _QueueHealth, deleter: BackgroundDeleter, total: IngestResult
    ) -> None:
        backoff = self.backoff_seconds
        while not self.stop.is_set():
            try:
                result = queue_drain_once(
                    client=client,
                    queue_url=self.queue_url,
                    wait_seconds=self.wait_seconds,
                    health=health,
                    deleter=deleter,
                )
            except (*TRANSIENT_DB_ERRORS, *TRANSIENT_SQS_ERRORS) as exc:
                logger.warning(
                    "drain %s: %s; nothing deleted, retrying in %.1fs", self.queue_url, exc, backoff
                )
                health.error(exc)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = self.backoff_seconds
            total.add(result)
            health.polled(result.received)
            if self.on_batch is not None and result.received:
                self.on_batch(result)
            if self.until_empty and not result.received:
                break


class _QueueHealth:
    """Poll and error figures for the QueueSource row, written at most every few seconds."""

    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url
        self.pending = 0
        self.last_write = 0.0
        self.last_poll = None
        self.oldest_age: float | None = None  # of the last receive (queue_drain_once sets it)

    def polled(self, received: int) -> None:
        self.pending += received
        self.last_poll = timezone.now()
        if (self.last_poll.timestamp() - self.last_write) >= HEALTH_WRITE_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.last_poll is None:
            return
        figures: dict[str, Any] = {"last_poll_at": self.last_poll}
        if self.oldest_age is not None:
            figures["oldest_age_seconds"] = self.oldest_age
        if self._update(messages_received=F("messages_received") + self.pending, **figures):
            self.pending = 0
            self.last_write = self.last_poll.timestamp()

    def error(self, exc: Exception) -> None:
        self._update(last_error=f"{type(exc).__name__}: {exc}"[:2000], last_error_at=timezone.now())

    def _update(self, **columns: Any) -> bool:
        """Update these columns of the row (never the whole row); False when the database is down."""
        try:
            QueueSource.objects.filter(url=self.queue_url).update(**columns)
        except TRANSIENT_DB_ERRORS:
            return False
        finally:
            close_old_connections()
        return True


def accounts_warn() -> None:
    """Say at start when envelopes from any AWS account are accepted."""
    if not settings.CHIME_ALLOWED_ACCOUNTS:
        logger.warning(
            "CHIME_ALLOWED_ACCOUNTS is empty: envelopes naming any AWS account are accepted; "
            "set it to the account ids whose Chime events you expect"
        )


def queue_sources_seed() -> None:
    """Make sure every queue in SQS_QUEUE_URLS has a QueueSource row (existing rows are kept)."""
    for url in settings.SQS_QUEUE_URLS:
        QueueSource.objects.get_or_create(url=url, defaults={"region": queue_region(url)})


QUEUE_SOURCE_EDITABLE = frozenset({"region", "enabled", "consumers"})


def queue_source_update(*, source: QueueSource, fields: Iterable[str]) -> None:
    """Save the operator's columns only: the drain updates the figures of the same row meanwhile."""
    names = sorted(QUEUE_SOURCE_EDITABLE.intersection(fields))
    if names:
        source.save(update_fields=names)


HEALTH_ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
HEALTH_TIMEOUT_SECONDS = 3.0


def queue_health_refresh(*, sources: Iterable[QueueSource] | None = None) -> list[QueueSource]:
    """Backlog and in-flight counts from GetQueueAttributes for the given (else every enabled) source.

    Runs every QUEUE_HEALTH_SECONDS from Celery beat and from the admin, so it never raises: a
    failure goes to ``last_error`` and leaves the counts unknown (null). Short timeouts, one
    attempt: an unreachable endpoint must not hold a worker. Columns are updated, never the whole
    row, so the drain's concurrent figures are kept.
    """
    chosen = list(QueueSource.objects.filter(enabled=True) if sources is None else sources)
    clients: dict[str, Any] = {}
    for source in chosen:
        now = timezone.now()
        figures: dict[str, Any] = {"health_checked_at": now}
        try:
            region = queue_region(source.url)
            if region not in clients:
                clients[region] = sqs_client(
                    queue_url=source.url, timeout=HEALTH_TIMEOUT_SECONDS, max_attempts=1
                )
            attributes = clients[region].get_queue_attributes(
                QueueUrl=source.url, AttributeNames=HEALTH_ATTRIBUTES
            )["Attributes"]
            figures["backlog"] = int(attributes["ApproximateNumberOfMessages"])
            figures["in_flight"] = int(attributes["ApproximateNumberOfMessagesNotVisible"])
            if figures["backlog"] == 0 and figures["in_flight"] == 0:
                figures["oldest_age_seconds"] = 0.0  # nothing waiting: no lag, whatever the drain saw
        except Exception as exc:  # noqa: BLE001 (recorded for the operator, never raised)
            logger.warning("queue health %s: %s: %s", source.url, type(exc).__name__, exc)
            last_error = f"GetQueueAttributes: {type(exc).__name__}: {exc}"[:2000]
            figures.update(backlog=None, in_flight=None, last_error=last_error, last_error_at=now)
        try:
            QueueSource.objects.filter(pk=source.pk).update(**figures)
        except TRANSIENT_DB_ERRORS:
            logger.warning("queue health %s: database unavailable, not recorded", source.url)
            continue
        for name, value in figures.items():
            setattr(source, name, value)
    return chosen
