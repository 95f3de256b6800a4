"""Envelope parsing: one raw SQS/SNS/file message body in, one ChimeEvent or a Rejection out.

Pure Python: no Django, no I/O. Accepted shapes (all carry exactly one event):

- an EventBridge envelope ``{version, id, detail-type, source, account, time, region, resources, detail}``
  (a queue subscribed to an SNS topic with raw delivery receives it unchanged);
- an SNS ``Notification`` whose ``Message`` string holds such an envelope (or a bare detail);
- a bare ``detail`` object (the meeting's own SQS queue), recognised by its fields.

Anything else is rejected with a machine-readable ``code`` and a human ``message``; the caller
keeps the body in quarantine. JSON is never guess-repaired.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson

MEETING_DETAIL_TYPE = "Chime Meeting State Change"
PIPELINE_DETAIL_TYPE = "Chime Media Pipeline State Change"
VOICE_CONNECTOR_DETAIL_TYPE = "Chime VoiceConnector Streaming Status"
CHIME_SOURCE = "aws.chime"

KIND_MEETING = "meeting"
KIND_PIPELINE = "pipeline"
KIND_VOICE_CONNECTOR = "voice_connector"
KIND_UNKNOWN = "unknown"

# Column widths in roster.models use these, so anything that parses also fits the database.
MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 256
MAX_TIMESTAMP_MS = 2**63 - 1

CONTENT_SUFFIX = "#content"

# Where an event comes from (shared/ROSTER.md "Repairs from the Chime API"): Chime's own stream,
# or an event reconcile synthesized from the Chime API. Only the reconcile caller of ingest says
# "reconcile" (roster.ingest.IncomingMessage.source); nothing in a body can.
SOURCE_CHIME = "chime"
SOURCE_RECONCILE = "reconcile"
SOURCES = (SOURCE_CHIME, SOURCE_RECONCILE)
# JSON escapes that decode to strings PostgreSQL refuses: U+0000 and UTF-16 surrogates.
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")

VOICE_CONNECTOR_STATUS_TIME_FIELD = {
    "STARTED": "startTime",
    "UPDATED": "updateTime",
    "ENDED": "endTime",
    "FAILED": "failureTime",
}


@dataclass(frozen=True, slots=True)
class ChimeEvent:
    """One Chime occurrence, with its natural key. Envelope fields are kept for tracing only."""

    kind: str
    detail_type: str
    event_type: str
    meeting_id: str
    attendee_id: str
    timestamp: int
    key: str
    detail: dict[str, Any]
    envelope_id: str = ""
    account: str = ""
    region: str = ""
    source: str = SOURCE_CHIME

    @property
    def parent_id(self) -> str:
        """The roster row this event belongs to: '' for meeting-level events."""
        if self.kind != KIND_MEETING:
            return ""
        return parent_attendee_id(self.attendee_id)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message body was not accepted. ``code`` is stable; ``message`` is for operators."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class _Reject(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.rejection = Rejection(code, message)


def parent_attendee_id(attendee_id: str) -> str:
    """A content-share attendee (``X#content``) is shown on its parent ``X``'s row."""
    if attendee_id.endswith(CONTENT_SUFFIX):
        return attendee_id[: -len(CONTENT_SUFFIX)]
    return attendee_id


def natural_key(*parts: object) -> str:
    """A fixed-width digest of the natural key parts (the readable parts are stored as columns)."""
    raw = "\x1f".join(str(part) for part in parts)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def event_parse(
    body: str | bytes,
    *,
    allowed_accounts: frozenset[str] = frozenset(),
    max_bytes: int = 262144,
    source: str = SOURCE_CHIME,
) -> ChimeEvent | Rejection:
    """Parse one message body. Never raises for bad input: returns a Rejection instead.

    ``source`` is the caller's word, never the body's: ``reconcile`` is given only by the reconcile
    path (a body claiming it, in any field, is an ordinary Chime event or rejected), and a
    reconcile body must be a bare meeting-event detail, keyed in the reconcile key space.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown event source {source!r}")
    try:
        event = _parse(body, allowed_accounts=allowed_accounts, max_bytes=max_bytes)
    except _Reject as reject:
        return reject.rejection
    if source == SOURCE_CHIME:
        return event
    if event.kind != KIND_MEETING or event.envelope_id or event.account or event.region:
        return Rejection("bad_repair", "a reconcile repair must be a bare Chime meeting-event detail")
    return repair_keyed(event)


def repair_keyed(event: ChimeEvent) -> ChimeEvent:
    """The synthesized twin of a parsed meeting event: source ``reconcile`` and a natural key of
    its own key space, so a real event is never taken for a duplicate of a synthesized one."""
    return replace(
        event,
        source=SOURCE_RECONCILE,
        key=natural_key(
            SOURCE_RECONCILE, event.meeting_id, event.attendee_id, event.event_type, event.timestamp
        ),
    )


def _parse(body: str | bytes, *, allowed_accounts: frozenset[str], max_bytes: int) -> ChimeEvent:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > max_bytes:
        raise _Reject("too_large", f"body is {len(raw)} bytes, more than MAX_MESSAGE_BYTES={max_bytes}")
    try:
        # A str body may hold lone surrogates: they are not UTF-8 either.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Reject("not_utf8", f"body is not UTF-8: {exc}") from None
    doc = _load_object(text, what="body")

    if doc.get("Type") == "Notification" and "Message" in doc:
        message = doc["Message"]
        if not isinstance(message, str):
            raise _Reject("bad_sns", "SNS Notification 'Message' is not a string")
        doc = _load_object(message, what="SNS Message")
    elif "Type" in doc and "TopicArn" in doc:
        raise _Reject("sns_not_notification", f"SNS message of Type {doc.get('Type')!r} holds no event")

    if "detail-type" in doc or "detail" in doc or "source" in doc:
        return _from_envelope(doc, allowed_accounts=allowed_accounts)
    return _from_detail(doc, detail_type=_bare_detail_type(doc))


def _load_object(text: str, *, what: str) -> dict[str, Any]:
    try:
        doc = json_read(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _Reject("not_json", f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _Reject("not_object", f"{what} is JSON but not an object (got {type(doc).__name__})")
    if _RISKY_ESCAPE.search(text):
        _check_storable(doc)
    return doc


def json_read(text: str) -> Any:
    """json.loads' reading, faster: orjson reads a text the same way (floats correctly rounded,
    the last of duplicate keys) unless it may hold a number of 19 digits or more (an integer may
    be beyond 64 bits, which orjson would turn into a float); such a text, and any orjson refuses
    (NaN, an infinity, a lone surrogate's escape, deep nesting), is read by json, whose verdict
    stands."""
    marked = text.encode("utf-8", "surrogatepass").translate(_DIGITS_MARKED)
    if _LONG_NUMBER not in marked and not marked.startswith(_LONG_DIGIT_RUN):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text, parse_constant=_constant_refused, parse_float=_finite_float)


# Every ASCII digit as "0", every byte that may come just before a JSON number ("[", ",", ":",
# whitespace, the minus sign) as "|", every other byte as a space: a number of 19 digits or more
# is then a plain substring search (or the text's start), a tenth of the time of a regex. Digits
# inside a string after a letter or a quote (a hex key holds a run of 19 in one of about 430)
# no longer send a whole text to json: that was a batch answer in four at batches of 100.
_DIGITS_MARKED = bytes(
    0x30 if 0x30 <= byte <= 0x39 else 0x7C if byte in b"[,: \t\n\r-" else 0x20 for byte in range(256)
)
_LONG_DIGIT_RUN = b"0" * 19
_LONG_NUMBER = b"|" + _LONG_DIGIT_RUN


def _constant_refused(name: str) -> float:
    """``NaN``, ``Infinity``, ``-Infinity``: Python's json reads them, JSON has no such thing (and
    PostgreSQL's jsonb refuses them)."""
    raise _Reject("not_json", f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    """A JSON number beyond a float's range (``1e400``) would read as infinity, which no JSON
    writer can write back: refused, like a string PostgreSQL cannot store."""
    value = float(text)
    if math.isinf(value):
        raise _Reject("bad_field", f"the number {text[:40]} is beyond a float's range")
    return value


def _check_storable(value: object) -> None:
    """Reject strings PostgreSQL cannot store: U+0000 and lone surrogates (from JSON escapes)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise _Reject("bad_field", "a string contains a NUL character (\\u0000)")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Reject("bad_field", "a string contains a lone UTF-16 surrogate") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key)
            _check_storable(item)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item)


def _from_envelope(doc: dict[str, Any], *, allowed_accounts: frozenset[str]) -> ChimeEvent:
    source = doc.get("source")
    if source != CHIME_SOURCE:
        raise _Reject("wrong_source", f"source is {source!r}, expected {CHIME_SOURCE!r}")
    account = _optional_str(doc, "account", where="envelope")
    if allowed_accounts and account not in allowed_accounts:
        raise _Reject("account_not_allowed", f"account {account!r} is not in CHIME_ALLOWED_ACCOUNTS")
    detail_type = doc.get("detail-type")
    if not isinstance(detail_type, str) or not detail_type:
        raise _Reject("missing_field", "envelope has no string 'detail-type'")
    detail = doc.get("detail")
    if not isinstance(detail, dict):
        raise _Reject("missing_field", "envelope has no object 'detail'")
    return _from_detail(
        detail,
        detail_type=detail_type,
        envelope_id=_optional_str(doc, "id", where="envelope"),
        account=account,
        region=_optional_str(doc, "region", where="envelope"),
    )


def _bare_detail_type(detail: dict[str, Any]) -> str:
    if "streamingStatus" in detail or "voiceConnectorId" in detail:
        return VOICE_CONNECTOR_DETAIL_TYPE
    event_type = detail.get("eventType")
    if isinstance(event_type, str) and event_type.startswith("chime:MediaPipeline"):
        return PIPELINE_DETAIL_TYPE
    if "eventType" in detail or "meetingId" in detail:
        return MEETING_DETAIL_TYPE
    raise _Reject(
        "unrecognised",
        "not an EventBridge envelope, an SNS Notification or a Chime event detail "
        "(no detail-type, eventType, meetingId or streamingStatus)",
    )


def _from_detail(
    detail: dict[str, Any],
    *,
    detail_type: str,
    envelope_id: str = "",
    account: str = "",
    region: str = "",
) -> ChimeEvent:
    trace = {"envelope_id": envelope_id, "account": account, "region": region}
    if detail_type == VOICE_CONNECTOR_DETAIL_TYPE:
        return _voice_connector_event(detail, trace=trace)
    if detail_type in (MEETING_DETAIL_TYPE, PIPELINE_DETAIL_TYPE):
        return _meeting_event(detail, detail_type=detail_type, trace=trace)
    return _unknown_event(detail, detail_type=detail_type, trace=trace)


def _meeting_event(detail: dict[str, Any], *, detail_type: str, trace: dict[str, str]) -> ChimeEvent:
    meeting_id = _required_id(detail, "meetingId")
    event_type = _required_str(detail, "eventType", limit=MAX_TEXT_LENGTH)
    timestamp = _required_timestamp(detail)
    attendee_id = _optional_str(detail, "attendeeId", limit=MAX_ID_LENGTH)
    for field in ("externalMeetingId", "externalUserId", "mediaRegion", "networkType", "mediaPipelineId"):
        _optional_str(detail, field)
    if detail_type == PIPELINE_DETAIL_TYPE:
        # Two pipelines may report the same eventType in the same ms: the pipeline id is part of
        # the identity of a pipeline event (ROSTER.md's key is silent on pipelines).
        pipeline_id = _optional_str(detail, "mediaPipelineId")
        slot = f"{pipeline_id}/{attendee_id}" if attendee_id else pipeline_id
        return ChimeEvent(
            kind=KIND_PIPELINE,
            detail_type=detail_type,
            event_type=event_type,
            meeting_id=meeting_id,
            attendee_id="",
            timestamp=timestamp,
            key=natural_key("pipeline", meeting_id, slot, event_type, timestamp),
            detail=detail,
            **trace,
        )
    return ChimeEvent(
        kind=KIND_MEETING,
        detail_type=detail_type,
        event_type=event_type,
        meeting_id=meeting_id,
        attendee_id=attendee_id,
        timestamp=timestamp,
        key=natural_key("meeting", meeting_id, attendee_id, event_type, timestamp),
        detail=detail,
        **trace,
    )


def _voice_connector_event(detail: dict[str, Any], *, trace: dict[str, str]) -> ChimeEvent:
    connector_id = _required_id(detail, "voiceConnectorId")
    transaction_id = _required_id(detail, "transactionId")
    status = _required_str(detail, "streamingStatus", limit=MAX_TEXT_LENGTH)
    time_field = VOICE_CONNECTOR_STATUS_TIME_FIELD.get(status)
    if time_field is None:
        known = ", ".join(VOICE_CONNECTOR_STATUS_TIME_FIELD)
        raise _Reject("bad_field", f"streamingStatus {status!r} is not one of {known}")
    status_time = _required_str(detail, time_field, limit=MAX_TEXT_LENGTH)
    timestamp = iso_to_ms(status_time)
    if timestamp is None:
        raise _Reject("bad_field", f"{time_field} {status_time!r} is not an ISO 8601 time")
    for field in ("callId", "direction", "fromNumber", "toNumber", "streamArn", "failureReason"):
        _optional_str(detail, field)
    return ChimeEvent(
        kind=KIND_VOICE_CONNECTOR,
        detail_type=VOICE_CONNECTOR_DETAIL_TYPE,
        event_type=status,
        meeting_id="",
        attendee_id="",
        timestamp=timestamp,
        key=natural_key("voice_connector", connector_id, transaction_id, status, status_time),
        detail=detail,
        **trace,
    )


def _unknown_event(detail: dict[str, Any], *, detail_type: str, trace: dict[str, str]) -> ChimeEvent:
    """A detail-type we do not model: stored for the record, never dropped, never applied.

    There is no documented identity, so the key is the detail-type plus the canonical detail:
    the same occurrence through several queues still counts once.
    """
    meeting_id = detail.get("meetingId")
    timestamp = detail.get("timestamp")
    event_type = detail.get("eventType")
    canonical = json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    _check_no_nul(canonical)
    return ChimeEvent(
        kind=KIND_UNKNOWN,
        detail_type=detail_type[:MAX_TEXT_LENGTH],
        event_type=event_type[:MAX_TEXT_LENGTH] if isinstance(event_type, str) else "",
        meeting_id=meeting_id if _is_id(meeting_id) else "",
        attendee_id="",
        timestamp=timestamp if _is_timestamp(timestamp) else 0,
        key=natural_key("unknown", detail_type, canonical),
        detail=detail,
        **trace,
    )


def _is_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and "\x00" not in value


def _is_timestamp(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_TIMESTAMP_MS


def _required_id(detail: dict[str, Any], field: str) -> str:
    return _required_str(detail, field, limit=MAX_ID_LENGTH)


def _required_str(detail: dict[str, Any], field: str, *, limit: int) -> str:
    if field not in detail or detail[field] is None:
        raise _Reject("missing_field", f"detail has no '{field}'")
    value = detail[field]
    if not isinstance(value, str):
        raise _Reject("bad_field", f"'{field}' must be a string, got {type(value).__name__}")
    if not value:
        raise _Reject("bad_field", f"'{field}' is empty")
    return _bounded(value, field=field, limit=limit)


def _optional_str(
    doc: dict[str, Any], field: str, *, where: str = "detail", limit: int = MAX_TEXT_LENGTH
) -> str:
    value = doc.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Reject("bad_field", f"{where} '{field}' must be a string, got {type(value).__name__}")
    return _bounded(value, field=field, limit=limit)


def _bounded(value: str, *, field: str, limit: int) -> str:
    if len(value) > limit:
        raise _Reject("bad_field", f"'{field}' is {len(value)} characters, more than {limit}")
    _check_no_nul(value, field=field)
    return value


def _check_no_nul(value: str, *, field: str = "detail") -> None:
    # PostgreSQL text and jsonb cannot hold U+0000: such a message could never be stored.
    if "\x00" in value:
        raise _Reject("bad_field", f"'{field}' contains a NUL character")


def _required_timestamp(detail: dict[str, Any]) -> int:
    if "timestamp" not in detail or detail["timestamp"] is None:
        raise _Reject("missing_field", "detail has no 'timestamp'")
    value = detail["timestamp"]
    if type(value) is not int:
        raise _Reject(
            "bad_field", f"'timestamp' must be an integer of epoch milliseconds, got {type(value).__name__}"
        )
    if not 0 <= value <= MAX_TIMESTAMP_MS:
        raise _Reject("bad_field", f"'timestamp' {value} is out of range")
    return value


def iso_to_ms(value: str) -> int | None:
    """Epoch ms of an ISO 8601 time such as ``2022-08-30T19:06:18.112Z``; None when unparseable."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp() * 1000)
