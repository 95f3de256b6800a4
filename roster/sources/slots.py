"""Drain slots: every worker drains every enabled queue, within each queue's consumer limit.

A QueueSource allows ``consumers`` concurrent consumers across all workers. Each consumer is a
*slot*, held through a Redis lock (redis-py's: ``SET NX PX`` with a token, renewed while held,
released on stop; only its holder can renew or release it). A worker's supervisor takes free
slots (at most SQS_SLOTS_PER_WORKER per queue) and runs a :class:`roster.sources.sqs.DrainLoop`
thread for each. A worker that dies loses its slots when the locks expire, and another worker
takes them. Scaling out is starting more workers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import close_old_connections, connections
from redis.exceptions import LockError
from redis.lock import Lock

from roster.models import QueueSource
from roster.sources.sqs import DrainLoop, accounts_warn, queue_sources_seed

logger = logging.getLogger(__name__)


def slot_key(queue_url: str, slot: int) -> str:
    """The Redis lock of one drain slot of a queue, in this deployment's namespace: two
    deployments draining the same queue each run their own slots."""
    digest = hashlib.sha1(queue_url.encode()).hexdigest()[:16]
    return f"{settings.ROSTER_NAMESPACE}:drain-slot:{digest}:{slot}"


@dataclass
class _HeldSlot:
    lock: Lock
    stop: threading.Event
    thread: threading.Thread


class DrainSupervisor:
    """Takes drain slots for enabled queues and runs one drain thread per slot held."""

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        slots_per_worker: int | None = None,
        wait_seconds: int | None = None,
        interval_seconds: float = 2.0,
        lock_ttl_seconds: float = 30.0,
    ) -> None:
        self.redis = redis.Redis.from_url(redis_url or settings.REDIS_URL)
        self.slots_per_worker = slots_per_worker or settings.SQS_SLOTS_PER_WORKER
        self.wait_seconds = settings.SQS_WAIT_SECONDS if wait_seconds is None else wait_seconds
        self.interval = interval_seconds
        self.ttl_seconds = lock_ttl_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.held: dict[tuple[str, int], _HeldSlot] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        accounts_warn()
        self._thread = threading.Thread(target=self._run, name="drain-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking slots, let every drain thread finish its batch in hand, release the slots."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for held in list(self.held.values()):
            held.stop.set()
        for key in list(self.held):
            self._release(key, timeout=timeout)

    def _run(self) -> None:
        try:
            queue_sources_seed()
        except Exception:
            logger.exception("could not seed queue sources")
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception("drain supervisor tick failed")
            finally:
                close_old_connections()
            self._stop.wait(self.interval)
        connections.close_all()

    def tick(self) -> None:
        """One round: renew held slots, drop unwanted ones, take free ones."""
        wanted = {
            source.url: source.consumers
            for source in QueueSource.objects.filter(enabled=True, consumers__gt=0)
        }
        for key, held in list(self.held.items()):
            url, slot = key
            alive = held.thread.is_alive()
            if url not in wanted or slot >= wanted[url] or not alive or not _renewed(held.lock):
                held.stop.set()
                self._release(key, timeout=0 if not alive else None)
        for url, consumers in wanted.items():
            mine = sum(1 for held_url, _ in self.held if held_url == url)
            for slot in range(consumers):
                if mine >= self.slots_per_worker or self._stop.is_set():
                    break
                if (url, slot) in self.held:
                    continue
                lock = self.redis.lock(
                    slot_key(url, slot), timeout=self.ttl_seconds, blocking=False, thread_local=False
                )
                if lock.acquire(token=f"{self.owner}:{uuid.uuid4().hex}"):
                    self._start_slot(url, slot, lock)
                    mine += 1

    def _start_slot(self, url: str, slot: int, lock: Lock) -> None:
        stop = threading.Event()
        loop = DrainLoop(queue_url=url, stop=stop, wait_seconds=self.wait_seconds)
        thread = threading.Thread(
            target=self._drain, args=(loop,), name=f"drain-{slot}-{url[-40:]}", daemon=True
        )
        self.held[(url, slot)] = _HeldSlot(lock=lock, stop=stop, thread=thread)
        logger.info("drain slot %d of %s taken by %s", slot, url, self.owner)
        thread.start()

    @staticmethod
    def _drain(loop: DrainLoop) -> None:
        try:
            loop.run()
        except Exception:
            logger.exception("drain of %s stopped", loop.queue_url)
        finally:
            connections.close_all()  # this thread's connections only

    def _release(self, key: tuple[str, int], *, timeout: float | None) -> None:
        url, slot = key
        held = self.held.pop(key)
        # Keep the slot until its thread has finished the batch in hand.
        held.thread.join(timeout if timeout is not None else self.wait_seconds + 30)
        try:
            held.lock.release()
        except redis.RedisError:
            logger.warning("could not release drain slot %s; it expires by itself", held.lock.name)
        logger.info("drain slot %d of %s released", slot, url)


def _renewed(lock: Lock) -> bool:
    """The slot's lock extended to its full time; False when another worker holds it now."""
    try:
        return lock.reacquire()
    except LockError:
        return False
