"""Reconcile's caller half (shared/ROSTER.md "Repairs from the Chime API", docs/reconcile.md): the
Chime SDK Meetings API asked about the meetings the roster holds as live, and what it says repaired
through the one ingest path.

One check of one meeting: read the roster (``reconcile_view_get``), call GetMeeting in the
meeting's control region and, when the meeting exists, ListAttendees (every page), plan the repairs
(``reconcile_plan``, pure) and ingest them (``repairs_ingest``; several meetings' repairs in one
call). Only a NotFound answer means the meeting is gone: a throttled, failed or unreachable call is
not a check, and nothing is concluded from it.

Why it is built as it is:

- **The budget is a hard rate shared by every process.** Chime's quota is per account (about 10
  calls a second by default), and reconcile must leave room for whoever else calls it. Every HTTP
  attempt (boto3's retries included, through its ``before-send`` event) takes the next free slot of
  a pacer kept in Redis: a slot every ``1 / RECONCILE_CALLS_PER_SECOND`` seconds, in Redis's
  clock, so calls are spread evenly and two workers, the command and
  :func:`chime_meeting_lookup` share one budget. A cycle lasts as long as the budget needs:
  ``RECONCILE_SECONDS`` is only the shortest period between cycles.
- **boto3's adaptive retry mode** backs off on ThrottlingException (someone else used the quota),
  so a throttled moment delays a check instead of losing it.
- **Order: stalest first.** A cycle checks active meetings whose latest known event is oldest
  first (a lost MeetingEnded shows as a meeting gone quiet), then meetings with no known event; an
  ``unknown`` meeting is checked once ever (``Meeting.reconciled_at``).
- **One check per meeting at a time, one cycle at a time**, across processes: Redis locks under
  ``ROSTER_NAMESPACE`` (redis-py's, ``SET NX PX`` with a token; they expire if their holder dies).
  A meeting locked elsewhere is skipped this cycle; a cycle that finds another running returns
  at once (the beat tick that would overlap a long cycle is dropped).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import redis
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import connections
from django.utils import timezone
from redis.lock import Lock

from roster.domain.reconcile import (
    ChimeAttendee,
    ChimeMeeting,
    MeetingView,
    chime_attendees_from_api,
    chime_meeting_from_api,
    reconcile_plan,
)
from roster.domain.repairs import Repairs
from roster.ingest import repairs_ingest
from roster.live import shared_redis
from roster.live.shared_redis import redis_client
from roster.models import Meeting
from roster.read.selectors import reconcile_due_list, reconcile_view_get

logger = logging.getLogger(__name__)

SERVICE = "chime-sdk-meetings"
# boto3's adaptive mode: client-side rate limiting after a throttle, and retries. Five attempts in
# all (the default is three): a check survives a few throttled seconds.
CLIENT_CONFIG = Config(
    retries={"mode": "adaptive", "total_max_attempts": 5}, connect_timeout=5, read_timeout=10
)
PAGE_SIZE = 100  # ListAttendees' largest page: the fewest calls per meeting
# Quiet checks (no synthesized event, no primary learned: only the missed list or blanks to store)
# gather into one ingest transaction, up to this many ...
REPAIRS_BATCH = 20
REPAIRS_FLUSH_SECONDS = 1.0  # ... or fewer, once the first of them has waited this long;
# a check that repairs something is ingested at once, with the quiet ones gathered before it.
MEETING_LOCK_SECONDS = 120.0  # a check holds its meeting at most this long if its process dies
CYCLE_LOCK_SECONDS = 120.0  # renewed after every meeting while a cycle runs

# The pacer: KEYS[1] holds the next free slot (microseconds, Redis's clock); ARGV[1] is the
# interval between calls. Returns how long the caller waits for its slot (microseconds).
_PACE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local slot = math.max(t, tonumber(redis.call('GET', KEYS[1]) or '0'))
local next = slot + interval
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.floor((next - t) / 1000) + 1000)
return slot - t
"""


def redis_key(*parts: str) -> str:
    """A reconcile key in this deployment's namespace (as drain slots are: roster.sources.slots)."""
    return shared_redis.redis_key("reconcile", *parts)


_redis_lock = threading.Lock()


_pace_scripts: dict[int, Any] = {}


