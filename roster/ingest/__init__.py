"""Ingest: the one write path from message bodies to the event log and the derived roster
(service), every SQL statement it runs (store), and its two hook points (hooks)."""

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

__all__ = (
    "TRANSIENT_DB_ERRORS",
    "IncomingMessage",
    "IngestResult",
    "message_parse",
    "messages_ingest",
    "messages_ingest_isolating",
    "parsed_ingest",
    "repairs_ingest",
)
