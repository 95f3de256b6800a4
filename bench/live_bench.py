"""Live-push benchmarks: SQS -> drain -> ingest -> broadcaster -> Redis pub/sub -> Daphne -> clients.

``.venv/bin/python -m bench.live_bench [--quick] [--only latency fanout burst] [--profile]``

Everything runs on this machine, on loopback: PostgreSQL (database ``bench_live``, or the one of
``BENCH_LIVE_DATABASE_URL``, dropped and recreated, then ``manage.py migrate``), Redis, a moto
server (local SQS), one Daphne process serving ``config.asgi:application``, ``manage.py
drain_sqs --wait-seconds 1 --concurrency 2`` as a subprocess, and ONE load-generator process
(asyncio + websockets) holding the feed clients. The load generator, the servers and the
producer share the machine's cores: the figures are those of the whole system on this machine,
not of the server alone. Each scenario prints the CPU each part used, and what other processes
(not ours) used meanwhile.

1. latency: 100 active meetings, 10 feed clients each (1,000 clients, each subscribed to its
   meeting with a token scoped to it). A producer sends AttendeeJoined (new attendee ids) and
   AttendeeVideoStarted (for attendees joined >= 1 s before) events, spread over the meetings,
   paced at a rate (what is due, every --send-interval-ms, by default 20 ms: batches of 10 at
   500 events/s), and keeps each event's send time (time.monotonic(), the system-wide
   CLOCK_MONOTONIC, taken just before the send call). A client keeps the receive time of the
   first frame showing that attendee joined (resp. with video). latency = receive - send, one
   sample per event per client. Phases: ``direct`` (the producer calls ``messages_ingest`` in
   batches of at most 10, as the drain would; no SQS), then ``sqs`` at each rate (SendMessageBatch
   -> moto -> drain_sqs subprocess). The SQS producer never lets more than --max-backlog events
   wait (sent - applied); when it holds back, the rate was not sustained and it says so. Per
   phase, latency-series-<phase>.csv in the log directory has each event's send time and first
   and last client's latency: whether a tail is one stall or spread over the run.
2. fanout: 1,000 clients on ONE meeting; the bench ingests one AttendeeJoined per delta in-process
   (``messages_ingest``; the broadcaster publishes after commit) at stepped rates; deliveries =
   frames received summed over clients. Publish time = when ``messages_ingest`` returned.
3. burst: a webinar's join burst, 10,000 AttendeeJoined over a primary meeting and its 40 replicas
   (Chime caps a meeting at 250 attendees; each replica is a meeting with its own meetingId), up to
   250 joined each, the joins in the order SQS would deliver them (delivery delays: out of order
   within and across meetings; roster.dev.chime.webinar_family). The meetings start first (not
   timed), with the dashboard's meeting list open in headless Chromium (staff user). Times from
   the first send until (a) the meetings' joined_count sums to 10,000 in the database and (b) the
   page's rows for them show 10,000 joined in all; at the end each meeting must have joined its
   viewers, its row show them, and its roster equal the whole fold of its events. Phases: ``raw``
   (the same queues and sender, received + deleted by threads without ingest: moto's own floor),
   ``sqs`` (drain_sqs --concurrency 2 over the queues), ``direct`` (the joins ingested from
   memory by 2 threads in batches of --burst-batch, by default SQS_BATCH_MESSAGES, what the
   drain gathers from a backlog: the project's own share). The sender keeps at most
   --burst-window messages in the queues (moto's ReceiveMessage and SendMessage cost grows with a
   queue's depth, unlike SQS). ``backlog``: the whole burst is sent to the queues first (AWS's
   share: in production Chime and SQS do this, not this machine), then drain_sqs --concurrency 2
   starts; times run from the drain's first receive (the earliest ``received_at`` of the
   burst's joins) until (a) and (b). This is the drain's whole share of a burst that arrives at
   once, or a backlog after an outage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

from bench import common
from bench import live_common as lc
from bench.common import log
from roster.dev.chime import live_traffic
from roster.dev.processes import Child, Supervisor, sqs_endpoint_start

CLIENTS_PER_MEETING = 10
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STAFF_USER, STAFF_PASSWORD = "bench-host", "bench correct horse battery"
BURST_PHASES = ("raw", "sqs", "backlog", "direct")


# --- figures ---------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(1000 * value, 1)


def latency_summary(samples: list[float]) -> dict[str, object]:
    return {
        "samples": len(samples),
        "p50_ms": ms(pct(samples, 0.50)),
        "p90_ms": ms(pct(samples, 0.90)),
        "p99_ms": ms(pct(samples, 0.99)),
        "max_ms": ms(max(samples) if samples else None),
        "mean_ms": ms(statistics.fmean(samples) if samples else None),
    }


def diff(after: dict, before: dict, keys: tuple[str, ...]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys}


COUNT_KEYS = ("frames", "deltas", "changes", "snapshots", "attendee_changes", "gaps", "duplicates", "bytes")


# --- the bench -------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.log_dir = Path(args.log_dir or f"/tmp/bench-live-{stamp}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, object] = {
            "date": "2026-11-24",
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        self.processes = Supervisor(log_dir=self.log_dir)
        self.profiles: dict[Child, Path] = {}  # --profile: where each child writes its cProfile

    # ---- setup ----

    def setup(self) -> None:
        self.results["background_load_before"] = round(100 * lc.background_load(2.0), 1)
        self.sqs_url = sqs_endpoint_start(self.processes, env=lc.child_env(), timeout=30)
        self.moto_pid = self.processes.pids()["moto"]
        self.env = lc.child_env(sqs_endpoint=self.sqs_url)
        os.environ.update(self.env)
        # This process only: Playwright's sync API keeps an event loop in the main thread, and the
        # bench's own ORM calls there (meeting setup, counts) are plain blocking calls.
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        lc.database_recreate()
        lc.settings_patch()
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        import boto3
        from botocore.config import Config

        self.sqs = boto3.client(
            "sqs", endpoint_url=self.sqs_url, region_name="us-east-1", config=Config(max_pool_connections=50)
        )
        self.results["conditions"] = self.conditions()

    def conditions(self) -> dict[str, object]:
        import platform

        import channels
        import channels_redis
        import daphne
        import django
        import websockets
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            pg = cursor.fetchone()[0]
        import redis

        info = redis.Redis.from_url(lc.REDIS_URL).info("server")
        return {
            "cores": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
            "django": django.get_version(),
            "channels": channels.__version__,
            "channels_redis": channels_redis.__version__,
            "daphne": daphne.__version__,
            "websockets": websockets.version.version,
            "postgresql": pg,
            "redis": info.get("redis_version"),
            "channel_layer": f"channels_redis.pubsub.RedisPubSubChannelLayer (prefix {lc.CHANNEL_PREFIX})",
            "sqs": "moto_server (local, loopback)",
            "background_load_percent_before": self.results["background_load_before"],
        }

    def teardown(self, keep_moto: bool = False) -> None:
        if keep_moto:
            self.processes.stop(*[child for child in reversed(self.processes.children) if child.tier])
        else:
            self.processes.stop_all()

    def start_daphne(self, tag: str) -> Child:
        profile = self.log_dir / f"daphne-{tag}.prof" if self.args.profile else None
        daphne, self.port = lc.daphne_start(self.processes, env=self.env, tag=tag, profile=profile)
        self.profiles[daphne] = profile
        return daphne

    def start_drain(self, tag: str, queue_urls: list[str]) -> Child:
        profile = self.log_dir / f"drain-{tag}.prof" if self.args.profile else None
        drain = lc.drain_start(
            self.processes,
            env=self.env,
            tag=tag,
            queue_urls=queue_urls,
            concurrency=self.args.drain_concurrency,
            profile=profile,
        )
        self.profiles[drain] = profile
        return drain

    def stop_child(self, child: Child) -> None:
        self.processes.stop(child)
        profile = self.profiles.pop(child, None)
        if profile and profile.exists():
            self.profile_print(child.name, profile)

    def profile_print(self, name: str, path: Path) -> None:
        import io
        import pstats

        out = io.StringIO()
        stats = pstats.Stats(str(path), stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        text = out.getvalue()
        (self.log_dir / f"{path.stem}.txt").write_text(text)
        log(f"  profile of {name}: {path} (top functions in {self.log_dir / (path.stem + '.txt')})")

    def create_queue(self, name: str) -> str:
        return self.sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]

    def tokens_for(self, meetings: list[tuple[str, str]]) -> dict[str, str]:
        from roster.read.access import feed_token_create

        return {mid: feed_token_create(name=f"bench-{ext}", meetings=mid)[1] for mid, ext in meetings}

    def loadgen_start(self, clients: list[dict], mode: str) -> lc.LoadGen:
        cfg = {
            "url": f"ws://127.0.0.1:{self.port}/ws/feed/",
            "clients": clients,
            "mode": mode,
            "connect_concurrency": 50,
            "out": str(self.log_dir / f"loadgen-{mode}-result.json"),
            "max_seconds": 1500,
        }
        loadgen = lc.LoadGen(cfg, processes=self.processes, env=self.env)
        t0 = time.monotonic()
        ready = loadgen.wait_ready(timeout=400)
        log(
            f"  {ready['ready']}/{len(clients)} feed clients connected and subscribed in "
            f"{time.monotonic() - t0:.1f}s" + (f"; failures: {ready['errors']}" if ready["failed"] else "")
        )
        if ready["ready"] < len(clients):
            raise RuntimeError(
                f"only {ready['ready']} of {len(clients)} clients connected: {ready['errors']}"
            )
        return loadgen

    def applied_events(self) -> int:
        from roster.models import Event

        return Event.objects.count()

    def newest_event_id(self) -> int:
        from roster.models import Event

        return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0

    # ---- scenario 1: latency ----

    def latency(self) -> dict[str, object]:
        a = self.args
        log("\n== 1. latency: 100 meetings x 10 feed clients (1,000), events spread over the meetings ==")
        daphne = self.start_daphne("latency")
        meetings = common.meetings_start(count=100, tag="lat")
        tokens = self.tokens_for(meetings)
        queue = self.create_queue("bench-live-latency")
        drain = self.start_drain("latency", [queue])
        clients = [
            {"token": tokens[mid], "meetings": [mid]}
            for mid, _ in meetings
            for _ in range(CLIENTS_PER_MEETING)
        ]
        loadgen = self.loadgen_start(clients, "latency")
        pids = {"daphne": daphne.pid, "drain_sqs": drain.pid, "moto": self.moto_pid, "loadgen": loadgen.pid}
        send_times: dict[str, tuple[str, float]] = {}
        phases: list[dict[str, object]] = []

        from roster.ingest import IncomingMessage, messages_ingest

        def direct_send(batch: list[tuple[str, str]]) -> None:
            messages_ingest(messages=[IncomingMessage(body=body) for _, body in batch])

        def sqs_send(batch: list[tuple[str, str]]) -> None:
            response = self.sqs.send_message_batch(
                QueueUrl=queue,
                Entries=[{"Id": str(i), "MessageBody": body} for i, (_, body) in enumerate(batch)],
            )
            if response.get("Failed"):
                raise RuntimeError(f"SendMessageBatch failed: {response['Failed'][:2]}")

        plan = [("direct", rate, direct_send) for rate in a.direct_rates if rate > 0]
        plan += [("sqs", rate, sqs_send) for rate in a.sqs_rates if rate > 0]
        for index, (mode, rate, send) in enumerate(plan):
            tag = f"{mode}@{rate:g}"
            events = live_traffic(meetings=meetings, prefix=f"p{index}", seed=index)
            log(
                f"  -- phase {tag}: {rate:g} events/s for {a.latency_seconds:g}s"
                + (
                    " (SendMessageBatch -> moto -> drain_sqs --concurrency 2)"
                    if mode == "sqs"
                    else " (messages_ingest in this process, batches <= 10, no SQS)"
                )
            )
            phase = self.latency_phase(
                tag=tag,
                mode=mode,
                rate=rate,
                send=send,
                events=events,
                loadgen=loadgen,
                pids=pids,
                send_times=send_times,
                queue=queue,
            )
            phases.append(phase)
        result = loadgen.finish()
        seen: dict[str, list[float]] = result["seen"]
        for phase in phases:
            samples: list[float] = []
            last_client: list[float] = []
            first_client: list[float] = []
            missing = 0
            series: list[tuple[float, float, float]] = []  # (send time, first, last client), seconds
            for key, (tag, t_send) in send_times.items():
                if tag != phase["phase"]:
                    continue
                got = seen.get(key, [])
                missing += max(0, CLIENTS_PER_MEETING - len(got))
                if got:
                    lat = [t - t_send for t in got]
                    samples.extend(lat)
                    last_client.append(max(lat))
                    first_client.append(min(lat))
                    series.append((t_send, min(lat), max(lat)))
            self.series_write(phase["phase"], series)
            phase["latency_all_deliveries"] = latency_summary(samples)
            phase["latency_first_client_per_event"] = latency_summary(first_client)
            phase["latency_last_client_per_event"] = latency_summary(last_client)
            phase["deliveries_missing"] = missing
            self.print_latency_phase(phase)
        self.stop_child(drain)
        drain_summary = _last_line(drain.log_path, r"received=\d+")
        self.stop_child(daphne)
        out = {
            "clients": len(clients),
            "meetings": len(meetings),
            "clients_per_meeting": CLIENTS_PER_MEETING,
            "loadgen_cpu_s": round(result["cpu_s"], 1),
            "loadgen_errors": result["errors"],
            "drain_summary": drain_summary,
            "phases": phases,
        }
        log(f"  drain_sqs: {drain_summary}; load-generator errors: {result['errors'] or 'none'}")
        return out

    def series_write(self, tag: str, series: list[tuple[float, float, float]]) -> None:
        """Per event, when it was sent (s into the phase) and its first and last client's latency
        (ms), in send order: where a tail comes from (one stall, or spread) shows over time."""
        series.sort()
        start = series[0][0] if series else 0.0
        path = self.log_dir / f"latency-series-{tag.replace('@', '-')}.csv"
        lines = ["sent_s,first_ms,last_ms"]
        lines += [f"{t - start:.4f},{1000 * a:.1f},{1000 * b:.1f}" for t, a, b in series]
        path.write_text("\n".join(lines) + "\n")

    def latency_phase(self, *, tag, mode, rate, send, events, loadgen, pids, send_times, queue) -> dict:
        a = self.args
        applied0 = self.applied_events()
        newest0 = self.newest_event_id()
        backlog_cap = a.max_backlog
        depth_samples: list[int] = []
        applied_now = [applied0]
        stop_monitor = threading.Event()

        def monitor() -> None:  # applied events (DB) every 0.1 s, the queue's depth (SQS) every 0.5 s
            from django.db import connection

            try:
                ticks = 0
                while not stop_monitor.wait(0.1):
                    # The newest log id, not COUNT(*): an index lookup, where a count walks the log.
                    applied_now[0] = applied0 + self.newest_event_id() - newest0
                    ticks += 1
                    if mode == "sqs" and ticks % 5 == 0:
                        attrs = self.sqs.get_queue_attributes(
                            QueueUrl=queue,
                            AttributeNames=[
                                "ApproximateNumberOfMessages",
                                "ApproximateNumberOfMessagesNotVisible",
                            ],
                        )["Attributes"]
                        depth_samples.append(
                            int(attrs["ApproximateNumberOfMessages"])
                            + int(attrs["ApproximateNumberOfMessagesNotVisible"])
                        )
            finally:
                connection.close()

        watcher = threading.Thread(target=monitor, daemon=True)
        watcher.start()
        before = loadgen.stats()
        sent = 0
        held_back = 0
        target = int(rate * a.latency_seconds)
        with lc.CpuMeter(pids) as cpu:
            start = time.monotonic()
            end = start + a.latency_seconds
            next_send = start
            while sent < target:
                now = time.monotonic()
                if now >= end:
                    break
                due = min(target, int((now - start) * rate) + 1)
                # Send when a full SendMessageBatch (10) is due, or what is due once a tick has
                # passed since the last send: the stand-in for AWS costs this machine per request.
                if not (due - sent >= 10 or (due > sent and now >= next_send)):
                    wake = start + (sent + 1) / rate if now >= next_send else next_send
                    wake = min(max(wake, start + (sent + 1) / rate), start + (sent + 10) / rate)
                    time.sleep(min(0.02, max(0.0002, wake - now)))
                    continue
                if mode == "sqs" and sent - (applied_now[0] - applied0) > backlog_cap:
                    held_back += 1
                    time.sleep(0.005)
                    continue
                batch = [next(events) for _ in range(min(10, due - sent))]
                t_send = time.monotonic()
                next_send = t_send + a.send_interval_ms / 1000
                send(batch)
                for key, _ in batch:
                    send_times[key] = (tag, t_send)
                sent += len(batch)
            window = time.monotonic() - start
            during = loadgen.stats()
        # Tail: wait until every client got what was sent (or nothing moves for 5 s).
        expected = sent * CLIENTS_PER_MEETING
        tail_start = time.monotonic()
        last_progress, last_seen = time.monotonic(), -1
        after = during
        while time.monotonic() - tail_start < 60:
            after = loadgen.stats()
            got = after["seen_records"] - before["seen_records"]
            if got >= expected:
                break
            if got != last_seen:
                last_seen, last_progress = got, time.monotonic()
            elif time.monotonic() - last_progress > 5:
                break
            time.sleep(0.5)
        tail = time.monotonic() - tail_start
        stop_monitor.set()
        watcher.join(5)
        applied = self.applied_events() - applied0
        counts = diff(during, before, COUNT_KEYS)
        total_counts = diff(after, before, COUNT_KEYS)
        return {
            "phase": tag,
            "mode": mode,
            "target_events_per_s": rate,
            "events_sent": sent,
            "events_applied": applied,
            "window_s": round(window, 2),
            "achieved_events_per_s": round(sent / window, 1),
            "producer_held_back_ticks": held_back,
            "queue_depth_max": max(depth_samples) if depth_samples else None,
            "queue_depth_median": statistics.median(depth_samples) if depth_samples else None,
            "tail_s": round(tail, 2),
            "per_second_in_window": {k: round(v / window, 1) for k, v in counts.items() if k != "bytes"},
            "mean_frame_bytes": round(total_counts["bytes"] / total_counts["frames"])
            if total_counts["frames"]
            else None,
            "counts_incl_tail": total_counts,
            "cpu": cpu.report(),
        }

    def print_latency_phase(self, phase: dict) -> None:
        per = phase["per_second_in_window"]
        lat = phase["latency_all_deliveries"]
        last = phase["latency_last_client_per_event"]
        c = phase["counts_incl_tail"]
        log(
            f"  [{phase['phase']}] sent {phase['events_sent']} events in {phase['window_s']}s = "
            f"{phase['achieved_events_per_s']}/s (target {phase['target_events_per_s']:g}/s), applied "
            f"{phase['events_applied']}, producer held back {phase['producer_held_back_ticks']} ticks, "
            f"queue depth max {phase['queue_depth_max']} median {phase['queue_depth_median']}"
        )
        log(
            f"      latency send->client over {lat['samples']} deliveries: p50 {lat['p50_ms']} ms, "
            f"p90 {lat['p90_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms; "
            f"last client per event p50 {last['p50_ms']} p99 {last['p99_ms']} ms; "
            f"missing deliveries {phase['deliveries_missing']}"
        )
        log(
            f"      clients received per second: {per['deltas']} deltas, {per['frames']} frames, "
            f"{per['attendee_changes']} attendee changes (mean frame {phase['mean_frame_bytes']} B)"
        )
        log(
            f"      seq gaps seen by clients {c['gaps']}, 'changes' catch-ups {c['changes']}, "
            f"duplicates {c['duplicates']}, snapshots {c['snapshots']}"
        )
        log(f"      CPU (% of one core): {_cpu_line(phase['cpu'])}")

    # ---- scenario 2: fan-out ----

    def fanout(self) -> dict[str, object]:
        a = self.args
        log("\n== 2. fan-out: 1,000 feed clients on ONE meeting, one Daphne process ==")
        daphne = self.start_daphne("fanout")
        meetings = common.meetings_start(count=1, tag="fan")
        ((mid, _),) = meetings
        token = self.tokens_for(meetings)[mid]
        loadgen = self.loadgen_start([{"token": token, "meetings": [mid]}] * a.fanout_clients, "fanout")
        pids = {"daphne": daphne.pid, "loadgen": loadgen.pid}

        from roster.ingest import IncomingMessage, messages_ingest
        from roster.live.broadcast import publisher

        publish: dict[int, tuple[int, float]] = {}  # seq -> (step, publish time)
        steps = []
        joins = live_traffic(meetings=meetings, prefix="f", seed=0, video=False)
        for step, rate in enumerate(a.fanout_rates):
            log(
                f"  -- step {step}: {rate:g} deltas/s x {a.fanout_clients} clients = "
                f"{rate * a.fanout_clients:,.0f} deliveries/s offered, for {a.fanout_seconds:g}s "
                f"({a.fanout_attendees} attendee(s) per delta)"
            )
            before = loadgen.stats()
            target = int(rate * a.fanout_seconds)
            sent = 0
            with lc.CpuMeter(pids) as cpu:
                start = time.monotonic()
                while sent < target and time.monotonic() < start + a.fanout_seconds + 5:
                    now = time.monotonic()
                    due = min(target, int((now - start) * rate) + 1)
                    if due <= sent:
                        time.sleep(min(0.004, max(0.0, (sent + 1) / rate - (now - start))))
                        continue
                    bodies = [next(joins)[1] for _ in range(a.fanout_attendees)]
                    result = messages_ingest(messages=[IncomingMessage(body=b) for b in bodies])
                    publish[result.changed_meetings[mid]] = (step, time.monotonic())
                    sent += 1
                window = time.monotonic() - start
                publisher.flush()
                during = loadgen.stats()
                expected = sent * a.fanout_clients
                last_progress, last_frames, tail_start = time.monotonic(), -1, time.monotonic()
                after = during
                while time.monotonic() - tail_start < 90:
                    after = loadgen.stats()
                    got = after["deltas"] + after["changes"] - before["deltas"] - before["changes"]
                    if got >= expected:
                        break
                    if got != last_frames:
                        last_frames, last_progress = got, time.monotonic()
                    elif time.monotonic() - last_progress > 5:
                        break
                    time.sleep(0.25)
            steps.append(
                {
                    "step": step,
                    "deltas_per_s_target": rate,
                    "deltas_published": sent,
                    "publish_window_s": round(window, 2),
                    "deltas_per_s_published": round(sent / window, 1),
                    "offered_deliveries_per_s": round(sent * a.fanout_clients / window),
                    "expected_deliveries": expected,
                    "counts": diff(after, before, COUNT_KEYS),
                    "cpu": cpu.report(),
                    "cpu_used_s": {k: round(v, 2) for k, v in cpu.used.items()},
                }
            )
            got = after["deltas"] + after["changes"] - before["deltas"] - before["changes"]
            rough = got / (time.monotonic() - start)
            if got < expected or rough < 0.8 * rate * a.fanout_clients:
                log(
                    f"     (saturated: about {rough:,.0f} deliveries/s for "
                    f"{rate * a.fanout_clients:,.0f}/s offered;"
                    " higher steps skipped)"
                )
                break
        result = loadgen.finish()
        self.stop_child(daphne)
        for item in steps:
            step = item["step"]
            first_pub = min(t for s, t in publish.values() if s == step)
            lat: list[float] = []
            last_recv = first_pub
            delivered = 0
            for recv in result["recv"]:
                for seq, t in recv:
                    info = publish.get(seq)
                    if info is None or info[0] != step:
                        continue
                    delivered += 1
                    lat.append(t - info[1])
                    last_recv = max(last_recv, t)
            span = last_recv - first_pub
            item["delivered"] = delivered
            item["delivery_span_s"] = round(span, 2)
            item["deliveries_per_s"] = round(delivered / span) if span > 0 else None
            item["latency_publish_to_client"] = latency_summary(lat)
            if delivered:
                item["cpu_us_per_delivery"] = {
                    k: round(1e6 * item["cpu_used_s"][k] / delivered, 1) for k in ("daphne", "loadgen")
                }
            c = item["counts"]
            log(
                f"  [step {step}] published {item['deltas_published']} deltas at "
                f"{item['deltas_per_s_published']}/s (offered {item['offered_deliveries_per_s']:,}/s); "
                f"clients got {delivered:,}/{item['expected_deliveries']:,} in {span:.2f}s from first "
                f"publish to last receipt = {item['deliveries_per_s'] or 0:,} deliveries/s"
            )
            lt = item["latency_publish_to_client"]
            log(
                f"      publish->client p50 {lt['p50_ms']} ms, p99 {lt['p99_ms']} ms, max {lt['max_ms']} ms; "
                f"gaps {c['gaps']}, 'changes' catch-ups {c['changes']}, duplicates {c['duplicates']}, "
                f"attendee changes {c['attendee_changes']:,}"
            )
            log(
                f"      CPU (% of one core): {_cpu_line(item['cpu'])}; CPU per delivery: "
                f"{item.get('cpu_us_per_delivery')} µs"
            )
        best = max((s["deliveries_per_s"] or 0) for s in steps)
        log(f"  best sustained: {best:,} deliveries/s; load-generator errors: {result['errors'] or 'none'}")
        return {
            "clients": a.fanout_clients,
            "attendees_per_delta": a.fanout_attendees,
            "steps": steps,
            "best_deliveries_per_s": best,
            "loadgen_cpu_s": round(result["cpu_s"], 1),
            "loadgen_errors": result["errors"],
        }

    # ---- scenario 3: a webinar's 10,000-join burst ----

    def burst(self) -> dict[str, object]:
        a = self.args
        log(
            f"\n== 3. join burst: {a.burst_attendees:,} AttendeeJoined over a webinar's "
            f"{a.burst_replicas + 1} meetings (a primary and {a.burst_replicas} replicas), arriving out of "
            "order; the dashboard open in headless Chromium =="
        )
        from django.contrib.auth.models import User

        User.objects.create_user(STAFF_USER, password=STAFF_PASSWORD, is_staff=True)
        daphne = self.start_daphne("burst")
        queues = [self.create_queue(f"bench-live-burst-{i:02d}") for i in range(a.burst_queues)]
        out: dict[str, object] = {
            "attendees": a.burst_attendees,
            "meetings": a.burst_replicas + 1,
            "queues": a.burst_queues,
            "window": a.burst_window,
            "phases": {},
        }
        phases = a.burst_phases
        if "raw" in phases:
            out["phases"]["raw"] = self.burst_raw(queues)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for mode in ("sqs", "backlog", "direct"):
                    if mode not in phases:
                        continue
                    drain = self.start_drain("burst", queues) if mode == "sqs" else None
                    pids = {"daphne": daphne.pid, "moto": self.moto_pid}
                    if drain:
                        pids["drain_sqs"] = drain.pid
                    out["phases"][mode] = self.burst_phase(mode, browser, queues, pids)
                    if drain:
                        self.stop_child(drain)
                        out["phases"][mode]["drain_summary"] = _last_line(drain.log_path, r"received=\d+")
            finally:
                browser.close()
        self.stop_child(daphne)
        return out

    def burst_family(self, mode: str, *, start: bool = True) -> tuple[list[list[dict]], list[str]]:
        """The phase's webinar and the bodies of its joins (bench.common.webinar_burst)."""
        a = self.args
        return common.webinar_burst(
            seed=BURST_PHASES.index(mode), viewers=a.burst_attendees, replicas=a.burst_replicas, start=start
        )

    def burst_raw(self, queues: list[str]) -> dict[str, object]:
        """moto's floor: the same sender, queues and window; threads receive + delete, no ingest."""
        _, bodies = self.burst_family("raw", start=False)
        n = len(bodies)
        received = [0]
        lock = threading.Lock()
        stop = threading.Event()

        def receiver(queue: str) -> None:
            from roster.sources.sqs import queue_delete, queue_receive, sqs_client

            client = sqs_client(queue_url=queue, wait_seconds=1)
            while not stop.is_set():
                messages = queue_receive(client=client, queue_url=queue, wait_seconds=1, max_messages=10)
                if messages:
                    queue_delete(client=client, queue_url=queue, messages=messages)
                    with lock:
                        received[0] += len(messages)

        threads = [
            threading.Thread(target=receiver, args=(q,), daemon=True) for q in queues for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        with lc.CpuMeter({"moto": self.moto_pid}) as cpu:
            t0, t_sent = self.burst_send(queues, bodies, applied=lambda: received[0])
            deadline = time.monotonic() + 600
            while received[0] < n and time.monotonic() < deadline:
                time.sleep(0.01)
            t_done = time.monotonic()
        stop.set()
        for thread in threads:
            thread.join(5)
        result = {
            "sent_s": round(t_sent - t0, 2),
            "all_received_and_deleted_s": round(t_done - t0, 2),
            "received": received[0],
            "msgs_per_s": round(received[0] / (t_done - t0)),
            "cpu": cpu.report(),
        }
        log(
            f"  [raw moto, no ingest] {n:,} sent in {result['sent_s']}s, all received+deleted after "
            f"{result['all_received_and_deleted_s']}s ({result['msgs_per_s']} msg/s) "
            f"by {len(threads)} threads; "
            f"CPU: {_cpu_line(result['cpu'])}"
        )
        return result

    def burst_send(
        self,
        queues: list[str],
        bodies: list[str],
        *,
        applied,
        stop: threading.Event | None = None,
        window: int | None = -1,
    ) -> tuple[float, float]:
        """Send every body (round robin over the queues, batches of 10, 2 threads), keeping at most
        ``window`` (default ``--burst-window``; None: no limit) messages sent but not yet applied.
        Returns (first send, last send)."""
        import boto3
        from botocore.config import Config

        if window == -1:
            window = self.args.burst_window
        if window is None:
            window = len(bodies)
        chunks = [bodies[i : i + 10] for i in range(0, len(bodies), 10)]
        next_chunk = [0]
        sent = [0]
        lock = threading.Lock()
        t0 = [None]
        errors: list[str] = []

        def sender() -> None:
            client = boto3.client(
                "sqs",
                endpoint_url=self.sqs_url,
                region_name="us-east-1",
                config=Config(max_pool_connections=4),
            )
            while stop is None or not stop.is_set():
                with lock:
                    index = next_chunk[0]
                    if index >= len(chunks):
                        return
                    next_chunk[0] += 1
                deadline = time.monotonic() + 120
                while sent[0] - applied() > window and time.monotonic() < deadline:
                    time.sleep(0.002)
                with lock:
                    if t0[0] is None:
                        t0[0] = time.monotonic()
                try:
                    response = client.send_message_batch(
                        QueueUrl=queues[index % len(queues)],
                        Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunks[index])],
                    )
                    if response.get("Failed"):
                        errors.append(str(response["Failed"][:1]))
                except Exception as exc:  # noqa: BLE001
                    errors.append(str(exc))
                with lock:
                    sent[0] += len(chunks[index])

        threads = [threading.Thread(target=sender, daemon=True) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(900)
        if errors:
            raise RuntimeError(f"burst send errors: {errors[:3]}")
        return t0[0], time.monotonic()

    def burst_phase(self, mode: str, browser, queues: list[str], pids: dict[str, int]) -> dict[str, object]:
        from django.db import connection
        from django.db.models import Sum

        from roster.models import Meeting

        family, bodies = self.burst_family(mode)
        n = len(bodies)
        ids = [meeting[0]["meetingId"] for meeting in family]
        sizes = {meeting[0]["meetingId"]: len(meeting) - 1 for meeting in family}
        base = f"http://127.0.0.1:{self.port}"
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/admin/login/?next=/")  # the meeting list: every meeting's joined count
        page.fill("#id_username", STAFF_USER)
        page.fill("#id_password", STAFF_PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_selector(f'tr[data-meeting-id="{ids[-1]}"]', timeout=30000)
        page.wait_for_selector("#connection-status[data-state=live]", timeout=30000)
        shown_before = sum(_dashboard_joined(page, ids).values())

        joined = [0]
        t_db = [None]
        stop = threading.Event()
        family_rows = Meeting.objects.filter(meeting_id__in=ids)

        def db_poll() -> None:
            try:
                while not stop.is_set():
                    joined[0] = family_rows.aggregate(joined=Sum("joined_count"))["joined"] or 0
                    if joined[0] >= n and t_db[0] is None:
                        t_db[0] = time.monotonic()
                        return
                    time.sleep(0.02)
            finally:
                connection.close()

        t_sent = [None]
        t0 = [None]

        drain = None
        preload_s = None
        if mode == "backlog":
            # The burst waits in the queues before the drain starts: the sending is not timed.
            first_send, last_send = self.burst_send(queues, bodies, applied=lambda: 0, window=None)
            preload_s = round(last_send - first_send, 2)
            drain = self.start_drain("burst-backlog", queues)
            pids = {**pids, "drain_sqs": drain.pid}
        wall_minus_monotonic = time.time() - time.monotonic()

        def produce() -> None:
            if mode == "backlog":
                return
            if mode == "sqs":
                t0[0], t_sent[0] = self.burst_send(queues, bodies, applied=lambda: joined[0], stop=stop)
            else:
                t0[0] = time.monotonic()
                common.bodies_ingest(bodies, batch=self.args.burst_batch, threads=2, stop=stop)
                t_sent[0] = time.monotonic()

        poller = threading.Thread(target=db_poll, daemon=True)
        producer = threading.Thread(target=produce, daemon=True)
        with lc.CpuMeter(pids, {"chromium (ours)": lc.descendants_named("chromium", "chrome")}) as cpu:
            poller.start()
            producer.start()
            from playwright.sync_api import TimeoutError as PlaywrightTimeout

            try:
                page.wait_for_function(
                    f"([ids, n]) => ({DASHBOARD_JOINED_JS})(ids) === n",
                    arg=[ids, n],
                    timeout=self.args.burst_timeout * 1000,
                    polling=20,
                )
                t_page = time.monotonic()
            except PlaywrightTimeout:
                t_page = None
                log(
                    f"      (dashboard did not show {n:,} within {self.args.burst_timeout:g}s; "
                    f"database joined_count {joined[0]:,})"
                )
            stop.set()
            producer.join(60 if t_page else 5)
            poller.join(10)
        stop.set()
        shown_per_meeting = _dashboard_joined(page, ids)
        shown = sum(shown_per_meeting.values())
        page.close()
        from django.db.models import Min

        from roster.models import Attendee, Event

        drain_summary = None
        if drain is not None:
            self.stop_child(drain)
            drain_summary = _last_line(drain.log_path, r"received=\d+")
            burst_events = Event.objects.filter(meeting_id__in=ids, event_type="chime:AttendeeJoined")
            first = burst_events.aggregate(first=Min("received_at"))["first"]
            t0[0] = first.timestamp() - wall_minus_monotonic if first else None
        stored = dict(family_rows.values_list("meeting_id", "joined_count"))
        result = {
            "mode": mode,
            "sent_or_ingested_s": round(t_sent[0] - t0[0], 2) if t_sent[0] and t0[0] else preload_s,
            "database_joined_s": round(t_db[0] - t0[0], 2) if t_db[0] else None,
            "dashboard_shows_s": round(t_page - t0[0], 2) if t_page else None,
            "joined_count_at_end": joined[0],
            "dashboard_joined_before": shown_before,
            "dashboard_joined_after": shown,
            "every_meeting_joined_its_viewers": stored == sizes,
            "dashboard_shows_every_meeting": shown_per_meeting == sizes,
            "attendee_rows": Attendee.objects.filter(meeting_id__in=ids).count(),
            "roster_check": common.roster_check(family),
            "page_errors": errors[:5],
            "cpu": cpu.report(),
        }
        if drain_summary is not None:
            result["drain_summary"] = drain_summary
        how = {
            "sqs": "SendMessageBatch to the queues -> drain_sqs --concurrency 2",
            "backlog": "the whole burst in the queues first (not timed), then drain_sqs --concurrency 2; "
            "times from the drain's first receive",
        }.get(mode, f"messages_ingest from memory, 2 threads, batches of {self.args.burst_batch}, no SQS")
        log(
            f"  [{mode}] ({how}) sent/ingested in {result['sent_or_ingested_s']}s; "
            f"database joined_count summed over the {len(ids)} meetings = {n:,} after "
            f"{result['database_joined_s']}s; dashboard shows {shown:,} joined after "
            f"{result['dashboard_shows_s']}s (before: {shown_before})"
            + (f"; page errors: {errors[:2]}" if errors else "")
        )
        log(
            f"      check: each meeting joined its viewers {result['every_meeting_joined_its_viewers']}, "
            f"dashboard row by row {result['dashboard_shows_every_meeting']}; {result['roster_check']}"
        )
        log(f"      CPU (% of one core): {_cpu_line(result['cpu'])}")
        return result


# The joined counts the meeting list (the dashboard's first page) shows for these meetings.
DASHBOARD_JOINED_JS = """ids => ids.reduce((sum, id) => {
  const cell = document.querySelector(`tr[data-meeting-id="${id}"] td.joined`);
  return sum + (parseInt((cell ? cell.textContent : "").replace(/[^0-9]/g, ""), 10) || 0);
}, 0)"""


def _dashboard_joined(page, ids: list[str]) -> dict[str, int]:
    """Per meeting, the joined count its row on the meeting list shows (0 for none)."""
    return {meeting_id: page.evaluate(DASHBOARD_JOINED_JS, [meeting_id]) for meeting_id in ids}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _cpu_line(cpu: dict) -> str:
    parts = [f"{k} {v}" for k, v in cpu["cpu_percent_of_one_core"].items()]
    return ", ".join(parts) + f"; machine busy {cpu['machine_busy_percent']}% of {cpu['cores']} cores"


def _last_line(path: Path, pattern: str) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if re.search(pattern, line)]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test, not the figures)")
    parser.add_argument("--only", nargs="+", choices=["latency", "fanout", "burst"], default=None)
    parser.add_argument("--profile", action="store_true", help="run daphne and drain_sqs under cProfile")
    parser.add_argument("--log-dir", default=None)
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--latency-seconds", type=float, default=None)
    parser.add_argument(
        "--direct-rates", type=float, nargs="*", default=[500.0, 100.0], help="events/s of the direct phases"
    )
    parser.add_argument("--sqs-rates", type=float, nargs="*", default=[500.0, 100.0])
    parser.add_argument("--max-backlog", type=int, default=250)
    parser.add_argument(
        "--send-interval-ms",
        type=float,
        default=20.0,
        help="the latency producer sends what is due at most this often, or 10 at once (one "
        "SendMessageBatch) when that many are due first; at 500 events/s, 20 ms means batches "
        "of 10, SQS's maximum (the local endpoint costs this machine CPU per request)",
    )
    parser.add_argument("--drain-concurrency", type=int, default=2, help="drain_sqs --concurrency")
    parser.add_argument("--fanout-clients", type=int, default=1000)
    parser.add_argument("--fanout-rates", type=float, nargs="+", default=None)
    parser.add_argument("--fanout-seconds", type=float, default=None)
    parser.add_argument("--fanout-attendees", type=int, default=1)
    parser.add_argument("--burst-attendees", type=int, default=None, help="joins in all (default 10,000)")
    parser.add_argument("--burst-replicas", type=int, default=40, help="replica meetings of the primary")
    parser.add_argument("--burst-queues", type=int, default=10)
    parser.add_argument("--burst-window", type=int, default=300)
    parser.add_argument("--burst-timeout", type=float, default=300)
    parser.add_argument(
        "--burst-phases",
        nargs="+",
        choices=["raw", "sqs", "backlog", "direct"],
        default=["raw", "sqs", "backlog", "direct"],
    )
    parser.add_argument(
        "--burst-batch",
        type=int,
        default=None,
        help="batch size of the direct burst (default SQS_BATCH_MESSAGES: what the drain gathers "
        "from a backlog)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    if args.latency_seconds is None:
        args.latency_seconds = 8.0 if quick else 30.0
    if args.fanout_rates is None:
        args.fanout_rates = [5.0, 20.0] if quick else [5.0, 10.0, 20.0, 30.0]
    if args.fanout_seconds is None:
        args.fanout_seconds = 4.0 if quick else 10.0
    if args.burst_attendees is None:
        args.burst_attendees = 2000 if quick else 10000
    if args.burst_batch is None:
        args.burst_batch = int(os.environ.get("SQS_BATCH_MESSAGES", "100"))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    bench = Bench(args)
    scenarios = args.only or ["latency", "fanout", "burst"]
    log(f"live-push benchmarks ({'quick' if args.quick else 'full'}); logs in {bench.log_dir}")
    try:
        bench.setup()
        c = bench.results["conditions"]
        log(
            f"machine: {c['cores']} cores ({c['cpu']}), shared by the servers, the load generator and the "
            f"producer; other processes kept {c['background_load_percent_before']}% of the machine busy "
            f"just before the run"
        )
        log(
            f"software: Python {c['python']}, Django {c['django']}, channels {c['channels']}, channels_redis "
            f"{c['channels_redis']} (pub/sub layer), daphne {c['daphne']}, "
            f"websockets {c['websockets']} (client), "
            f"PostgreSQL {c['postgresql']}, Redis {c['redis']}, SQS = moto_server"
        )
        for name in scenarios:
            try:
                bench.results[name] = getattr(bench, name)()
            except Exception as exc:  # noqa: BLE001 - report it, stop what it started, go on
                import traceback

                log(f"  !! scenario {name} failed: {type(exc).__name__}: {exc}")
                (bench.log_dir / f"{name}-error.txt").write_text(traceback.format_exc())
                bench.results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                bench.teardown(keep_moto=True)
    finally:
        bench.teardown()
        bench.results["background_load_after"] = round(100 * lc.background_load(2.0), 1)
        path = Path(args.json_out) if args.json_out else bench.log_dir / "results.json"
        path.write_text(json.dumps(bench.results, indent=2, default=str))
        log(
            f"\nresults: {path}; other processes kept {bench.results['background_load_after']}% of the "
            f"machine busy just after the run"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
