"""Ingest message bodies from a file of JSON lines (or stdin with '-'), through the SQS path's service."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from django.core.management.base import BaseCommand, CommandError

from roster.ingest import IncomingMessage, messages_stream_ingest
from roster.ingest.stream import WORKERS
from roster.live.broadcast import changes_sent


class Command(BaseCommand):
    help = "Ingest message bodies, one per line (JSON lines); '-' reads stdin."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument(
            "--workers",
            type=int,
            default=WORKERS,
            help=f"processes ingesting at once, each its own meetings (default {WORKERS}; 1 on SQLite)",
        )

    def handle(self, *args, path, workers, **options):
        if path == "-":
            stream = sys.stdin.buffer
            source = "file:-"
        else:
            file = Path(path)
            if not file.is_file():
                raise CommandError(f"no such file: {path}")
            stream = file.open("rb")
            source = f"file:{file.name}"
        with stream:
            total = messages_stream_ingest(messages=_messages(stream, source=source), workers=workers)
        changes_sent()  # live clients hear of it before this process exits
        self.stdout.write(total.summary())


def _messages(stream: BinaryIO, *, source: str) -> Iterator[IncomingMessage]:
    for number, line in enumerate(stream, start=1):
        body = line.rstrip(b"\r\n")
        if body.strip():
            # A line number is no identity (the file may change): a bad line quarantined in an
            # earlier run is known again by its body, within the file's name.
            yield IncomingMessage(body=body, queue=source, message_id=f"line:{number}")
