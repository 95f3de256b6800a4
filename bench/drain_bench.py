"""Benchmark: events flowing through the local SQS endpoint (moto server), raw ceiling vs project.

``python -m bench.drain_bench [--quick] [--levels 4:4x25 2:2x10 1:2x10] [--depth 50]``

moto's ReceiveMessage cost grows with the queue's depth (shared/DESIGN.md), so the depth is kept
bounded with many small queues: each meeting's 200 events (delivery order, the same events as the
ingest bench) are cut into consecutive segments of ``--depth`` messages, one queue per segment
(a stand-in for a producer that never lets a meeting's queue grow deeper than that). Queues are
prefilled with SendMessageBatch before the clock starts (not timed). Then C threads drain them;
each thread owns a disjoint set of meetings (meeting m goes to thread m % C) and drains each of
its meetings' segment queues in order, so a meeting's events arrive in the order its own queue
would give. Two modes over the same queues, depth and concurrency:

- raw: ``roster.sources.sqs.queue_receive`` (MaxNumberOfMessages=10, WaitTimeSeconds=1) +
  ``roster.sources.sqs.queue_delete`` (DeleteMessageBatch), no ingest: the endpoint's ceiling;
- project: ``roster.sources.sqs.queue_drain_once`` (the same receive + ``messages_ingest`` into
  PostgreSQL + the same delete), so the only difference is the ingest (and its live push).

A level ``C:RxM`` runs R rounds; round r takes the next M meetings, prefills their queues and
drains them raw, prefills them again and drains them with the project (the order alternates
round by round, so a shared machine's background load falls on both modes alike). Each mode's
figure is all its messages over all its timed seconds: with the default 4:4x25, 20,000 messages
flow through each mode at concurrency 4. A thread moves to its next queue once it received all
that queue's messages (nothing else feeds them), so no empty 1-second poll is timed. After every
round the queues must be empty; after a level the database must hold every event once and every
roster must equal the pure fold. The moto server is started on a free loopback port and stopped
at the end.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import common
from roster.dev.chime import as_envelope
from roster.dev.processes import Supervisor, sqs_endpoint_start


class TimedClient:
    """Wraps a boto3 SQS client and adds up the time spent in receive and delete calls."""

    def __init__(self, client) -> None:
        self._client = client
        self.receive_s = 0.0
        self.delete_s = 0.0
        self.receives = 0
        self.empty_receives = 0

    def receive_message(self, **kwargs):
        start = time.perf_counter()
        response = self._client.receive_message(**kwargs)
        self.receive_s += time.perf_counter() - start
        self.receives += 1
        if not response.get("Messages"):
            self.empty_receives += 1
        return response

    def delete_message_batch(self, **kwargs):
        start = time.perf_counter()
        try:
            return self._client.delete_message_batch(**kwargs)
        finally:
            self.delete_s += time.perf_counter() - start

    def __getattr__(self, name):
        return getattr(self._client, name)


@dataclass
class PhaseResult:
    mode: str
    concurrency: int
    meetings: int
    queues: int
    depth: int
    messages: int
    seconds: float
    msgs_per_s: float
    receives: int
    empty_receives: int
    receive_s: float
    delete_s: float
    other_s: float  # thread time outside receive/delete: the ingest in the project phase
    receive_ms_mean: float
    delete_ms_mean: float
    moto_cpu_s: float | None
    bench_process_cpu_s: float
    postgres_cpu_s: float
    machine_busy: float  # share of both cores busy during the phase
    other_cpu_s: float  # CPU of processes other than the bench, moto and PostgreSQL (background load)
    applied: int = 0
    duplicates: int = 0
    quarantined: int = 0
    check: str = ""
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Segment:
    """One small queue: a consecutive run of one meeting's events."""

    meeting: int
    url: str
    bodies: tuple[str, ...]


