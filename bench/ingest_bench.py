"""Benchmark: the ingest service alone, batches from memory into PostgreSQL.

``python -m bench.ingest_bench [--quick] [--json-out PATH] [--only NAME ...] [--profile NAME]
[--phases NAME ...]``

Each batch is one ``roster.ingest.messages_ingest`` call (parse, dedupe, insert, fold, state
write, seq: all included), exactly as the SQS drain calls it. Runs (each on an emptied roster
unless it is a duplicates run):

- ``per-meeting/10``, ``per-meeting/100``: batches cut from one meeting's delivery-ordered events
  (a per-meeting queue's receive), meetings taken round-robin;
- ``interleaved/10``, ``/100``, ``/1000``: every meeting's events merged by delivery time
  (one EventBridge rule feeding one queue), cut into batches;
- ``duplicates/10``, ``duplicates/100``: the same events again: every one a duplicate;
- ``2proc/10``, ``2proc/100``: two processes at once, each on its own half of the meetings,
  per-meeting batches; the rate is all events over the wall time of both.

After every fresh run the database is checked: event count, and every meeting's roster against
the pure fold of all its events (``roster.domain.fold.roster_fold``).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import multiprocessing
import pstats
import statistics
import sys
import time
from dataclasses import asdict, dataclass

from bench import common
from bench.common import meetings_generate, meetings_split, roster_check
from bench.phases import phases_format, phases_timed
from roster.dev.chime import as_envelope


@dataclass
class RunResult:
    name: str
    layout: str
    batch_size: int
    processes: int
    events: int
    seconds: float
    events_per_s: float
    batch_ms_p50: float
    batch_ms_p95: float
    batch_ms_max: float
    applied: int
    duplicates: int
    quarantined: int
    check: str = ""
    bench_process_cpu_s: float | None = None
    postgres_cpu_s: float = 0.0
    machine_busy: float = 0.0
    other_cpu_s: float = 0.0
    cpu_us_per_event: float = 0.0  # (bench process + its PostgreSQL backends) CPU per event


def batches_per_meeting(
    meetings: list[list[dict]], size: int, *, part: int = 0, parts: int = 1
) -> list[list]:
    """One meeting per batch (as a per-meeting queue's receive gives), meetings round-robin; only
    the meetings of ``part`` (index % parts == part)."""
    from roster.ingest import IncomingMessage

    per_meeting = []
    for index, details in list(enumerate(meetings))[part::parts]:
        queue = f"bench-meeting-{index:04d}"
        messages = [
            IncomingMessage(body=as_envelope(doc), queue=queue, message_id=f"m{index}-{n}")
            for n, doc in enumerate(details)
        ]
        per_meeting.append([messages[i : i + size] for i in range(0, len(messages), size)])
    out = []
    for round_ in range(max(len(b) for b in per_meeting)):
        for batches in per_meeting:
            if round_ < len(batches):
                out.append(batches[round_])
    return out


def batches_interleaved(details: list[dict], size: int) -> list[list]:
    """Every meeting's events as one queue delivers them (one EventBridge rule), cut into batches."""
    from roster.ingest import IncomingMessage

    messages = [
        IncomingMessage(body=as_envelope(doc), queue="bench-eventbridge", message_id=f"i{n}")
        for n, doc in enumerate(details)
    ]
    return [messages[i : i + size] for i in range(0, len(messages), size)]


def batches_ingest(batches: list[list]) -> tuple[float, list[float], object]:
    """Ingest the batches one after the other; (wall seconds, per-batch seconds, total result)."""
    from roster.ingest import IngestResult, messages_ingest

    total = IngestResult()
    durations = []
    clock = time.perf_counter
    start = clock()
    for batch in batches:
        t0 = clock()
        total.add(messages_ingest(messages=batch))
        durations.append(clock() - t0)
    common.broadcast_flush()  # the live push of the committed changes is part of the work
    return clock() - start, durations, total


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_single(
    name: str,
    layout: str,
    batches: list[list],
    *,
    fresh: bool,
    meetings: list[list[dict]],
    profile_path: str | None = None,
    phases: bool = False,
) -> RunResult:
    if fresh:
        common.roster_tables_truncate()
    common.database_vacuum()
    profiler = cProfile.Profile() if profile_path else None
    if profiler:
        profiler.enable()
    with common.CpuMeter() as cpu, phases_timed() if phases else contextlib.nullcontext() as timings:
        seconds, durations, total = batches_ingest(batches)
    if timings is not None:
        common.log(phases_format(timings, events=sum(len(b) for b in batches), seconds=seconds))
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile_path)
    events = sum(len(b) for b in batches)
    result = RunResult(
        name=name,
        layout=layout,
        batch_size=len(batches[0]),
        processes=1,
        events=events,
        seconds=seconds,
        events_per_s=common.rate(events, seconds),
        batch_ms_p50=1000 * statistics.median(durations),
        batch_ms_p95=1000 * _percentile(durations, 0.95),
        batch_ms_max=1000 * max(durations),
        applied=total.applied,
        duplicates=total.duplicates,
        quarantined=total.quarantined,
        bench_process_cpu_s=cpu.process_s,
        postgres_cpu_s=cpu.postgres_s,
        machine_busy=cpu.machine_busy,
        other_cpu_s=cpu.others_s(),
    )
    if fresh:
        result.check = roster_check(meetings, expected_events=events)
    else:
        counts = common.roster_counts()
        ok = total.applied == 0 and total.duplicates == events and counts["events"] == events
        result.check = (
            f"{'ok' if ok else 'MISMATCH'} (applied={total.applied}, duplicates={total.duplicates}, "
            f"events stored {counts['events']}, duplicate_count sum {counts['duplicate_count_sum']})"
        )
    return result


