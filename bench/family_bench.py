"""Family benchmark (issue #15.5, first half): a webinar's 10,000 joins over a primary and 40
replicas through the local SQS endpoint, with the primary's family panel open in Chromium and a
feed client subscribed with ``"family": true``.

``.venv/bin/python -m bench.family_bench [--quick] [--viewers N] [--seconds S] [--rounds N]``

Everything runs on this machine, on loopback, as bench.live_bench's burst does (it reuses its
setup): PostgreSQL (database ``bench_family``, or BENCH_LIVE_DATABASE_URL's, dropped and
recreated), Redis (channel prefix of that name), moto (local SQS), one Daphne, ``manage.py
drain_sqs --concurrency 2`` over 10 queues, headless Chromium, and this process (the sender and
the feed client). The meetings start first and their replicas are learned through
``repairs_ingest`` (what reconcile stores from GetMeeting's PrimaryMeetingId), untimed.

1. burst: the joins, in the order SQS would deliver them (out of order within and across
   meetings; bench.common.webinar_burst), spread evenly over --seconds (default 60; 0: as fast
   as the pipeline takes them), with at most --window messages waiting (moto's receive cost
   grows with a queue's depth). Times from the LAST event sent until (a) the
   primary's page shows family joined = N and (b) the feed's family frame says so. Goals: (a)
   <= 5 s; (b) <= 1 s past the floor.
2. churn: then --churn AttendeeLeft (default 2,000) over --churn-seconds (10): the members' own
   figures no longer decide the family's peak, so each turn sweeps every member's join
   intervals; the same two times after the last leave sent, and the peak shown must stay.
3. floor: then, in turns, one AttendeeJoined to a plain single meeting (no family) and one to a
   replica, each by SendMessage: the time until the feed's delta of the plain meeting (the
   pipeline's own floor: SQS receive, ingest, broadcast, Daphne) and until the family frame
   counting the replica's join (and the page showing it). The family's extra is the second
   minus the first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("BENCH_LIVE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_family")

from bench import common  # noqa: E402 - after the database is chosen
from bench import live_common as lc  # noqa: E402
from bench.common import log  # noqa: E402
from bench.live_bench import CHROMIUM, CHROMIUM_ARGS, STAFF_PASSWORD, STAFF_USER, Bench, _cpu_line  # noqa: E402


class FeedWatch:
    """A feed client (websockets, its own thread) that notes when each frame of interest came:
    family frames (their figures) and the deltas of one plain meeting (its joined count)."""

    def __init__(self, url: str, token: str, *, primary: str, plain: str) -> None:
        self.frames: list[tuple[float, str, int]] = []  # (monotonic, "family" | "plain", joined)
        self.received = 0
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self._args = (url, token, primary, plain)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from websockets.sync.client import connect

        url, token, primary, plain = self._args
        marker = f'"meeting_id":"{plain}"'
        try:
            with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None) as ws:
                ws.recv(timeout=10)  # hello
                ws.send(json.dumps({"type": "subscribe", "meetings": [primary], "family": True}))
                ws.send(json.dumps({"type": "subscribe", "meetings": [plain]}))
                while not self.stop.is_set():
                    try:
                        text = ws.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    now = time.monotonic()
                    self.received += 1
                    if text.startswith('{"type":"family"'):
                        self.frames.append((now, "family", json.loads(text)["family_joined"]))
                        self.ready.set()
                    elif marker in text[:400]:
                        message = json.loads(text)
                        if message["meeting"]["meeting_id"] == plain:
                            self.frames.append((now, "plain", message["meeting"]["joined_count"]))
        except Exception as exc:  # noqa: BLE001 - reported with the results
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self.ready.set()

    def first(self, kind: str, joined: int, *, after: float, timeout: float) -> float | None:
        """When the first ``kind`` frame with this joined count came after ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, k, n in reversed(self.frames):
                if t < after:
                    break
                if k == kind and n == joined:
                    return t
            time.sleep(0.002)
        return None