def segments_create(client, meetings: list[list[dict]], depth: int) -> list[list[Segment]]:
    """Per meeting, its segment queues in delivery order (created empty)."""
    layout = []
    for index, details in enumerate(meetings):
        bodies = [as_envelope(doc) for doc in details]
        segments = []
        for k, i in enumerate(range(0, len(bodies), depth)):
            url = client.create_queue(
                QueueName=f"bench-m{index:04d}-s{k:02d}", Attributes={"VisibilityTimeout": "120"}
            )["QueueUrl"]
            segments.append(Segment(index, url, tuple(bodies[i : i + depth])))
        layout.append(segments)
    return layout


def segments_prefill(clients: list, layout: list[list[Segment]]) -> float:
    """SendMessageBatch every segment's events into its queue. Untimed setup."""
    start = time.perf_counter()
    segments = [seg for meeting in layout for seg in meeting]

    def fill(job: tuple[int, Segment]) -> None:
        n, seg = job
        client = clients[n % len(clients)]
        for i in range(0, len(seg.bodies), 10):
            entries = [{"Id": str(j), "MessageBody": body} for j, body in enumerate(seg.bodies[i : i + 10])]
            response = client.send_message_batch(QueueUrl=seg.url, Entries=entries)
            if response.get("Failed"):
                raise RuntimeError(f"send_message_batch failed: {response['Failed'][:2]}")

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        list(pool.map(fill, enumerate(segments)))
    return time.perf_counter() - start


def queues_depth(client, layout: list[list[Segment]]) -> int:
    total = 0
    for seg in (seg for meeting in layout for seg in meeting):
        attrs = client.get_queue_attributes(
            QueueUrl=seg.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        total += int(attrs["ApproximateNumberOfMessages"])
        total += int(attrs["ApproximateNumberOfMessagesNotVisible"])
    return total


def phase_run(
    mode: str,
    *,
    concurrency: int,
    layout: list[list[Segment]],
    depth: int,
    clients: list[TimedClient],
    moto_pid: int,
    wait_seconds: int = 1,
    max_empty: int = 3,
) -> PhaseResult:
    """Drain every queue with ``concurrency`` threads; returns the figures (checks added by caller)."""
    from django.db import connection

    from roster.ingest import IngestResult
    from roster.sources.sqs import BackgroundDeleter, queue_drain_once, queue_receive

    owned = [[seg for meeting in layout[t::concurrency] for seg in meeting] for t in range(concurrency)]
    totals = [IngestResult() for _ in range(concurrency)]
    received = [0] * concurrency
    busy = [0.0] * concurrency
    errors: list[str] = []
    barrier = threading.Barrier(concurrency + 1)

    def worker(t: int) -> None:
        client = clients[t]
        deleter = BackgroundDeleter()  # as DrainLoop: deletes off the receiving thread, both modes
        try:
            barrier.wait()
            start = time.perf_counter()
            for seg in owned[t]:
                got = empties = 0
                while got < len(seg.bodies):
                    if mode == "raw":
                        messages = queue_receive(
                            client=client, queue_url=seg.url, wait_seconds=wait_seconds, max_messages=10
                        )
                        if messages:
                            deleter.submit(client=client, queue_url=seg.url, messages=messages)
                        n = len(messages)
                    else:
                        result = queue_drain_once(
                            client=client,
                            queue_url=seg.url,
                            wait_seconds=wait_seconds,
                            max_messages=10,
                            deleter=deleter,
                        )
                        totals[t].add(result)
                        n = result.received
                    got += n
                    if n == 0:
                        empties += 1
                        if empties >= max_empty:
                            errors.append(f"{seg.url}: gave up after {empties} empty receives, {got}")
                            break
                received[t] += got
            deleter.close()
            busy[t] = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - reported in the figures
            errors.append(f"thread {t}: {type(exc).__name__}: {exc}")
            barrier.abort()
        finally:
            connection.close()

    for c in clients:
        c.receive_s = c.delete_s = 0.0
        c.receives = c.empty_receives = 0
    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(concurrency)]
    for thread in threads:
        thread.start()
    with common.CpuMeter(moto_pid) as cpu:
        barrier.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        common.broadcast_flush()  # the live push of the committed changes is part of the work
        seconds = time.perf_counter() - start

    used = clients[:concurrency]
    receives = sum(c.receives for c in used)
    deletes = max(1, receives - sum(c.empty_receives for c in used))
    receive_s = sum(c.receive_s for c in used)
    delete_s = sum(c.delete_s for c in used)
    total = IngestResult()
    for t in totals:
        total.add(t)
    messages = sum(received)
    return PhaseResult(
        mode=mode,
        concurrency=concurrency,
        meetings=len(layout),
        queues=sum(len(m) for m in layout),
        depth=depth,
        messages=messages,
        seconds=seconds,
        msgs_per_s=common.rate(messages, seconds),
        receives=receives,
        empty_receives=sum(c.empty_receives for c in used),
        receive_s=receive_s,
        delete_s=delete_s,
        other_s=max(0.0, sum(busy) - receive_s - delete_s),
        receive_ms_mean=1000 * receive_s / max(1, receives),
        delete_ms_mean=1000 * delete_s / deletes,
        moto_cpu_s=cpu.moto_s,
        bench_process_cpu_s=cpu.process_s,
        postgres_cpu_s=cpu.postgres_s,
        machine_busy=cpu.machine_busy,
        other_cpu_s=cpu.others_s(),
        applied=total.applied,
        duplicates=total.duplicates,
        quarantined=total.quarantined,
        errors=errors,
    )


