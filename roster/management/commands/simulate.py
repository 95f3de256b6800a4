"""Send realistic Chime traffic to SQS queues (roster.dev.chime): paced at a rate, or as it happens
in meetings of a few minutes (``--meeting-minutes``); with ``--chime-api-url``, mirrored into a
local Chime SDK Meetings endpoint as it happens (``--lose`` drops deliveries, not the mirror)."""

from __future__ import annotations

import itertools
import time

from django.core.management.base import BaseCommand, CommandError

from roster.dev.chime import deliveries, happened_at, meetings_interleave
from roster.dev.chime_api import mirror_post
from roster.sources.sqs import sqs_client


class Command(BaseCommand):
    help = "Send realistic Chime meeting events to SQS (deterministic with --seed)."

    def add_arguments(self, parser):
        parser.add_argument("--queue-url", required=True, help="main queue (envelopes as --envelope says)")
        parser.add_argument(
            "--sns-queue-url", help="second queue fed SNS-wrapped copies (overlap = --mirror-share)"
        )
        parser.add_argument(
            "--mirror-share", type=float, default=1.0, help="share of events also sent via SNS"
        )
        parser.add_argument("--meetings", type=int, default=3, help="concurrent meetings")
        parser.add_argument("--attendees", type=int, default=8, help="attendees per meeting")
        parser.add_argument(
            "--rate", type=float, default=20.0, help="events per second (at most, with --meeting-minutes)"
        )
        parser.add_argument(
            "--meeting-minutes",
            type=float,
            help="spread each meeting's events over about this many minutes, sent as they happen",
        )
        parser.add_argument(
            "--calls", type=int, default=0, help="Voice Connector streamed calls at a time, besides meetings"
        )
        parser.add_argument(
            "--envelope", choices=["eventbridge", "sns", "bare", "mixed"], default="eventbridge"
        )
        parser.add_argument(
            "--shuffle",
            action="store_true",
            help="reorder within a window of 20 bodies (5 with --meeting-minutes, whose events are sparse)",
        )
        parser.add_argument("--duplicates", type=float, default=0.0, help="probability of a second delivery")
        parser.add_argument("--poison", type=float, default=0.0, help="share of malformed messages")
        parser.add_argument(
            "--lose",
            type=float,
            default=0.0,
            help="share of MeetingEnded and AttendeeLeft events never delivered (what reconcile repairs)",
        )
        parser.add_argument(
            "--chime-api-url",
            help="a local Chime SDK Meetings endpoint (roster.dev.chime_api) that mirrors what happened, "
            "lost events included, so reconcile can find what the queues did not deliver",
        )
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--count", type=int, help="stop after this many events")
        parser.add_argument("--forever", action="store_true", help="start a new meeting whenever one ends")
        parser.add_argument("--start-ms", type=int, help="timestamp of the first event (default: now)")

    def handle(self, *args, **options):
        rate, minutes = options["rate"], options["meeting_minutes"]
        if rate <= 0 or (minutes is not None and minutes <= 0):
            raise CommandError("--rate and --meeting-minutes must be positive")
        start_ms = options["start_ms"] if options["start_ms"] is not None else int(time.time() * 1000)
        events = meetings_interleave(
            seed=options["seed"],
            meetings=options["meetings"],
            attendees=options["attendees"],
            start_ms=start_ms,
            step_ms=1000.0 / rate,
            forever=options["forever"],
            calls=options["calls"],
            meeting_ms=round(minutes * 60_000) if minutes is not None else None,
        )
        if options["count"] is not None:
            events = itertools.islice(events, options["count"])
        counted = _Counted(events, mirror_url=options["chime_api_url"])
        lost: list[str] = []
        bodies = deliveries(
            counted,
            seed=options["seed"],
            kind=options["envelope"],
            mirror_share=options["mirror_share"] if options["sns_queue_url"] else 0.0,
            duplicates=options["duplicates"],
            poison=options["poison"],
            shuffle_window=(5 if minutes else 20) if options["shuffle"] else 0,
            lose=options["lose"],
            lost=lambda doc: lost.append(doc["eventType"]),
        )
        targets = [options["queue_url"], options["sns_queue_url"]]
        client = sqs_client(queue_url=options["queue_url"])
        pending: dict[int, list[str]] = {0: [], 1: []}
        sent = 0
        started = time.monotonic()

        def flush(target: int) -> None:
            nonlocal sent
            batch = pending[target]
            if not batch:
                return
            response = client.send_message_batch(
                QueueUrl=targets[target],
                Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(batch)],
            )
            if response.get("Failed"):
                raise CommandError(f"SendMessageBatch failed: {response['Failed'][:3]}")
            sent += len(batch)
            pending[target] = []

        try:
            for delivery in bodies:
                due = started + counted.count / rate  # pace by events, not bodies
                if minutes is not None:  # and send none before it happens
                    due = max(due, started + (happened_at(counted.last) - start_ms) / 1000)
                wait = due - time.monotonic()
                if wait > 0:
                    for target in pending:
                        flush(target)
                    time.sleep(wait)
                pending[delivery.target].append(delivery.body)
                if len(pending[delivery.target]) == 10:
                    flush(delivery.target)
        except KeyboardInterrupt:
            pass
        for target in pending:
            flush(target)
        self.stdout.write(
            f"events={counted.count} bodies={sent}" + (f" lost={len(lost)}" if options["lose"] else "")
        )


class _Counted:
    """Counts the events drawn from an iterator, and keeps the last (pacing is by events)."""

    def __init__(self, iterator, *, mirror_url=None):
        self.iterator = iter(iterator)
        self.count = 0
        self.last = None
        self.mirror_url = mirror_url

    def __iter__(self):
        return self

    def __next__(self):
        self.last = next(self.iterator)
        self.count += 1
        if self.mirror_url:  # what Chime's API shows once it happened, whether delivered or not
            mirror_post(self.mirror_url, [self.last])
        return self.last