class FamilyBench(Bench):
    def paced_send(
        self, queues: list[str], bodies: list[str], *, applied, seconds: float
    ) -> tuple[float, float]:
        """The bodies spread evenly over ``seconds`` (SendMessageBatch of 10, round robin over the
        queues, at most --window waiting); 0: as fast as the pipeline takes them
        (bench.live_bench's burst sender). Returns (first send, last send)."""
        a = self.args
        if not seconds:
            return self.burst_send(queues, bodies, applied=applied, window=a.window)
        import boto3

        client = boto3.client("sqs", endpoint_url=self.sqs_url, region_name="us-east-1")
        chunks = [bodies[i : i + 10] for i in range(0, len(bodies), 10)]
        step = seconds / len(chunks)
        t0 = time.monotonic()
        sent = 0
        for index, chunk in enumerate(chunks):
            due = t0 + index * step
            while time.monotonic() < due or sent - applied() > a.window:
                time.sleep(0.001)
            response = client.send_message_batch(
                QueueUrl=queues[index % len(queues)],
                Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)],
            )
            if response.get("Failed"):
                raise RuntimeError(f"SendMessageBatch failed: {response['Failed'][:1]}")
            sent += len(chunk)
        return t0, time.monotonic()

    def run(self) -> dict[str, object]:
        a = self.args
        from django.contrib.auth.models import User

        from roster.domain.plan import MeetingFacts
        from roster.domain.repairs import Repairs
        from roster.ingest import repairs_ingest
        from roster.models import Meeting
        from roster.read.access import feed_token_create

        log(
            f"\n== family: {a.viewers:,} joins over a primary and {a.replicas} replicas through local SQS "
            + (f"within {a.seconds:g} s, " if a.seconds else "as fast as they are taken, ")
            + "the family panel open in Chromium, a feed client with family true =="
        )
        User.objects.create_user(STAFF_USER, password=STAFF_PASSWORD, is_staff=True)
        daphne = self.start_daphne("family")
        queues = [self.create_queue(f"bench-family-{i:02d}") for i in range(a.queues)]
        drain = self.start_drain("family", queues)
        family, bodies = common.webinar_burst(seed=7, viewers=a.viewers, replicas=a.replicas)
        ((plain, _),) = common.meetings_start(count=1, tag="plain")
        ids = [meeting[0]["meetingId"] for meeting in family]
        primary, replicas = ids[0], ids[1:]
        learned = [Repairs(meeting_id=r, facts=MeetingFacts(primary_meeting_id=primary)) for r in replicas]
        repairs_ingest(repairs=learned)
        common.broadcast_flush()
        n = len(bodies)
        _, token = feed_token_create(name="bench-family", meetings="*")
        feed = FeedWatch(f"ws://127.0.0.1:{self.port}/ws/feed/", token, primary=primary, plain=plain)
        if not feed.ready.wait(30) or feed.errors:
            raise RuntimeError(f"feed client: {feed.errors or 'no family frame'}")

        from playwright.sync_api import sync_playwright

        result: dict[str, object] = {
            "viewers": n,
            "meetings": len(ids),
            "queues": a.queues,
            "window": a.window,
        }
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"http://127.0.0.1:{self.port}/admin/login/?next=/meetings/{primary}/")
            page.fill("#id_username", STAFF_USER)
            page.fill("#id_password", STAFF_PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_selector("#connection-status[data-state=live]", timeout=30000)
            page.wait_for_selector("#family-panel:not([hidden])", timeout=30000)

            def page_shows(joined: int, timeout: float) -> float | None:
                from playwright.sync_api import TimeoutError as PlaywrightTimeout

                try:
                    page.wait_for_function(
                        "n => document.getElementById('family-joined').textContent.trim() === String(n)",
                        arg=joined,
                        timeout=timeout * 1000,
                        polling=10,
                    )
                except PlaywrightTimeout:
                    return None
                return time.monotonic()

            joined = [0]
            stop = threading.Event()

            def poll() -> None:
                from django.db import connection
                from django.db.models import Sum

                rows = Meeting.objects.filter(meeting_id__in=ids)
                try:
                    while not stop.is_set():
                        joined[0] = rows.aggregate(j=Sum("joined_count"))["j"] or 0
                        time.sleep(0.02)
                finally:
                    connection.close()

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            with lc.CpuMeter(
                {"daphne": daphne.pid, "drain_sqs": drain.pid, "moto": self.moto_pid},
                {"chromium (ours)": lc.descendants_named("chromium", "chrome")},
            ) as cpu:
                t0, t_last = self.paced_send(queues, bodies, applied=lambda: joined[0], seconds=a.seconds)
                t_page = page_shows(n, a.timeout)
                t_feed = feed.first("family", n, after=t0, timeout=a.timeout)
            result["burst"] = {
                "sent_s": round(t_last - t0, 2),
                "dashboard_after_last_sent_s": round(t_page - t_last, 2) if t_page else None,
                "feed_after_last_sent_s": round(t_feed - t_last, 2) if t_feed else None,
                "family_frames": sum(1 for _, k, _ in feed.frames if k == "family"),
                "feed_frames": feed.received,
                "cpu": cpu.report(),
            }
            b = result["burst"]
            log(
                f"  burst: {n:,} joins sent in {b['sent_s']}s (at most {a.window} waiting); after the last "
                f"was sent: the page shows family joined {n:,} in {b['dashboard_after_last_sent_s']}s, the "
                f"feed's family frame says {n:,} in {b['feed_after_last_sent_s']}s "
                f"({b['family_frames']} family frames of {b['feed_frames']:,} frames on the socket)"
            )
            log(f"      CPU (% of one core): {_cpu_line(b['cpu'])}")
            # Before the floor's joins: each meeting's roster is the whole fold of its burst.
            b["roster_check"] = common.roster_check(family)
            log(f"      check: {b['roster_check']}")

            # Churn: viewers leave, so the members' own figures no longer decide the family's
            # peak and every turn sweeps the family's 10,000 rows of join intervals.
            family_joined = n
            if a.churn:
                import random

                joins = [doc for meeting in family for doc in meeting[1:]]
                last_ts = max(doc["timestamp"] for doc in joins)
                leaving = random.Random(11).sample(joins, a.churn)
                leaves = [
                    common.as_envelope(
                        {**doc, "eventType": "chime:AttendeeLeft", "timestamp": last_ts + 1000 + i}
                    )
                    for i, doc in enumerate(leaving)
                ]
                family_joined = n - a.churn
                with lc.CpuMeter(
                    {"daphne": daphne.pid, "drain_sqs": drain.pid, "moto": self.moto_pid},
                    {"chromium (ours)": lc.descendants_named("chromium", "chrome")},
                ) as cpu:
                    c0, c_last = self.paced_send(
                        queues, leaves, applied=lambda: n - joined[0], seconds=a.churn_seconds
                    )
                    c_page = page_shows(family_joined, a.timeout)
                    c_feed = feed.first("family", family_joined, after=c0, timeout=a.timeout)
                peak = page.locator("#family-peak").inner_text().strip()
                result["churn"] = {
                    "leaves": a.churn,
                    "sent_s": round(c_last - c0, 2),
                    "dashboard_after_last_sent_s": round(c_page - c_last, 2) if c_page else None,
                    "feed_after_last_sent_s": round(c_feed - c_last, 2) if c_feed else None,
                    "family_frames": sum(1 for t, k, _ in feed.frames if k == "family" and t >= c0),
                    "family_peak_shown": peak,
                    "cpu": cpu.report(),
                }
                c = result["churn"]
                log(
                    f"  churn: {a.churn:,} AttendeeLeft sent in {c['sent_s']}s; after the last was sent: the "
                    f"page shows family joined {family_joined:,} in {c['dashboard_after_last_sent_s']}s, the "
                    f"feed's family frame in {c['feed_after_last_sent_s']}s ({c['family_frames']} family "
                    f"frames, each a sweep); the family peak shown stays {peak}"
                )
                log(f"      CPU (% of one core): {_cpu_line(c['cpu'])}")
            stop.set()
            poller.join(5)

            plain_s: list[float] = []
            family_s: list[float] = []
            page_s: list[float] = []
            plain_joined = 0  # meetings_start: nobody joined yet
            import boto3

            client = boto3.client("sqs", endpoint_url=self.sqs_url, region_name="us-east-1")
            base = int(time.time() * 1000)
            for turn in range(a.rounds):
                for kind in ("plain", "family"):
                    meeting = plain if kind == "plain" else replicas[turn % len(replicas)]
                    body = common.as_envelope(
                        {
                            "meetingId": meeting,
                            "attendeeId": f"floor-{kind}-{turn}",
                            "externalUserId": f"floor-{turn}",
                            "eventType": "chime:AttendeeJoined",
                            "timestamp": base + turn,
                        }
                    )
                    sent = time.monotonic()
                    client.send_message(QueueUrl=queues[turn % len(queues)], MessageBody=body)
                    if kind == "plain":
                        plain_joined += 1
                        t = feed.first("plain", plain_joined, after=sent, timeout=10)
                        plain_s.append(t - sent if t else float("nan"))
                    else:
                        family_joined += 1
                        t = feed.first("family", family_joined, after=sent, timeout=10)
                        family_s.append(t - sent if t else float("nan"))
                        shown = page_shows(family_joined, 10)
                        page_s.append(shown - sent if shown else float("nan"))
                    time.sleep(0.2)
            browser.close()
        med = statistics.median
        result["floor"] = {
            "rounds": a.rounds,
            "plain_delta_s": {"median": round(med(plain_s), 3), "max": round(max(plain_s), 3)},
            "family_frame_s": {"median": round(med(family_s), 3), "max": round(max(family_s), 3)},
            "family_panel_s": {"median": round(med(page_s), 3), "max": round(max(page_s), 3)},
        }
        f = result["floor"]
        log(
            f"  floor, one join at a time ({a.rounds} turns, SendMessage -> moto -> drain_sqs -> ingest -> "
            f"broadcast -> Daphne): plain meeting's delta median {f['plain_delta_s']['median']}s "
            f"(max {f['plain_delta_s']['max']}); a replica's join in the family frame median "
            f"{f['family_frame_s']['median']}s (max {f['family_frame_s']['max']}), on the family panel "
            f"median {f['family_panel_s']['median']}s (max {f['family_panel_s']['max']})"
        )
        b = result["burst"]
        floor = f["plain_delta_s"]["median"]
        result["goals"] = {
            "dashboard_le_5s": b["dashboard_after_last_sent_s"] is not None
            and b["dashboard_after_last_sent_s"] <= 5,
            "feed_le_floor_plus_1s": b["feed_after_last_sent_s"] is not None
            and b["feed_after_last_sent_s"] <= floor + 1,
        }
        log(
            f"  goals: dashboard <= 5 s after the last event: {result['goals']['dashboard_le_5s']}; "
            f"feed family frame <= floor ({floor}s) + 1 s: {result['goals']['feed_le_floor_plus_1s']}"
            + (f"; page errors: {errors[:2]}" if errors else "")
            + (f"; feed errors: {feed.errors}" if feed.errors else "")
        )
        feed.stop.set()
        self.stop_child(drain)
        self.stop_child(daphne)
        return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 joins, 5 turns (a smoke test)")
    parser.add_argument("--viewers", type=int, default=None, help="joins in all (default 10,000)")
    parser.add_argument("--replicas", type=int, default=40)
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--window", type=int, default=300, help="messages sent but not yet applied, at most")
    parser.add_argument(
        "--seconds", type=float, default=None, help="spread the joins over this long (default 60; 0: at once)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="floor turns (default 20)")
    parser.add_argument(
        "--churn", type=int, default=None, help="leaves after the burst (default 2,000; 0: none)"
    )
    parser.add_argument("--churn-seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--drain-concurrency", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="run daphne and drain_sqs under cProfile")
    parser.add_argument("--log-dir", default=None)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    args.viewers = args.viewers or (2000 if args.quick else 10000)
    args.rounds = args.rounds or (5 if args.quick else 20)
    if args.churn is None:
        args.churn = 400 if args.quick else 2000
    if args.seconds is None:
        args.seconds = 10.0 if args.quick else 60.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    bench = FamilyBench(args)
    log(f"family benchmark ({'quick' if args.quick else 'full'}); logs in {bench.log_dir}")
    try:
        bench.setup()
        c = bench.results["conditions"]
        log(
            f"machine: {c['cores']} cores ({c['cpu']}), shared by the servers, Chromium, the sender and the "
            f"feed client; other processes kept {c['background_load_percent_before']}% of the machine busy "
            "just before the run"
        )
        log(
            f"software: Python {c['python']}, Django {c['django']}, channels {c['channels']}, channels_redis "
            f"{c['channels_redis']} (pub/sub layer), daphne {c['daphne']}, PostgreSQL {c['postgresql']}, "
            f"Redis {c['redis']}, SQS = moto_server; database {lc.DATABASE_NAME}"
        )
        bench.results["family"] = bench.run()
    finally:
        bench.teardown()
        bench.results["background_load_after"] = round(100 * lc.background_load(2.0), 1)
        path = Path(args.json_out) if args.json_out else bench.log_dir / "results.json"
        path.write_text(json.dumps(bench.results, indent=2, default=str))
        log(f"\nresults: {path}; other processes kept {bench.results['background_load_after']}% busy after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
