"""Quarantined messages for operators: a readable body, and reprocessing through the one ingest path.

Reprocessing is for bodies that were rejected for a reason since fixed (an account added to
CHIME_ALLOWED_ACCOUNTS, a database error that has passed). Each body is parsed first with the
same rules as ingest: a body that is still rejected is only marked, so it never gets a second
Quarantine row. A truncated body is never reprocessed: it is not the message that was sent.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from roster.domain.events import Rejection
from roster.ingest import IncomingMessage, message_parse, parsed_ingest
from roster.models import Quarantine

logger = logging.getLogger(__name__)

Outcome = Quarantine.Outcome
# A row whose body has been stored (or found stored) is done; reprocessing it again is a no-op.
DONE = (Outcome.APPLIED, Outcome.DUPLICATE)


def quarantine_body_sections(*, quarantine: Quarantine) -> list[tuple[str, str]]:
    """The body as (title, text) sections: pretty JSON when it parses, plus the SNS ``Message``
    pretty-printed when the body is an SNS wrapper; else the text as received. Unescaped text:
    the caller escapes it."""
    text = quarantine.body_text
    doc = _json_or_none(text)
    if doc is None:
        return [("Body (text)", text)]
    sections = [("Body (JSON)", _pretty(doc))]
    if isinstance(doc, dict) and isinstance(doc.get("Message"), str) and "TopicArn" in doc:
        inner = _json_or_none(doc["Message"])
        if inner is not None:
            sections.append(("SNS Message (JSON)", _pretty(inner)))
        else:
            sections.append(("SNS Message (text)", doc["Message"]))
    return sections


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _pretty(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False)


def quarantine_reprocess(*, quarantine_ids: Iterable[int]) -> Counter[str]:
    """Feed the selected bodies through the ingest service again and mark each row.

    Returns how many rows ended with each outcome, plus ``skipped`` for rows already applied or
    found duplicate. One body per ingest call, so each row gets its own outcome.
    """
    counts: Counter[str] = Counter()
    ids = sorted(set(quarantine_ids))
    for row in Quarantine.objects.filter(pk__in=ids).order_by("pk"):
        if row.reprocess_outcome in DONE:
            counts["skipped"] += 1
            continue
        outcome, detail = _reprocess_one(row)
        row.reprocessed = outcome in (Outcome.APPLIED, Outcome.DUPLICATE, Outcome.REJECTED)
        row.reprocessed_at = timezone.now()
        row.reprocess_outcome = outcome
        row.reprocess_detail = detail
        row.save(update_fields=["reprocessed", "reprocessed_at", "reprocess_outcome", "reprocess_detail"])
        counts[outcome] += 1
    logger.info("quarantine reprocessed: %s", dict(counts))
    return counts


def _reprocess_one(row: Quarantine) -> tuple[str, str]:
    if row.truncated:
        return (
            Outcome.TRUNCATED,
            f"only the first {len(bytes(row.body))} of {row.body_size} bytes were kept; "
            "the message cannot be rebuilt",
        )
    message = IncomingMessage(body=bytes(row.body), queue=row.queue, message_id=row.sqs_message_id)
    parsed = message_parse(message=message)
    if isinstance(parsed, Rejection):  # only marked: never a second Quarantine row
        return Outcome.REJECTED, f"{parsed.code}: {parsed.message}"
    try:
        result = parsed_ingest(parsed=[(message, parsed)])
    except Exception as exc:  # noqa: BLE001 (the operator sees why; the row stays quarantined)
        logger.exception("quarantine %s: reprocessing failed", row.pk)
        return Outcome.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
    if result.applied:
        return Outcome.APPLIED, ""
    if result.duplicates:
        return Outcome.DUPLICATE, "this event was already in the log"
    return Outcome.FAILED, result.summary()
