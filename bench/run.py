"""Run every benchmark and print a summary: ``python -m bench.run [--quick]`` (``make bench``).

Each benchmark runs in its own process (``bench.ingest_bench``, then ``bench.drain_bench``), so
Django settings, database connections and the moto server never leak between them; their
figures come back as JSON and are summed up here. docs/benchmarks.md records the figures.

Needs PostgreSQL on 127.0.0.1:5432 (the ``bench_roster`` database is dropped and re-created;
``BENCH_DATABASE_URL`` overrides it, its name must start with ``bench``). Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common

INGEST_TARGET = 10_000  # events/s, shared/DESIGN.md
DRAIN_GOAL = 0.80  # project / raw ceiling


def _run(module: str, extra: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = handle.name
    try:
        command = [sys.executable, "-m", module, "--json-out", out, *extra]
        common.log(f"$ {' '.join(command[1:])}")
        subprocess.run(command, cwd=common.ROOT, check=True)
        return json.loads(Path(out).read_text())
    finally:
        Path(out).unlink(missing_ok=True)


def summary(ingest: dict | None, drain: dict | None, *, started: float, background: float) -> str:
    lines = ["", "=" * 78, "chime-roster benchmarks"]
    conditions = (ingest or drain or {}).get("conditions", {})
    lines.append(
        f"  {datetime.date.today()}  {conditions.get('cores')} cores, "
        f"PostgreSQL {conditions.get('postgresql')}, "
        f"Python {conditions.get('python')}, Django {conditions.get('django')}; "
        f"background load before start {background:.0%}"
    )
    if ingest:
        lines.append(
            f"ingest service alone ({ingest['total_events']} events, {ingest['meetings']} meetings x "
            f"{ingest['attendees']} attendees; target >= {INGEST_TARGET:,} events/s):"
        )
        for run in ingest["runs"]:
            verdict = "ok" if run["check"].startswith("ok") else "CHECK FAILED"
            lines.append(
                f"  {run['name']:<17} {run['events_per_s']:9,.0f} events/s  "
                f"(batch p50 {run['batch_ms_p50']:6.1f} ms, p95 {run['batch_ms_p95']:6.1f} ms; "
                f"{run['cpu_us_per_event']:5.0f} us CPU/event; others used {run['other_cpu_s']:5.1f} s CPU)  "
                f"[{verdict}]"
            )
        best = max(r["events_per_s"] for r in ingest["runs"] if not r["name"].startswith("duplicates"))
        lines.append(
            f"  best fresh run {best:,.0f} events/s: "
            f"{'meets' if best >= INGEST_TARGET else 'BELOW'} the {INGEST_TARGET:,} events/s target"
        )
    if drain:
        lines.append(
            f"SQS drain through moto_server (depth <= {drain['depth']} per queue; receive 10/1 s wait + "
            f"DeleteMessageBatch; goal project >= {DRAIN_GOAL:.0%} of raw):"
        )
        for level in drain["levels"]:
            raw, project, ratio = level["raw"], level["project"], level["ratio"]
            verdict = (
                "ok" if project["check"].startswith("ok") and raw["check"].startswith("ok") else "FAILED"
            )
            lines.append(
                f"  C={level['concurrency']} ({raw['messages']} msgs each, {level['rounds']} rounds): "
                f"raw {raw['msgs_per_s']:6,.0f} msgs/s, "
                f"project {project['msgs_per_s']:6,.0f} msgs/s = {ratio:4.0%} "
                f"{'(goal met)' if ratio >= DRAIN_GOAL else '(BELOW goal)'}  [checks {verdict}]"
            )
            lines.append(
                f"        per round {', '.join(f'{x:.0%}' for x in level['round_ratios'])}; "
                f"CPU ms/msg raw/project: moto {1000 * raw['moto_cpu_s'] / raw['messages']:.2f}/"
                f"{1000 * project['moto_cpu_s'] / project['messages']:.2f}, bench "
                f"{1000 * raw['bench_process_cpu_s'] / raw['messages']:.2f}/"
                f"{1000 * project['bench_process_cpu_s'] / project['messages']:.2f}, postgres "
                f"{1000 * project['postgres_cpu_s'] / project['messages']:.2f}; others used "
                f"{raw['other_cpu_s']:.0f}/{project['other_cpu_s']:.0f} s CPU"
            )
    lines.append(f"total bench time {time.monotonic() - started:.0f} s")
    lines.append("=" * 78)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the chime-roster benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--json-out", default=None, help="write every figure here")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to this long for the machine's background load to drop below 25%%",
    )
    args = parser.parse_args(argv)

    os.chdir(common.ROOT)
    background = common.background_load()
    deadline = time.monotonic() + args.wait_quiet
    while background > 0.25 and time.monotonic() < deadline:
        common.log(f"background load {background:.0%}: waiting for a quieter machine")
        time.sleep(10)
        background = common.background_load()
    common.log(f"background load before start: {background:.0%} of {os.cpu_count()} cores")
    started = time.monotonic()
    extra = ["--quick"] if args.quick else []
    ingest = None if args.skip_ingest else _run("bench.ingest_bench", extra)
    drain = None if args.skip_drain else _run("bench.drain_bench", extra)
    print(summary(ingest, drain, started=started, background=background), flush=True)
    common.results_write(
        args.json_out, {"ingest": ingest, "drain": drain, "background_load_before_start": background}
    )
    failed = [r["name"] for r in (ingest or {}).get("runs", []) if not r["check"].startswith("ok")] + [
        f"{mode}/C={level['concurrency']}"
        for level in (drain or {}).get("levels", [])
        for mode in ("raw", "project")
        if not level[mode]["check"].startswith("ok")
    ]
    if failed:
        print(f"correctness checks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