# --- two processes on disjoint meetings ------------------------------------------------------


def _child(part: int, parts: int, size: int, args: dict, barrier, out) -> None:
    common.environment_prepare()
    common.django_setup()
    meetings = meetings_split(meetings_generate(**args))
    batches = batches_per_meeting(meetings, size, part=part, parts=parts)
    barrier.wait()
    start = time.monotonic()
    cpu_start = time.process_time()
    seconds, durations, total = batches_ingest(batches)
    end = time.monotonic()
    cpu = time.process_time() - cpu_start
    out.put(
        {
            "start": start,
            "end": end,
            "events": sum(len(b) for b in batches),
            "durations": durations,
            "cpu": cpu,
            "applied": total.applied,
            "duplicates": total.duplicates,
            "quarantined": total.quarantined,
        }
    )


def run_processes(name: str, size: int, parts: int, args: dict, meetings: list[list[dict]]) -> RunResult:
    from django.db import connection

    common.roster_tables_truncate()
    common.database_vacuum()
    connection.close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(parts + 1)  # the children and this process: the meter starts with them
    out = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(p, parts, size, args, barrier, out)) for p in range(parts)]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=600)
    with common.CpuMeter() as cpu:
        reports = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        if proc.exitcode != 0:
            raise RuntimeError(f"ingest child exited with {proc.exitcode}")
    events = sum(r["events"] for r in reports)
    seconds = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    durations = [d for r in reports for d in r["durations"]]
    result = RunResult(
        name=name,
        layout="per-meeting",
        batch_size=size,
        processes=parts,
        events=events,
        seconds=seconds,
        events_per_s=common.rate(events, seconds),
        batch_ms_p50=1000 * statistics.median(durations),
        batch_ms_p95=1000 * _percentile(durations, 0.95),
        batch_ms_max=1000 * max(durations),
        applied=sum(r["applied"] for r in reports),
        duplicates=sum(r["duplicates"] for r in reports),
        quarantined=sum(r["quarantined"] for r in reports),
        bench_process_cpu_s=sum(r["cpu"] for r in reports),
        postgres_cpu_s=cpu.postgres_s,
        machine_busy=cpu.machine_busy,
        other_cpu_s=cpu.others_s(sum(r["cpu"] for r in reports)),
    )
    result.check = roster_check(meetings, expected_events=events)
    return result


RUN_NAMES = (
    "per-meeting/10",
    "per-meeting/100",
    "interleaved/10",
    "interleaved/100",
    "interleaved/1000",
    "duplicates/100",
    "duplicates/10",
    "2proc/10",
    "2proc/100",
)


def cpu_fill(result: RunResult) -> RunResult:
    cpu = (result.bench_process_cpu_s or 0.0) + result.postgres_cpu_s
    result.cpu_us_per_event = 1e6 * cpu / result.events if result.events else 0.0
    return result