def format_row(r: PhaseResult) -> str:
    moto_cpu = f"{r.moto_cpu_s:6.1f}s" if r.moto_cpu_s is not None else "   n/a"
    return (
        f"  {r.mode:<7} C={r.concurrency} msgs={r.messages:<6} {r.seconds:7.2f}s "
        f"{r.msgs_per_s:8,.0f} msgs/s  "
        f"receive {r.receive_ms_mean:5.1f}ms x{r.receives} (empty {r.empty_receives}), "
        f"delete {r.delete_ms_mean:5.1f}ms, ingest+other {r.other_s:6.1f} thread-s\n"
        f"          cpu: moto {moto_cpu} ({1000 * (r.moto_cpu_s or 0) / max(1, r.messages):.2f} ms/msg), "
        f"bench process {r.bench_process_cpu_s:5.1f}s "
        f"({1000 * r.bench_process_cpu_s / max(1, r.messages):.2f} ms/msg), "
        f"postgres {r.postgres_cpu_s:5.1f}s, machine busy {r.machine_busy:.0%} of {os.cpu_count()} cores, "
        f"other processes {r.other_cpu_s:5.1f}s"
    )


def combine(rounds: list[PhaseResult]) -> PhaseResult:
    """One figure per mode and concurrency from its rounds: all messages over all timed seconds."""
    first = rounds[0]
    messages = sum(r.messages for r in rounds)
    seconds = sum(r.seconds for r in rounds)
    receives = sum(r.receives for r in rounds)
    deletes = max(1, receives - sum(r.empty_receives for r in rounds))
    moto = [r.moto_cpu_s for r in rounds]
    return PhaseResult(
        mode=first.mode,
        concurrency=first.concurrency,
        meetings=sum(r.meetings for r in rounds),
        queues=sum(r.queues for r in rounds),
        depth=first.depth,
        messages=messages,
        seconds=seconds,
        msgs_per_s=common.rate(messages, seconds),
        receives=receives,
        empty_receives=sum(r.empty_receives for r in rounds),
        receive_s=sum(r.receive_s for r in rounds),
        delete_s=sum(r.delete_s for r in rounds),
        other_s=sum(r.other_s for r in rounds),
        receive_ms_mean=1000 * sum(r.receive_s for r in rounds) / max(1, receives),
        delete_ms_mean=1000 * sum(r.delete_s for r in rounds) / deletes,
        moto_cpu_s=None if None in moto else sum(moto),
        bench_process_cpu_s=sum(r.bench_process_cpu_s for r in rounds),
        postgres_cpu_s=sum(r.postgres_cpu_s for r in rounds),
        machine_busy=sum(r.machine_busy * r.seconds for r in rounds) / seconds if seconds else 0.0,
        other_cpu_s=sum(r.other_cpu_s for r in rounds),
        applied=sum(r.applied for r in rounds),
        duplicates=sum(r.duplicates for r in rounds),
        quarantined=sum(r.quarantined for r in rounds),
        check="ok" if all(r.check.startswith("ok") for r in rounds) else "MISMATCH in a round",
        errors=[e for r in rounds for e in r.errors],
    )


