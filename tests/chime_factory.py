"""Build Chime event bodies and parsed ChimeEvents for tests. Pure: no Django, no I/O, no randomness.

The shapes follow the Amazon Chime SDK documentation (shared/ROSTER.md, roster/events.py)::

    d = detail("AttendeeJoined", "m-1", "a-1", ts=1000, networkType="Voip")
    as_json(envelope(d))        # EventBridge envelope (also what SNS raw delivery hands a queue)
    as_json(sns(envelope(d)))   # SNS Notification whose Message is the envelope
    as_json(d)                  # bare detail (the meeting's own SQS queue)
    chime_event("AttendeeJoined", "m-1", "a-1", ts=1000)   # a parsed ChimeEvent, via event_parse

Event types may be given with or without the ``chime:`` prefix; extra keyword arguments are copied
into the detail verbatim (use Chime's camelCase names: ``externalUserId``, ``networkType``,
``mediaPipelineId``, ``success``, ...).
"""

from __future__ import annotations

import json
from typing import Any

from roster.domain.events import (
    CHIME_SOURCE,
    MEETING_DETAIL_TYPE,
    PIPELINE_DETAIL_TYPE,
    VOICE_CONNECTOR_DETAIL_TYPE,
    VOICE_CONNECTOR_STATUS_TIME_FIELD,
    ChimeEvent,
    Rejection,
    event_parse,
)

MEETING_ID = "87654321-4321-4321-1234-111122223333"
ACCOUNT = "111122223333"
REGION = "us-east-1"
BASE_TS = 1_700_000_000_000
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:chime-events"
ENVELOPE_ID = "5cc6b1de-1111-2222-3333-444455556666"
SNS_MESSAGE_ID = "8e3c1a0f-aaaa-bbbb-cccc-ddddeeeeffff"


def chime_type(event_type: str) -> str:
    """``AttendeeJoined`` -> ``chime:AttendeeJoined`` (already prefixed names are kept)."""
    return event_type if event_type.startswith("chime:") else f"chime:{event_type}"


def detail(
    event_type: str,
    meeting_id: str = MEETING_ID,
    attendee_id: str | None = None,
    ts: int = BASE_TS,
    **extra: Any,
) -> dict[str, Any]:
    """A meeting (or pipeline) event ``detail``; ``attendeeId`` only when ``attendee_id`` is given."""
    doc: dict[str, Any] = {
        "version": "0",
        "eventType": chime_type(event_type),
        "timestamp": ts,
        "meetingId": meeting_id,
    }
    if attendee_id is not None:
        doc["attendeeId"] = attendee_id
    doc.update(extra)
    return doc


def vc_detail(
    status: str,
    *,
    voice_connector_id: str = "abcdef1ghij2klmno3pqr4",
    transaction_id: str = "daaf4cc5-0b64-4b5a-9a86-2d7d3d2d1c9e",
    at: str = "2022-08-30T19:06:18.112Z",
    **extra: Any,
) -> dict[str, Any]:
    """A Voice Connector streaming ``detail``; ``at`` goes in the status's own time field."""
    doc: dict[str, Any] = {
        "version": "0",
        "callId": "1112-2222-4333",
        "direction": "Outbound",
        "fromNumber": "+12065550100",
        "toNumber": "+12065550200",
        "streamArn": "arn:aws:kinesisvideo:us-east-1:111122223333:stream/chime-vc/1",
        "voiceConnectorId": voice_connector_id,
        "transactionId": transaction_id,
        "streamingStatus": status,
    }
    if status in VOICE_CONNECTOR_STATUS_TIME_FIELD:
        doc[VOICE_CONNECTOR_STATUS_TIME_FIELD[status]] = at
    doc.update(extra)
    return doc


def detail_type_for(doc: dict[str, Any]) -> str:
    """The EventBridge detail-type Chime uses for a detail of this shape."""
    if "streamingStatus" in doc:
        return VOICE_CONNECTOR_DETAIL_TYPE
    if str(doc.get("eventType", "")).startswith("chime:MediaPipeline"):
        return PIPELINE_DETAIL_TYPE
    return MEETING_DETAIL_TYPE


def envelope(
    doc: dict[str, Any],
    *,
    detail_type: str | None = None,
    account: str = ACCOUNT,
    region: str = REGION,
    envelope_id: str = ENVELOPE_ID,
    source: str = CHIME_SOURCE,
) -> dict[str, Any]:
    """An EventBridge envelope around ``doc`` (detail-type inferred from the detail unless given)."""
    return {
        "version": "0",
        "id": envelope_id,
        "detail-type": detail_type or detail_type_for(doc),
        "source": source,
        "account": account,
        "time": "2023-11-14T22:13:20Z",
        "region": region,
        "resources": [],
        "detail": doc,
    }


def sns(
    message: dict[str, Any] | str,
    *,
    message_id: str = SNS_MESSAGE_ID,
    message_type: str = "Notification",
    topic_arn: str = TOPIC_ARN,
) -> dict[str, Any]:
    """An SNS message as a queue subscribed without raw delivery receives it.

    ``message`` (an envelope or bare detail; dicts are serialised) becomes the ``Message`` string.
    """
    return {
        "Type": message_type,
        "MessageId": message_id,
        "TopicArn": topic_arn,
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": "2023-11-14T22:13:20.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/cert.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    }


def as_json(doc: Any) -> str:
    """The message body text of a document."""
    return json.dumps(doc)


def accepted(body: str | bytes, **kwargs: Any) -> ChimeEvent:
    """``event_parse(body)``, failing the test with the rejection when the body is not accepted."""
    outcome = event_parse(body, **kwargs)
    if isinstance(outcome, Rejection):
        raise AssertionError(f"expected an accepted event, got {outcome}")
    return outcome


def chime_event(
    event_type: str,
    meeting_id: str = MEETING_ID,
    attendee_id: str | None = None,
    ts: int = BASE_TS,
    **extra: Any,
) -> ChimeEvent:
    """A parsed ChimeEvent for ``detail(...)`` delivered in an EventBridge envelope.

    MediaPipeline* types come out as kind "pipeline" (pass ``mediaPipelineId=...``).
    """
    return accepted(as_json(envelope(detail(event_type, meeting_id, attendee_id, ts, **extra))))


def unknown_event(doc: dict[str, Any], *, detail_type: str = "Chime Something New") -> ChimeEvent:
    """A parsed ChimeEvent of a detail-type the service does not model (kind "unknown")."""
    return accepted(as_json(envelope(doc, detail_type=detail_type)))


def vc_event(status: str, **kwargs: Any) -> ChimeEvent:
    """A parsed Voice Connector streaming ChimeEvent (see :func:`vc_detail`)."""
    return accepted(as_json(envelope(vc_detail(status, **kwargs))))
