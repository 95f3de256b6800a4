"""Hooks delivered by real Celery workers (PostgreSQL, Redis): kicked after commit, and a worker
SIGKILLed while the receiver holds its request loses and reorders nothing."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from roster.hooks.services import hook_create
from roster.models import HookDelivery
from tests.conftest import embedded_worker
from tests.hooks.test_delivery import changes

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_committed_change_is_kicked_to_a_worker(hook_settings, receiver):
    hook, secret = hook_create(name="h", target=receiver.url)
    receiver.secrets = [secret]
    with embedded_worker(shutdown_timeout=30):
        started = time.monotonic()
        changes("m-kick", 3)  # no sweep runs here: the after-commit kick is all there is
        wait_for(lambda: len(receiver.accepted()) >= 3)
        latency = time.monotonic() - started
    assert [r.json["meeting"]["seq"] for r in receiver.accepted()] == [1, 2, 3]
    assert latency < 5.0
    assert set(HookDelivery.objects.filter(hook=hook).values_list("status", flat=True)) == {"delivered"}


def test_a_worker_killed_mid_delivery_loses_and_reorders_nothing(
    hook_settings, receiver, subprocess_env, processes, tmp_path
):
    env = dict(
        subprocess_env,
        HOOKS_ALLOW_HTTP_LOOPBACK="1",
        HOOKS_TIMEOUT_SECONDS="2",  # the lease: 5 s
        HOOKS_RETRY_BASE_SECONDS="0.05",
        HOOKS_RETRY_MAX_SECONDS="0.2",
        HOOKS_SWEEP_SECONDS="1",
        RECONCILE_SECONDS="0",
        SQS_DRAIN_IN_WORKER="0",
    )
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--loglevel",
        "WARNING",
        "--pool",
        "solo",
    ]
    argv += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    hook, secret = hook_create(name="h", target=receiver.url)
    receiver.secrets = [secret]
    receiver.hold.clear()  # the first request is held
    first = processes.spawn("worker-1", argv, env=env, stop_timeout=10)
    changes("m-kill", 3)
    assert receiver.arrived.wait(20), first.log_tail()
    os.killpg(first.pid, signal.SIGKILL)  # mid-delivery: the receiver has the request, no answer
    first.process.wait(10)
    receiver.hold.set()
    held = receiver.received[0]
    assert held.json["meeting"]["seq"] == 1
    # A new worker with beat: its sweep finds seq 1 once the dead worker's lease ran out.
    processes.spawn("worker-2", [*argv, "-B", "-s", str(tmp_path / "beat")], env=env, stop_timeout=30)
    wait_for(lambda: not HookDelivery.objects.filter(hook=hook, status="pending").exists(), timeout=25)
    seqs = [r.json["meeting"]["seq"] for r in receiver.received]
    assert seqs == [1, 1, 2, 3]
    assert receiver.received[1].delivery_id == held.delivery_id
    assert all(r.verified for r in receiver.received)