def budget_wait(*, calls_per_second: float | None = None) -> float:
    """Take the next call slot of the deployment's Chime API budget and sleep until it comes; the
    seconds waited. Slots are ``1 / RECONCILE_CALLS_PER_SECOND`` apart across every process, so
    the rate is a hard one and calls are spread evenly (no burst after a quiet minute)."""
    rate = calls_per_second or settings.RECONCILE_CALLS_PER_SECOND
    if rate <= 0:
        raise ValueError("RECONCILE_CALLS_PER_SECOND must be positive")
    client = redis_client()
    with _redis_lock:  # EVALSHA, the script loaded once per client
        script = _pace_scripts.get(id(client))
        if script is None:
            script = _pace_scripts[id(client)] = client.register_script(_PACE)
    waited_us = int(script(keys=[redis_key("calls")], args=[int(1_000_000 / rate)]))
    if waited_us > 0:
        time.sleep(waited_us / 1_000_000)
    return waited_us / 1_000_000


_clients_lock = threading.Lock()
_clients: dict[tuple[str, ...], Any] = {}


def chime_client(*, region: str) -> Any:
    """A boto3 Chime SDK Meetings client for one control region (a meeting is visible only in the
    region that created it), every HTTP attempt paced by :func:`budget_wait`. Plain boto3, so
    ``AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS`` (a local endpoint) reaches it; cached per region and
    endpoint."""
    endpoint = (
        os.environ.get("AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS") or os.environ.get("AWS_ENDPOINT_URL") or ""
    )
    key = (region, endpoint)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = boto3.session.Session().client(SERVICE, region_name=region, config=CLIENT_CONFIG)
            client.meta.events.register(
                f"before-send.{client.meta.service_model.service_id.hyphenize()}", _paced
            )
            _clients[key] = client
        return client


def _paced(**_: Any) -> None:
    """botocore's ``before-send`` handler: every attempt, retries included, within the budget.
    Returning None lets the request go."""
    budget_wait()


