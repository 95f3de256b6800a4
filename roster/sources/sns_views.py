"""``POST /sns/``: an SNS topic subscribed directly over HTTPS, without a queue.

SNS cannot log in: the message signature is the credential (roster.sources.sns verifies it), so the view
is CSRF-exempt and needs no session. Answers:

- 200: a Notification was ingested (through roster.ingest, like an SQS message; also when its
  event was quarantined: it is kept), a SubscriptionConfirmation was confirmed, an
  UnsubscribeConfirmation was logged;
- 400: not an SNS message (bad JSON, a missing field, a header that disagrees with the body);
- 403: verification failed or the topic is not allowed; nothing is stored, a warning is logged;
- 413: the body is larger than ``MAX_MESSAGE_BYTES`` + 64 KiB;
- 503: the certificate host or the SubscribeURL could not be reached: SNS retries a 5xx, never a
  4xx, so a passing network failure must not drop the message.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from roster.ingest import IncomingMessage, messages_ingest
from roster.sources import sns

logger = logging.getLogger("roster.sources.sns")

ENVELOPE_ALLOWANCE = 64 * 1024  # the SNS JSON around a message of up to MAX_MESSAGE_BYTES
MESSAGE_TYPE_HEADER = "x-amz-sns-message-type"


def _refuse(
    request: HttpRequest, status: int, code: str, reason: str, doc: dict | None = None
) -> JsonResponse:
    doc = doc or {}
    logger.warning(
        "sns %s %s from %s: %s (topic=%s message_id=%s)",
        status,
        code,
        request.META.get("REMOTE_ADDR", "?"),
        reason,
        doc.get("TopicArn", "-"),
        doc.get("MessageId", "-"),
    )
    # A 403 says no more than that: the reason is in the log, not for whoever sent it.
    body = {"error": code} if status == 403 else {"error": code, "message": reason}
    return JsonResponse(body, status=status)


@csrf_exempt
@require_POST
def sns_endpoint(request: HttpRequest) -> JsonResponse:
    limit = settings.MAX_MESSAGE_BYTES + ENVELOPE_ALLOWANCE
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return _refuse(request, 413, "too_large", f"Content-Length {declared} is more than {limit}")
    try:
        body = request.body
    except RequestDataTooBig:
        return _refuse(request, 413, "too_large", "body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE")
    if len(body) > limit:
        return _refuse(request, 413, "too_large", f"body is {len(body)} bytes, more than {limit}")

    try:
        doc = sns.message_parse(body)
    except sns.SnsInvalid as exc:
        return _refuse(request, 400, "bad_request", str(exc))
    kind = doc["Type"]
    header = request.headers.get(MESSAGE_TYPE_HEADER)
    if header != kind:
        return _refuse(
            request, 400, "bad_request", f"{MESSAGE_TYPE_HEADER} {header!r} is not Type {kind!r}", doc
        )

    try:
        sns.message_verify(doc, allowed_topics=settings.SNS_ALLOWED_TOPIC_ARNS)
    except sns.SnsRejected as exc:
        return _refuse(request, 403, "forbidden", str(exc), doc)
    except sns.SnsUnavailable as exc:
        return _refuse(request, 503, "unavailable", str(exc), doc)

    topic, message_id = doc["TopicArn"], doc["MessageId"]
    if kind == sns.NOTIFICATION:
        # The whole SNS body: roster.domain.events unwraps the Notification like one read from SQS.
        # Quarantined, it is keyed by its body (not keyed_by_id): an SNS retry is the same signed
        # body, and a body under a MessageId already seen is never folded into that row unseen.
        result = messages_ingest(
            messages=[IncomingMessage(body=body, queue=f"sns:{topic}", message_id=message_id)]
        )
        logger.debug("sns notification %s of %s: %s", message_id, topic, result.summary())
        return JsonResponse(
            {
                "status": "ok",
                "applied": result.applied,
                "duplicates": result.duplicates,
                "quarantined": result.quarantined,
            }
        )
    if kind == sns.SUBSCRIPTION_CONFIRMATION:
        try:
            sns.subscription_confirm(doc["SubscribeURL"])
        except OSError as exc:
            return _refuse(request, 503, "unavailable", f"SubscribeURL could not be visited: {exc}", doc)
        logger.info("sns subscription to %s confirmed", topic)
        return JsonResponse({"status": "confirmed"})
    logger.warning("sns UnsubscribeConfirmation for %s: this endpoint no longer receives that topic", topic)
    return JsonResponse({"status": "ok"})