def round_check(result: PhaseResult, *, admin, layout, expected: int) -> None:
    left = queues_depth(admin, layout)
    ok = result.messages == expected and left == 0 and not result.errors
    if result.mode == "project":
        ok = ok and result.applied == expected and result.duplicates == 0 and result.quarantined == 0
    result.check = (
        f"{'ok' if ok else 'MISMATCH'} (received {result.messages}, applied {result.applied}, "
        f"duplicates {result.duplicates}, quarantined {result.quarantined}, left in queues {left})"
    )


def level_plan(text: str) -> tuple[int, int, int]:
    """'C:RxM' -> (concurrency, rounds, meetings per round)."""
    try:
        concurrency, rest = text.split(":")
        rounds, meetings = rest.lower().split("x")
        return int(concurrency), int(rounds), int(meetings)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C:RxM such as 4:4x25, got {text!r}") from None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="SQS drain benchmark: raw ceiling vs project")
    parser.add_argument("--quick", action="store_true", help="concurrency 4 only, 2 rounds of 10 meetings")
    parser.add_argument(
        "--levels",
        type=level_plan,
        nargs="+",
        default=None,
        metavar="C:RxM",
        help="concurrency C, R rounds of M meetings (default 4:4x25 2:2x10 1:2x10)",
    )
    parser.add_argument("--attendees", type=int, default=20)
    parser.add_argument("--events-per-meeting", type=int, default=200)
    parser.add_argument("--depth", type=int, default=50, help="messages per queue (the depth bound)")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    plan = args.levels or ([(4, 2, 10)] if args.quick else [(4, 4, 25), (2, 2, 10), (1, 2, 10)])
    most_meetings = max(rounds * meetings for _, rounds, meetings in plan)

    with Supervisor(log_dir=Path(tempfile.mkdtemp(prefix="bench-drain-"))) as processes:
        moto_url = sqs_endpoint_start(processes, command=common.moto_command, timeout=30)
        moto_pid = processes.pids()["moto"]
        common.environment_prepare(sqs_endpoint=moto_url)
        common.django_setup(recreate=True)
        from django.conf import settings

        from roster.sources.sqs import sqs_client

        if moto_url != settings.AWS_ENDPOINT_URL_SQS:
            raise SystemExit(f"bench: SQS endpoint is {settings.AWS_ENDPOINT_URL_SQS}, not {moto_url}")
        meetings = common.meetings_split(
            common.meetings_generate(
                meetings=most_meetings, attendees=args.attendees, events_per_meeting=args.events_per_meeting
            )
        )
        # Clients are made here, one after the other (making boto3 clients is not thread-safe).
        clients = [TimedClient(sqs_client(wait_seconds=1)) for _ in range(max(4, *(c for c, _, _ in plan)))]
        admin = clients[0]._client
        layout_all = segments_create(admin, meetings, args.depth)
        common.log(
            f"drain bench: moto_server at {moto_url} (log in {processes.log_dir}); "
            f"{args.events_per_meeting} events per meeting in "
            f"queues of {args.depth} (depth bound), {len(layout_all[0])} queues per meeting; "
            "receive MaxNumberOfMessages=10 WaitTimeSeconds=1 + DeleteMessageBatch; "
            "raw and project alternate round by round"
        )

        levels = []
        for concurrency, rounds, per_round in plan:
            common.roster_tables_truncate()
            common.database_vacuum()
            common.log(
                f"  C={concurrency}: {rounds} rounds x {per_round} meetings "
                f"({per_round * args.events_per_meeting} messages per round and mode)"
            )
            by_mode: dict[str, list[PhaseResult]] = {"raw": [], "project": []}
            for r in range(rounds):
                layout = layout_all[r * per_round : (r + 1) * per_round]
                expected = sum(len(seg.bodies) for m in layout for seg in m)
                for mode in ("raw", "project") if r % 2 == 0 else ("project", "raw"):
                    fill_s = segments_prefill([c._client for c in clients[:4]], layout)
                    depth = queues_depth(admin, layout)
                    if depth != expected:
                        raise RuntimeError(f"prefill left {depth} messages, expected {expected}")
                    result = phase_run(
                        mode,
                        concurrency=concurrency,
                        layout=layout,
                        depth=args.depth,
                        clients=clients,
                        moto_pid=moto_pid,
                    )
                    round_check(result, admin=admin, layout=layout, expected=expected)
                    by_mode[mode].append(result)
                    common.log(f"    round {r + 1} (prefill {expected} messages: {fill_s:.1f}s, untimed)")
                    common.log(format_row(result))
                    if not result.check.startswith("ok"):
                        common.log(f"      check: {result.check}")
                    for error in result.errors[:5]:
                        common.log(f"      error: {error}")
            raw, project = combine(by_mode["raw"]), combine(by_mode["project"])
            # Correctness of the whole level: every event of every round's meetings is in the log,
            # once, and every roster equals the pure fold of its events.
            total_expected = rounds * per_round * args.events_per_meeting
            counts = common.roster_counts()
            fold = common.roster_check(meetings[: rounds * per_round], expected_events=total_expected)
            ok = (
                project.check == "ok"
                and counts["events"] == total_expected
                and project.applied == total_expected
                and fold.startswith("ok")
            )
            project.check = (
                f"{'ok' if ok else 'MISMATCH'} (received {project.messages}, applied {project.applied}, "
                f"duplicates {project.duplicates}, quarantined {project.quarantined}, "
                f"events in DB {counts['events']}; {fold})"
            )
            raw.check = f"{raw.check} (received {raw.messages}, every queue empty after each round)"
            pair_ratios = [
                p.msgs_per_s / q.msgs_per_s for p, q in zip(by_mode["project"], by_mode["raw"], strict=True)
            ]
            ratio = project.msgs_per_s / raw.msgs_per_s
            common.log("    all rounds:")
            common.log(format_row(raw))
            common.log(format_row(project))
            common.log(f"      check: {project.check}")
            common.log(
                f"  => C={concurrency}: project {project.msgs_per_s:,.0f} / raw {raw.msgs_per_s:,.0f} msgs/s "
                f"= {ratio:.0%} of the raw ceiling (rounds: "
                f"{', '.join(f'{x:.0%}' for x in pair_ratios)})"
            )
            levels.append(
                {
                    "concurrency": concurrency,
                    "rounds": rounds,
                    "meetings_per_round": per_round,
                    "raw": asdict(raw),
                    "project": asdict(project),
                    "ratio": ratio,
                    "round_ratios": pair_ratios,
                    "round_phases": [asdict(x) for pair in by_mode.values() for x in pair],
                }
            )
        conditions = common.conditions()

    payload = {
        "bench": "drain",
        "conditions": conditions,
        "depth": args.depth,
        "events_per_meeting": args.events_per_meeting,
        "levels": levels,
    }
    common.results_write(args.json_out, payload)
    return payload


if __name__ == "__main__":
    main()