def _not_found(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "NotFoundException"


def chime_meeting_get(*, client: Any, meeting_id: str) -> ChimeMeeting | None:
    """GetMeeting: the meeting, or None when Chime answers NotFound (it ended, or it never lived in
    this region). Any other failure raises: it says nothing about the meeting."""
    try:
        return chime_meeting_from_api(response=client.get_meeting(MeetingId=meeting_id))
    except ClientError as error:
        if _not_found(error):
            return None
        raise


def chime_attendees_list(*, client: Any, meeting_id: str) -> list[ChimeAttendee]:
    """ListAttendees, every page (the model has no paginator: NextToken is followed here)."""
    pages, token = [], None
    while True:
        params: dict[str, Any] = {"MeetingId": meeting_id, "MaxResults": PAGE_SIZE}
        if token:
            params["NextToken"] = token
        page = client.list_attendees(**params)
        pages.append(page)
        token = page.get("NextToken")
        if not token:
            return chime_attendees_from_api(pages=pages)


def chime_meeting_lookup(*, meeting_id: str, region: str | None = None) -> ChimeMeeting | None:
    """GetMeeting for one meeting, within reconcile's budget (the same Redis pacer, so it and
    every reconcile cycle of the deployment stay under RECONCILE_CALLS_PER_SECOND together): the
    parsed meeting, or None when Chime answers NotFound. ``region`` defaults to
    CHIME_CONTROL_REGION; with neither, ValueError. Any failure other than NotFound raises
    (botocore's ClientError or BotoCoreError): it is not an answer. For callers that need to know
    a meeting before its first event (issue #15, point 4)."""
    region = region or settings.CHIME_CONTROL_REGION
    if not region:
        raise ValueError("no region: pass one, or set CHIME_CONTROL_REGION")
    return chime_meeting_get(client=chime_client(region=region), meeting_id=meeting_id)


@dataclass
class ReconcileSummary:
    """What reconcile did, for the command's last line, the task's result and the logs.
    ``checked`` counts completed checks only; ``failed`` those a call error interrupted,
    ``skipped`` meetings with no region to ask in, ``busy`` those another check held."""

    checked: int = 0
    ended: int = 0
    removed: int = 0
    added: int = 0
    families: int = 0
    failed: int = 0
    skipped: int = 0
    busy: int = 0
    cycle_running_elsewhere: bool = False
    seconds: float = 0.0

    def line(self) -> str:
        """The contract's last line (shared/DESIGN.md, ``reconcile``)."""
        return (
            f"checked={self.checked} ended={self.ended} removed={self.removed} "
            f"added={self.added} families={self.families}"
        )

    COUNTS = ("checked", "ended", "removed", "added", "families", "failed", "skipped", "busy")

    def add(self, other: ReconcileSummary) -> None:
        """Totals of a run of cycles (the command's last line)."""
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds += other.seconds

    def as_dict(self) -> dict[str, Any]:
        counts = {name: getattr(self, name) for name in self.COUNTS}
        elsewhere = self.cycle_running_elsewhere
        return counts | {"seconds": round(self.seconds, 3), "cycle_running_elsewhere": elsewhere}


@dataclass
class _Checked:
    """One check's outcome, held (with its meeting's lock) until its repairs are ingested."""

    repairs: Repairs
    lock: Lock
    complete: bool  # GetMeeting answered (found or NotFound) and, when found, ListAttendees too


@dataclass
class _Batch:
    """Checks whose repairs wait for one ``repairs_ingest`` call."""

    summary: ReconcileSummary
    pending: list[_Checked] = field(default_factory=list)
    since: float = 0.0

    def add(self, checked: _Checked) -> None:
        """Quiet checks (nothing to show) gather; a repair goes out at once, with them."""
        if not self.pending:
            self.since = time.monotonic()
        self.pending.append(checked)
        shows = bool(checked.repairs.bodies) or checked.repairs.primary_learned
        if (
            shows
            or len(self.pending) >= REPAIRS_BATCH
            or time.monotonic() - self.since >= REPAIRS_FLUSH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        """Ingest the pending repairs in one transaction, mark the completed checks, release."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        try:
            repairs_ingest(repairs=[checked.repairs for checked in pending])
            done = [checked.repairs.meeting_id for checked in pending if checked.complete]
            Meeting.objects.filter(meeting_id__in=done).update(reconciled_at=timezone.now())
        finally:
            for checked in pending:
                _release(checked.lock)
        for checked in pending:
            repairs = checked.repairs
            self.summary.checked += checked.complete
            self.summary.failed += not checked.complete
            self.summary.ended += repairs.ended
            self.summary.removed += len(repairs.removed)
            self.summary.added += len(repairs.added)
            self.summary.families += repairs.primary_learned


def _release(lock: Lock) -> None:
    try:
        lock.release()
    except redis.exceptions.LockError:  # expired, and perhaps taken since: not ours to release
        logger.warning("reconcile lock %s had expired", lock.name)


def meeting_region(*, view: MeetingView) -> str:
    """Where to ask about a meeting: its control region, else CHIME_CONTROL_REGION, else ""."""
    return view.control_region or settings.CHIME_CONTROL_REGION


def _meeting_check(*, meeting_id: str, batch: _Batch, force: bool = False) -> None:
    """One check of one meeting under its lock; its repairs join ``batch``."""
    summary = batch.summary
    lock = redis_client().lock(redis_key("meeting", meeting_id), timeout=MEETING_LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        summary.busy += 1
        return
    try:
        view = reconcile_view_get(meeting_id=meeting_id)
        region = meeting_region(view=view) if view is not None else ""
        if view is None or not region or (view.status == Meeting.Status.ENDED and not force):
            summary.skipped += 1
            _release(lock)
            return
        client = chime_client(region=region)
        attendees: list[ChimeAttendee] | None = None
        try:
            meeting = chime_meeting_get(client=client, meeting_id=meeting_id)
        except (ClientError, BotoCoreError) as error:
            logger.warning("reconcile %s: GetMeeting failed (not a check): %s", meeting_id, error)
            summary.failed += 1
            _release(lock)
            return
        if meeting is not None:
            try:
                attendees = chime_attendees_list(client=client, meeting_id=meeting_id)
            except (ClientError, BotoCoreError) as error:
                logger.warning(
                    "reconcile %s: ListAttendees failed (attendees not checked): %s", meeting_id, error
                )
        repairs = reconcile_plan(view=view, meeting=meeting, attendees=attendees)
    except BaseException:
        _release(lock)
        raise
    batch.add(_Checked(repairs=repairs, lock=lock, complete=meeting is None or attendees is not None))


SPREAD_STEP_SECONDS = 0.5  # a spread cycle waiting for its next check asks ``stop`` this often


def _wait_until(moment: float, stop: Callable[[], bool] | None) -> bool:
    """Sleep until ``moment`` (time.monotonic); False if told to stop meanwhile."""
    while (left := moment - time.monotonic()) > 0:
        if stop is not None and stop():
            return False
        time.sleep(min(left, SPREAD_STEP_SECONDS))
    return True


def meeting_reconcile(*, meeting_id: str) -> ReconcileSummary:
    """Check one meeting now, whatever its status (an operator asked: ``reconcile --meeting``),
    within the budget and under its lock; its repairs ingested before this returns."""
    started = time.monotonic()
    batch = _Batch(summary=ReconcileSummary())
    _meeting_check(meeting_id=meeting_id, batch=batch, force=True)
    batch.flush()
    batch.summary.seconds = time.monotonic() - started
    return batch.summary


def meetings_reconcile(
    *,
    meeting_ids: Sequence[str] | None = None,
    stop: Callable[[], bool] | None = None,
    spread_seconds: float = 0.0,
) -> ReconcileSummary:
    """One reconcile cycle: every meeting due (``reconcile_due_list``: active ones stalest first,
    ``unknown`` ones never checked), or only ``meeting_ids``, checked one after the other within
    the budget. With ``spread_seconds`` (the period, RECONCILE_SECONDS), the checks are spread
    evenly over it (the i-th of N starts ``i * spread / N`` after the cycle began, or later when
    the budget says so: the budget wins), so the API and ingest see a steady trickle rather than
    a burst each period. Runs only where no other cycle of the deployment runs (a Redis lock,
    renewed as it goes); otherwise it returns at once with ``cycle_running_elsewhere``. ``stop``
    is asked before each meeting and while waiting (a command's Ctrl-C, a worker's shutdown)."""
    started = time.monotonic()
    summary = ReconcileSummary()
    cycle = redis_client().lock(redis_key("cycle"), timeout=CYCLE_LOCK_SECONDS, blocking=False)
    if not cycle.acquire():
        summary.cycle_running_elsewhere = True
        return summary
    batch = _Batch(summary=summary)
    try:
        due = (
            list(meeting_ids)
            if meeting_ids is not None
            else reconcile_due_list(with_blank_region=bool(settings.CHIME_CONTROL_REGION))
        )
        for index, meeting_id in enumerate(due):
            moment = started + index * spread_seconds / len(due)
            if moment - time.monotonic() >= REPAIRS_FLUSH_SECONDS:
                batch.flush()  # quiet checks do not hold their meetings through the wait
            if not _wait_until(moment, stop):
                break
            if stop is not None and stop():
                break
            _meeting_check(meeting_id=meeting_id, batch=batch)
            cycle.extend(CYCLE_LOCK_SECONDS, replace_ttl=True)
        batch.flush()
    finally:
        for checked in batch.pending:  # an error left some unflushed: let others check them
            _release(checked.lock)
        _release(cycle)
    summary.seconds = time.monotonic() - started
    logger.info("reconcile cycle: %s in %.1fs", summary.as_dict(), summary.seconds)
    return summary


_cycle_guard = threading.Lock()
_cycle_thread: threading.Thread | None = None


def reconcile_cycle_start(*, stop: Callable[[], bool], spread_seconds: float) -> bool:
    """Run one cycle (:func:`meetings_reconcile`) in a background thread of this process, so a
    Celery worker's pool slot is free for its other tasks (queue health) while the cycle spreads
    its checks over the period; False when this process runs one already (and the deployment's
    cycle lock keeps other processes from running a second)."""
    global _cycle_thread
    with _cycle_guard:
        if _cycle_thread is not None and _cycle_thread.is_alive():
            return False
        _cycle_thread = threading.Thread(
            target=_cycle_run,
            kwargs={"stop": stop, "spread_seconds": spread_seconds},
            name="reconcile-cycle",
            daemon=True,
        )
        _cycle_thread.start()
        return True


def reconcile_cycle_join(*, timeout: float) -> None:
    """Wait (at most ``timeout``) for this process's background cycle: a worker shutting down
    lets it finish the check in hand (its ``stop`` says so) before the process exits."""
    thread = _cycle_thread
    if thread is not None:
        thread.join(timeout)


def _cycle_run(*, stop: Callable[[], bool], spread_seconds: float) -> None:
    try:
        meetings_reconcile(stop=stop, spread_seconds=spread_seconds)
    except Exception:
        logger.exception("reconcile cycle failed; the next beat tick starts another")
    finally:
        connections.close_all()  # this thread's own connection
