"""Benchmark: outbound hooks (issue #16.7).

``.venv/bin/python -m bench.hooks_bench [--quick] [--only overhead throughput latency] [--json-out PATH]``

Everything on this machine, on loopback: PostgreSQL (database ``bench_hooks``, or
``BENCH_HOOKS_DATABASE_URL``; dropped and recreated), Redis (the Celery broker, under this run's
own ``ROSTER_NAMESPACE``), the demo's webhook receiver (roster.dev.hook_receiver, a process that
checks every signature) and real ``celery worker`` processes delivering the outbox.

1. overhead: the ingest service alone (``messages_ingest``, batches of 100 from memory, 100
   meetings x 200 events, as one EventBridge queue interleaves them and as per-meeting queues
   give them) with 3 hooks matching every change, the outbox (ingest's in-transaction hook, the
   rows written in the ingest transaction, nothing delivered meanwhile) run on every other
   batch, then on the others: every batch timed with it and without, both kinds at the same
   moments, so the machine's drift falls on both alike. Reported: the ratio of the times
   (median of the rounds); the goal is an ingest at most 15 % slower with hooks. The fan-out of
   the rows into deliveries (the workers' share) is timed apart. Then interleaved by blocks of 20
   batches (a cost landing a few batches after its cause stays in its block), and by whole runs
   in turns (no hook, 3 hooks, ABBA), which count everything but wander with the machine.
2. throughput: N changes ingested while the one hook is paused (the outbox fills), then resumed:
   deliveries/s = N over the time from the resume until the receiver has every one, signatures
   checked (the receiver refuses a bad one with 401, which would show as a retry).
3. latency: 100 meetings, one hook; a producer ingests AttendeeJoined of new attendees at 500
   roster changes/s, then at 100/s (which the delivery keeps up with: the floor), a batch of 10
   every 20 ms as the drain would, each one's time taken just before its batch; the receiver
   keeps each delivery's arrival (CLOCK_MONOTONIC is system-wide). latency = arrival of the first
   delivery naming the attendee - its batch's start; p50/p99.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench import common
from bench.common import log
from roster.dev.chime import live_traffic
from roster.dev.processes import Supervisor, celery_worker_command, free_port, hook_receiver_start

DATABASE_URL = os.environ.get("BENCH_HOOKS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_hooks")
OVERHEAD_GOAL = 1.15  # ingest time with 3 hooks / without, at most
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- figures ---------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.1f} ms"


def receiver_deliveries(url: str, *, after: int = 0) -> tuple[int, list[dict[str, Any]]]:
    import json

    with _NO_PROXY.open(f"{url}/deliveries.json?after={after}", timeout=30) as response:
        payload = json.loads(response.read())
    return payload["count"], payload["deliveries"]


def conditions_line(background: float) -> str:
    import celery
    import redis

    info = common.conditions()
    redis_version = "?"
    with contextlib.suppress(redis.RedisError):
        redis_version = redis.Redis.from_url("redis://127.0.0.1:6379/0").info("server")["redis_version"]
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load1, load5, _ = os.getloadavg()
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')} UTC, {info['cores']} cores ({model}), load average "
        f"{load1:.2f}/{load5:.2f}, background {background:.0%} of the machine just before; Python "
        f"{platform.python_version()}, Django {info.get('django')}, Celery {celery.__version__}, "
        f"PostgreSQL {info['postgresql']}, Redis {redis_version}"
    )


# --- set-up ----------------------------------------------------------------------------------


def hooks_register(*, count: int, target: str, prefix: str = "bench-hook") -> list[tuple[Any, str]]:
    """``count`` hooks matching every change, to ``target`` (the core's ``hook_create``): (hook, secret)."""
    from roster.hooks.services import hook_create

    return [hook_create(name=f"{prefix}-{i}", target=target) for i in range(count)]


def hooks_clear() -> None:
    from roster.hooks.services import hook_delete
    from roster.models import Hook

    for hook in Hook.objects.all():
        hook_delete(hook=hook)


def tables_truncate() -> None:
    from django.db import connection

    from roster.models import HookDelivery, HookPayload

    common.roster_tables_truncate()
    tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in (HookDelivery, HookPayload))
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables}")


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HOOKS_ALLOW_HTTP_LOOPBACK="1", PYTHONUNBUFFERED="1", SQS_QUEUE_URLS="", LOG_LEVEL="WARNING")
    return env


