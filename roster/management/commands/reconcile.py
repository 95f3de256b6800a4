"""Check live meetings against the Chime SDK Meetings API in the foreground and repair what the
event stream lost (roster.sources.reconcile, docs/reconcile.md)."""

from __future__ import annotations

import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from roster.live.broadcast import changes_sent
from roster.sources.reconcile import ReconcileSummary, meeting_reconcile, meetings_reconcile


class Command(BaseCommand):
    help = (
        "Check active meetings against the Chime API (GetMeeting, ListAttendees) and repair what "
        "the event stream lost; prints checked/ended/removed/added/families last."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one cycle, then exit")
        parser.add_argument("--meeting", metavar="ID", help="check only this meeting (whatever its status)")

    def handle(self, *args, once, meeting, **options):
        period = settings.RECONCILE_SECONDS
        if not once and period <= 0:
            raise CommandError("RECONCILE_SECONDS is 0 (reconcile is off): pass --once for one cycle")
        stop = threading.Event()
        previous = {  # SIGTERM, Ctrl-C: finish the check in hand, print the totals
            signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            total = self._run(
                once=once, meeting=meeting, period=period, stop=stop, verbosity=options["verbosity"]
            )
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.stdout.write(total.line())

    def _run(self, *, once, meeting, period, stop, verbosity) -> ReconcileSummary:
        total = ReconcileSummary()
        while True:
            started = time.monotonic()
            if meeting:
                summary = meeting_reconcile(meeting_id=meeting)
            else:
                summary = meetings_reconcile(stop=stop.is_set, spread_seconds=0 if once else period)
            changes_sent()  # live clients hear of the repairs before this process sleeps or exits
            total.add(summary)
            if summary.cycle_running_elsewhere:
                self.stderr.write("another reconcile cycle is running in this deployment: none started")
            elif verbosity >= 2:
                self.stdout.write(f"{summary.line()} failed={summary.failed} seconds={summary.seconds:.1f}")
            if once or stop.wait(max(0.0, period - (time.monotonic() - started))):
                return total
