"""Ingest: the one write path from message bodies to the event log and the derived roster."""

from roster.ingest.service import IncomingMessage, IngestResult, messages_ingest

__all__ = ("IncomingMessage", "IngestResult", "messages_ingest")