def workers_start(supervisor: Supervisor, *, count: int) -> None:
    for index in range(count):
        supervisor.spawn(
            f"worker-{index}",
            celery_worker_command(
                hostname=f"bench-hooks-{index}-{os.getpid()}@%h", loglevel="WARNING", heartbeat=False
            ),
            env=worker_env(),
            stop_timeout=20,
        )


# --- 1. the outbox's cost to the ingest -------------------------------------------------------


def overhead(
    *, meetings: int, rounds: int, batch: int, layout: str = "interleaved", block: int = 1
) -> dict[str, Any]:
    """The ingest's time with the outbox and without, batch by batch. A round ingests the stream
    twice, each time on an emptied roster with 3 hooks matching every change: the first pass runs
    the outbox (ingest's in-transaction hook) on the even batches only, the second on the odd
    ones, so every batch is timed once with it and once without, and both kinds share the
    machine's speed of the same moments (whole runs in turns drifted by up to 10 % from one run
    to the next on this machine: docs/benchmarks.md). ``slowdown``: the batches' time with the
    outbox over the same batches' time without, the median of the rounds. No worker runs: the
    outbox rows are written and the kicks sent; after each pass the rows are fanned out here and
    that is timed apart (the workers' share). ``interleaved``: one EventBridge queue's order (a
    batch of 100 touches about 20 meetings: as many changes); ``per-meeting``: a per-meeting
    queue's receives (a batch is one meeting's: one change, more attendees in it). ``block``: the
    outbox runs on every other run of ``block`` batches instead (a cost that lands a few batches
    after the one that caused it, in a thread or in PostgreSQL's background, falls in the same
    kind of block, except at the blocks' edges)."""
    from bench.common import meetings_generate, meetings_split, roster_check
    from bench.ingest_bench import batches_interleaved, batches_per_meeting
    from roster.hooks.outbox import deliveries_fan_out, deliveries_register
    from roster.ingest import hooks as ingest_hooks
    from roster.ingest import messages_ingest
    from roster.models import HookDelivery, HookPayload

    delivered = meetings_generate(meetings=meetings, attendees=20, events_per_meeting=200)
    by_meeting = meetings_split(delivered)
    if layout == "interleaved":
        batches = batches_interleaved(delivered, batch)
    else:
        batches = batches_per_meeting(by_meeting, batch)
    others = [hook for hook in ingest_hooks.in_transaction if hook is not deliveries_register]
    ratios: list[float] = []
    seconds = {True: 0.0, False: 0.0}
    fan_out_rates: list[float] = []
    outbox_rows = 0
    try:
        for round_ in range(rounds):
            spent = {True: 0.0, False: 0.0}
            for parity in (0, 1):
                tables_truncate()
                hooks_clear()
                hooks_register(count=3, target="http://127.0.0.1:9/hook")
                common.database_vacuum()
                for index, messages in enumerate(batches):
                    outbox = (index // block) % 2 == parity
                    ingest_hooks.in_transaction[:] = [*others, deliveries_register] if outbox else others
                    started = time.perf_counter()
                    messages_ingest(messages=messages)
                    spent[outbox] += time.perf_counter() - started
                common.broadcast_flush()
                check = roster_check(by_meeting, expected_events=len(delivered))
                if not check.startswith("ok"):
                    raise RuntimeError(f"overhead round {round_}: {check}")
                outbox_rows += HookPayload.objects.count()
                started = time.perf_counter()
                while deliveries_fan_out():
                    pass
                fan_out_rates.append(HookDelivery.objects.count() / (time.perf_counter() - started))
            ratios.append(spent[True] / spent[False])
            for outbox in (True, False):
                seconds[outbox] += spent[outbox]
            log(
                f"  round {round_ + 1}/{rounds}: the batches took {spent[False]:.2f} s without the outbox, "
                f"{spent[True]:.2f} s with it: x{ratios[-1]:.3f}"
            )
    finally:
        ingest_hooks.in_transaction[:] = [*others, deliveries_register]
        hooks_clear()
    return {
        "layout": layout,
        "block": block,
        "events": len(delivered),
        "meetings": meetings,
        "batch": batch,
        "ratios": ratios,
        "rate_none": len(delivered) * rounds / seconds[False],
        "rate_3": len(delivered) * rounds / seconds[True],
        "slowdown": statistics.median(ratios),
        "outbox_rows": outbox_rows // rounds,
        "fan_out_per_second": statistics.median(fan_out_rates),
    }


def overhead_runs(*, meetings: int, rounds: int, batch: int) -> dict[str, Any]:
    """The same cost by whole runs, in turns (interleaved only): the stream ingested with no hook,
    then with 3 hooks (then the other way round: ABBA), ``rounds`` times, on an emptied roster each
    time. It counts what batch by batch shares between both kinds (the outbox table's growth, its
    WAL, the kick's thread), but a run's speed wanders by ±10 % here: see both figures."""
    from bench.common import meetings_generate
    from bench.ingest_bench import batches_ingest, batches_interleaved

    delivered = meetings_generate(meetings=meetings, attendees=20, events_per_meeting=200)
    batches = batches_interleaved(delivered, batch)
    rates: dict[int, list[float]] = {0: [], 3: []}
    for round_ in range(rounds):
        # In turns, first one kind then the other (ABBA): a cost the first run of a pair leaves
        # to the second (a checkpoint, autovacuum) falls on both kinds alike.
        for hooks in (0, 3) if round_ % 2 == 0 else (3, 0):
            tables_truncate()
            hooks_clear()
            if hooks:
                hooks_register(count=hooks, target="http://127.0.0.1:9/hook")
            common.database_vacuum()
            seconds, _, _ = batches_ingest(batches)
            rates[hooks].append(len(delivered) / seconds)
        none, three = rates[0][-1], rates[3][-1]
        log(f"  round {round_ + 1}/{rounds}: {none:,.0f} events/s with no hook, {three:,.0f} with 3")
    hooks_clear()
    ratios = [none / three for none, three in zip(rates[0], rates[3], strict=True)]
    total = sum(1 / rate for rate in rates[3]) / sum(1 / rate for rate in rates[0])
    return {
        "ratios": ratios,
        "slowdown": statistics.median(ratios),
        "mean": statistics.mean(ratios),
        "total": total,  # all the runs' time with 3 hooks over all the runs' time without
    }


# --- 2. deliveries per second ------------------------------------------------------------------


def meetings_started(count: int) -> list[tuple[str, str]]:
    return common.meetings_start(count=count, tag=f"hooks-{uuid.uuid4().hex[:6]}")


def joins(meetings: list[tuple[str, str]], count: int, *, prefix: str) -> list[tuple[str, str]]:
    traffic = live_traffic(meetings=meetings, prefix=prefix, seed=7, video=False)
    return [(key.split(":", 1)[1], body) for key, body in (next(traffic) for _ in range(count))]


def throughput(*, receiver: str, hook: Any, changes: int, workers: int) -> dict[str, Any]:
    from roster.hooks.admin_actions import hook_pause, hook_resume
    from roster.ingest import IncomingMessage, messages_ingest

    hook_pause(hook=hook)
    tables_truncate()
    meetings = meetings_started(50)
    before, _ = receiver_deliveries(receiver, after=10**12)
    items = joins(meetings, changes, prefix="tp")
    for start in range(0, len(items), 10):  # one change per meeting per batch, mostly
        messages_ingest(messages=[IncomingMessage(body=body) for _, body in items[start : start + 10]])
    from roster.models import HookPayload

    queued = HookPayload.objects.count()  # one hook: a delivery each (fanned out meanwhile or not)
    started = time.monotonic()
    hook_resume(hook=hook)  # kicks one worker, whose full batches kick the others
    deadline = started + 300
    count = before
    while count - before < queued and time.monotonic() < deadline:
        time.sleep(0.05)
        count, _ = receiver_deliveries(receiver, after=10**12)
    elapsed = time.monotonic() - started
    got = count - before
    _, seen = receiver_deliveries(receiver, after=before)
    refused = sum(1 for d in seen if not d["signature_ok"])
    return {
        "changes": changes,
        "deliveries": queued,
        "received": got,
        "refused": refused,
        "seconds": elapsed,
        "per_second": got / elapsed if elapsed else 0.0,
        "workers": workers,
    }


# --- 3. ingest -> receiver latency at a rate ---------------------------------------------------


def latency(*, receiver: str, rate: float, seconds: float) -> dict[str, Any]:
    from roster.ingest import IncomingMessage, messages_ingest

    tables_truncate()
    meetings = meetings_started(100)
    start_count, _ = receiver_deliveries(receiver, after=10**12)
    sent: dict[str, float] = {}
    traffic = live_traffic(meetings=meetings, prefix=f"lt{uuid.uuid4().hex[:4]}", seed=11, video=False)
    interval = 0.02
    per_tick = rate * interval
    began = time.monotonic()
    due = 0.0
    lag_ticks = 0
    tick = began
    while time.monotonic() - began < seconds:
        due += per_tick
        count = int(due)
        due -= count
        batch = [next(traffic) for _ in range(count)]
        now = time.monotonic()
        for key, _ in batch:
            sent[key.split(":", 1)[1]] = now
        if batch:
            messages_ingest(messages=[IncomingMessage(body=body) for _, body in batch])
        tick += interval
        pause = tick - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            lag_ticks += 1
    produced = time.monotonic() - began
    deadline = time.monotonic() + 60 + len(sent) / 100  # a backlog drains at a few hundred a second
    arrived: dict[str, float] = {}
    after = start_count
    while len(arrived) < len(sent) and time.monotonic() < deadline:
        _, found = receiver_deliveries(receiver, after=after)
        for d in found:
            after = max(after, d["number"])
            for attendee in d["attendee_ids"]:
                arrived.setdefault(attendee, d["received_monotonic"])
        time.sleep(0.2)
    samples = [arrived[a] - sent[a] for a in sent if a in arrived]
    return {
        "rate": rate,
        "sent": len(sent),
        "achieved_rate": len(sent) / produced,
        "late_ticks": lag_ticks,
        "delivered": len(samples),
        "p50": pct(samples, 0.50),
        "p90": pct(samples, 0.90),
        "p99": pct(samples, 0.99),
        "max": max(samples) if samples else None,
    }


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Outbound hooks benchmark")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=("overhead", "throughput", "latency"))
    parser.add_argument("--rounds", type=int, default=None, help="overhead: runs of each kind")
    parser.add_argument("--workers", type=int, default=2, help="celery worker processes delivering")
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[500.0, 100.0], help="latency: roster changes per second"
    )
    parser.add_argument("--seconds", type=float, default=None, help="latency: how long the producer runs")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    parts = args.only or ["overhead", "throughput", "latency"]

    os.environ["BENCH_DATABASE_URL"] = DATABASE_URL
    common.BENCH_DATABASE_URL = DATABASE_URL  # what CpuMeter and roster_check read
    common.environment_prepare(database_url=DATABASE_URL)
    os.environ["HOOKS_ALLOW_HTTP_LOOPBACK"] = "1"
    background = common.background_load(2.0)
    common.django_setup(recreate=True, database_url=DATABASE_URL)
    line = conditions_line(background)
    log(f"outbound hooks bench: {line}; database {DATABASE_URL}, namespace {os.environ['ROSTER_NAMESPACE']}")
    results: dict[str, Any] = {"conditions": line}

    if "overhead" in parts:
        rounds = args.rounds or (2 if args.quick else 4)
        meetings = 25 if args.quick else 100
        results["overhead"] = []
        for layout, block in (("interleaved", 1), ("per-meeting", 1), ("interleaved", 20)):
            log(
                f"1. overhead, {layout}/100: {meetings * 200:,} events, {rounds} rounds of two passes, "
                + (
                    "the outbox on every other batch"
                    if block == 1
                    else f"the outbox on every other {block} batches"
                )
            )
            result = overhead(meetings=meetings, rounds=rounds, batch=100, layout=layout, block=block)
            results["overhead"].append(result)
            verdict = "within" if result["slowdown"] <= OVERHEAD_GOAL else "OVER"
            ratios = ", ".join(f"x{r:.3f}" for r in result["ratios"])
            log(
                f"   ingest time with the outbox x{result['slowdown']:.3f} (median of {ratios}), "
                f"{verdict} the 15 % budget; {result['rate_none']:,.0f} events/s without, "
                f"{result['rate_3']:,.0f} with ({result['outbox_rows']:,} outbox rows a stream); "
                f"the workers' fan-out wrote {result['fan_out_per_second']:,.0f} deliveries/s "
                "(one process, median)"
            )
        log(f"1b. overhead by whole runs in turns, interleaved/100: {rounds} rounds")
        runs = overhead_runs(meetings=meetings, rounds=rounds, batch=100)
        results["overhead_runs"] = runs
        log(
            f"   ingest time with 3 hooks x{runs['slowdown']:.3f} (median; mean x{runs['mean']:.3f}; "
            f"all runs' time x{runs['total']:.3f}; rounds "
            + ", ".join(f"x{r:.3f}" for r in runs["ratios"])
            + ")"
        )

    if {"throughput", "latency"} & set(parts):
        log_dir = Path(f"/tmp/bench-hooks-{os.getpid()}")
        log_dir.mkdir(parents=True, exist_ok=True)
        with Supervisor(log_dir=log_dir, say=log) as supervisor:
            hooks_clear()
            port = free_port()
            [(hook, secret)] = hooks_register(
                count=1, target=f"http://127.0.0.1:{port}/hook", prefix="receiver"
            )
            receiver = hook_receiver_start(supervisor, secrets=[secret], env=worker_env(), port=port)
            workers_start(supervisor, count=args.workers)
            time.sleep(3)  # the workers connect to the broker
            if "throughput" in parts:
                changes = 1000 if args.quick else 5000
                log(f"2. throughput: {changes:,} changes queued behind a paused hook, then resumed")
                results["throughput"] = tp = throughput(
                    receiver=receiver, hook=hook, changes=changes, workers=args.workers
                )
                log(
                    f"   {tp['received']:,}/{tp['deliveries']:,} deliveries in {tp['seconds']:.2f} s = "
                    f"{tp['per_second']:,.0f} deliveries/s ({args.workers} workers; {tp['refused']} refused "
                    "by the receiver's signature check)"
                )
            if "latency" in parts:
                seconds = args.seconds or (10.0 if args.quick else 30.0)
                results["latency"] = []
                for rate in args.rates:
                    log(f"3. latency: {rate:g} roster changes/s over 100 meetings for {seconds:g} s")
                    lt = latency(receiver=receiver, rate=rate, seconds=seconds)
                    results["latency"].append(lt)
                    log(
                        f"   {lt['delivered']:,}/{lt['sent']:,} changes delivered (produced at "
                        f"{lt['achieved_rate']:,.0f}/s, {lt['late_ticks']} late ticks): ingest -> receiver "
                        f"p50 {ms(lt['p50'])}, p90 {ms(lt['p90'])}, p99 {ms(lt['p99'])}, max {ms(lt['max'])}"
                    )
    common.results_write(args.json_out, results)
    return results


if __name__ == "__main__":
    main()
