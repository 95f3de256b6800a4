"""`make demo`: everything on one machine with simulated meetings; Ctrl-C stops it all (roster.dev.demo)."""

from __future__ import annotations

import signal
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from roster.dev.demo import DemoError, DemoOptions, demo_run
from roster.dev.processes import ProcessError


class Command(BaseCommand):
    help = (
        "Run the whole system locally: local SQS endpoint, Daphne, a Celery worker and beat, and "
        "simulated Chime meetings. Prints the dashboard URL and a login; Ctrl-C stops everything."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, help="dashboard port (default 8000, or a free one if busy)")
        parser.add_argument("--rate", type=float, default=8.0, help="simulated events per second, at most")
        parser.add_argument("--meetings", type=int, default=4, help="concurrent simulated meetings")
        parser.add_argument("--attendees", type=int, default=10, help="attendees per meeting")
        parser.add_argument(
            "--meeting-minutes", type=float, default=5.0, help="about how long a simulated meeting lasts"
        )
        parser.add_argument(
            "--calls", type=int, default=2, help="Voice Connector streamed calls at a time (streams page)"
        )
        parser.add_argument("--seed", type=int, help="simulator seed (default: random each run)")
        parser.add_argument("--duplicates", type=float, default=0.05, help="probability of a redelivery")
        parser.add_argument("--poison", type=float, default=0.01, help="share of malformed messages")
        parser.add_argument(
            "--mirror-share", type=float, default=0.5, help="share of events also sent SNS-wrapped to queue 2"
        )
        parser.add_argument(
            "--lose",
            type=float,
            default=0.2,
            help="share of MeetingEnded and AttendeeLeft events never delivered (reconcile repairs them)",
        )
        parser.add_argument(
            "--reconcile-seconds",
            type=float,
            default=20.0,
            help="how often beat runs reconcile against the local Chime endpoint (0 = off)",
        )
        parser.add_argument("--no-migrate", action="store_true", help="do not run migrations first")
        parser.add_argument("--status-every", type=float, default=10.0, help="seconds between status lines")
        parser.add_argument("--log-dir", type=Path, help="keep the children's logs here (default: removed)")

    def handle(self, *args, **options):
        if options["rate"] <= 0 or options["meeting_minutes"] <= 0:
            raise CommandError("--rate and --meeting-minutes must be positive")
        demo_options = DemoOptions(
            port=options["port"],
            rate=options["rate"],
            meetings=options["meetings"],
            attendees=options["attendees"],
            meeting_minutes=options["meeting_minutes"],
            calls=options["calls"],
            seed=options["seed"],
            mirror_share=options["mirror_share"],
            duplicates=options["duplicates"],
            poison=options["poison"],
            lose=options["lose"],
            reconcile_seconds=options["reconcile_seconds"],
            migrate=not options["no_migrate"],
            status_every=options["status_every"],
            log_dir=options["log_dir"].resolve() if options["log_dir"] else None,
        )
        # SIGTERM and a closed terminal stop the demo as Ctrl-C does: everything it started (SIGINT
        # too when a parent shell started us with it ignored).
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.default_int_handler)
        try:
            demo_run(options=demo_options, out=self.stdout)
        except (DemoError, ProcessError) as exc:
            raise CommandError(str(exc)) from None