def format_row(r: RunResult) -> str:
    process = f"{r.bench_process_cpu_s:5.1f}s" if r.bench_process_cpu_s is not None else "(children)"
    return (
        f"  {r.name:<17} batch={r.batch_size:<5} procs={r.processes} events={r.events:<6} "
        f"{r.seconds:7.2f}s {r.events_per_s:9,.0f} events/s  "
        f"batch p50={r.batch_ms_p50:6.1f}ms p95={r.batch_ms_p95:6.1f}ms max={r.batch_ms_max:7.1f}ms\n"
        f"      cpu: bench process {process}, postgres {r.postgres_cpu_s:5.1f}s, "
        f"= {r.cpu_us_per_event:.0f} us CPU/event; machine busy {r.machine_busy:.0%}, "
        f"other processes {r.other_cpu_s:4.1f}s"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Ingest service benchmark (PostgreSQL)")
    parser.add_argument("--quick", action="store_true", help="25 meetings (5,000 events), fewer runs")
    parser.add_argument("--meetings", type=int, default=None)
    parser.add_argument("--attendees", type=int, default=20)
    parser.add_argument("--events-per-meeting", type=int, default=200)
    parser.add_argument("--only", nargs="*", choices=RUN_NAMES, help="run only these")
    parser.add_argument("--profile", choices=RUN_NAMES, help="cProfile this run; stats to /tmp")
    parser.add_argument(
        "--phases", nargs="*", choices=RUN_NAMES, help="time each step of the ingest in these runs"
    )
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--no-recreate", action="store_true", help="keep the bench database as it is")
    args = parser.parse_args(argv)
    meetings = args.meetings or (25 if args.quick else 100)
    gen_args = {
        "meetings": meetings,
        "attendees": args.attendees,
        "events_per_meeting": args.events_per_meeting,
    }
    names = args.only or (
        ["per-meeting/10", "interleaved/100", "duplicates/100", "2proc/10"] if args.quick else list(RUN_NAMES)
    )

    common.environment_prepare()
    common.django_setup(recreate=not args.no_recreate)
    delivered = meetings_generate(**gen_args)
    by_meeting = meetings_split(delivered)
    total_events = len(delivered)
    common.log(
        f"ingest bench: {meetings} meetings x {args.attendees} attendees, {total_events} events, "
        f"database {common.BENCH_DATABASE_URL}"
    )

    results: list[RunResult] = []
    last_fresh_layout: tuple[str, int] | None = None
    for name in names:
        kind, size_text = name.split("/")
        size = int(size_text)
        profile_path = f"/tmp/bench-ingest-{kind}-{size}.prof" if args.profile == name else None
        if kind == "2proc":
            result = run_processes(name, size, 2, gen_args, by_meeting)
        elif kind == "duplicates":
            # Make sure the log holds exactly these events first (untimed), then ingest them again.
            if last_fresh_layout is None:
                common.roster_tables_truncate()
                batches_ingest(batches_interleaved(delivered, 100))
            result = run_single(
                name,
                "interleaved",
                batches_interleaved(delivered, size),
                fresh=False,
                meetings=by_meeting,
                profile_path=profile_path,
            )
        else:
            batches = batches_per_meeting(by_meeting, size) if kind == "per-meeting" else None
            result = run_single(
                name,
                kind,
                batches or batches_interleaved(delivered, size),
                fresh=True,
                meetings=by_meeting,
                profile_path=profile_path,
                phases=name in (args.phases or ()),
            )
            last_fresh_layout = (kind, size)
        results.append(cpu_fill(result))
        common.log(format_row(result))
        common.log(f"      check: {result.check}")
        if profile_path:
            common.log(f"      profile written to {profile_path}; top functions (cumulative):")
            pstats.Stats(profile_path, stream=sys.stdout).sort_stats("cumulative").print_stats(30)
            pstats.Stats(profile_path, stream=sys.stdout).sort_stats("tottime").print_stats(25)

    payload = {
        "bench": "ingest",
        "conditions": common.conditions(),
        "meetings": meetings,
        "attendees": args.attendees,
        "events_per_meeting": args.events_per_meeting,
        "total_events": total_events,
        "runs": [asdict(r) for r in results],
    }
    common.results_write(args.json_out, payload)
    return payload


if __name__ == "__main__":
    main()
