"""Ingest message bodies from a file of JSON lines (or stdin with '-'), through the SQS path's service."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from roster.ingest import IncomingMessage, IngestResult, messages_ingest
from roster.live.broadcast import publisher

BATCH = 500


class Command(BaseCommand):
    help = "Ingest message bodies, one per line (JSON lines); '-' reads stdin."

    def add_arguments(self, parser):
        parser.add_argument("path")

    def handle(self, *args, path, **options):
        if path == "-":
            stream = sys.stdin.buffer
            source = "file:-"
        else:
            file = Path(path)
            if not file.is_file():
                raise CommandError(f"no such file: {path}")
            stream = file.open("rb")
            source = f"file:{file.name}"
        total = IngestResult()
        batch: list[IncomingMessage] = []
        with stream:
            for number, line in enumerate(stream, start=1):
                body = line.rstrip(b"\r\n")
                if not body.strip():
                    continue
                # A line number is no identity (the file may change): a bad line quarantined in
                # an earlier run is known again by its body, within the file's name.
                batch.append(IncomingMessage(body=body, queue=source, message_id=f"line:{number}"))
                if len(batch) >= BATCH:
                    total.add(messages_ingest(messages=batch))
                    batch = []
        if batch:
            total.add(messages_ingest(messages=batch))
        publisher.flush()  # live clients hear of it before this process exits
        self.stdout.write(total.summary())
