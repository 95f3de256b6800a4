"""Drain SQS queues in the foreground (the same loop the Celery workers run)."""

from __future__ import annotations

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from roster.ingest import IngestResult
from roster.live.broadcast import changes_sent
from roster.read.selectors import queue_urls_enabled
from roster.sources.sqs import DrainLoop, accounts_warn


class Command(BaseCommand):
    help = "Drain the given (or configured) SQS queues; prints received/applied/duplicates/quarantined last."

    def add_arguments(self, parser):
        parser.add_argument("--queue-url", action="append", dest="queue_urls", default=[], metavar="URL")
        parser.add_argument("--until-empty", action="store_true", help="stop once every queue answered empty")
        parser.add_argument("--concurrency", type=int, default=1, help="consumers per queue (default 1)")
        parser.add_argument(
            "--wait-seconds",
            type=int,
            default=None,
            help="long-poll wait (default SQS_WAIT_SECONDS, or 1 with --until-empty)",
        )

    def handle(self, *args, queue_urls, until_empty, concurrency, wait_seconds, **options):
        urls = queue_urls or list(settings.SQS_QUEUE_URLS) or queue_urls_enabled()
        if not urls:
            raise CommandError("no queue: pass --queue-url URL or set SQS_QUEUE_URLS")
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1")
        if wait_seconds is None:
            wait_seconds = 1 if until_empty else settings.SQS_WAIT_SECONDS
        accounts_warn()

        stop = threading.Event()
        lock = threading.Lock()
        total = IngestResult()

        def on_batch(result: IngestResult) -> None:
            if options["verbosity"] >= 2:
                self.stdout.write(result.summary())

        def run(url: str) -> None:
            result = DrainLoop(
                queue_url=url,
                stop=stop,
                wait_seconds=wait_seconds,
                until_empty=until_empty,
                on_batch=on_batch,
            ).run()
            with lock:
                total.add(result)

        # SIGTERM/SIGINT: finish the batches in hand, then print the totals.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        threads = [
            threading.Thread(target=run, args=(url,), daemon=True) for url in urls for _ in range(concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
        changes_sent()  # live clients hear of the last batches before this process exits
        self.stdout.write(total.summary())
