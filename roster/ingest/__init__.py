"""Ingest: the one write path from message bodies to the event log and the derived roster
(service), every SQL statement it runs (store), its two hook points (hooks), and a long stream
ingested on several threads split by meeting (stream: ``ingest_file``)."""

from roster.ingest.service import (
    TRANSIENT_DB_ERRORS,
    IncomingMessage,
    IngestResult,
    message_parse,
    messages_ingest,
    messages_ingest_isolating,
    parsed_ingest,
    repairs_ingest,
)
from roster.ingest.stream import messages_stream_ingest

__all__ = (
    "TRANSIENT_DB_ERRORS",
    "IncomingMessage",
    "IngestResult",
    "message_parse",
    "messages_ingest",
    "messages_ingest_isolating",
    "messages_stream_ingest",
    "parsed_ingest",
    "repairs_ingest",
)
