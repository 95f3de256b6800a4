"""What an operator does to hooks from admin (issue #16.4) on top of the core services
(:mod:`roster.hooks.services`, :mod:`roster.hooks.delivery`): send a test delivery now, resume
(which also mends a broken circuit), redeliver a selection, and the bounded read of a hook's latest
deliveries. Each ends with a kick, so a worker acts now rather than at the next sweep.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence

from django.utils import timezone

from roster.hooks.delivery import Outcome, deliveries_kick, delivery_redeliver, delivery_send
from roster.hooks.services import hook_enabled_set, hook_mend
from roster.models import Hook, HookDelivery, HookPayload

RECENT_DELIVERIES = 20  # what a hook's page lists; the rest is one click away, filtered by hook
TEST_TYPE = "roster.test"


def hook_test_send(*, hook: Hook) -> Outcome:
    """Send a signed test payload to ``hook`` now and say what happened. It goes around the
    outbox: not stored, not retried, and it leaves the breaker alone (a test is not traffic); it
    goes even when the hook is paused or broken, which is when an operator wants to know."""
    now_ms = int(time.time() * 1000)
    delivery_id = f"test-{uuid.uuid4()}"
    body = {
        "id": "",  # put in at sending, as for every delivery
        "type": TEST_TYPE,
        "events": [],
        "meeting": {"meeting_id": "test", "external_meeting_id": "test", "seq": 0, "status": "unknown"},
        "attendees": [],
        "sent_at": now_ms,
    }
    payload = HookPayload(events=[], body=json.dumps(body), created_at=timezone.now())
    test = HookDelivery(
        hook=hook,
        payload=payload,
        meeting_id="test",
        seq=0,
        delivery_id=delivery_id,
        next_attempt_at=timezone.now(),
        created_at=timezone.now(),
    )
    return delivery_send(hook=hook, delivery=test)


def hook_resume(*, hook: Hook) -> bool:
    """Deliver again, now: an operator's resume also mends a broken circuit (the operator says
    the target is back), so what waited goes at once, not as a lone probe. False when the hook
    was neither paused nor broken."""
    paused, broken = not hook.enabled, hook.broken_at is not None
    if paused:
        hook_enabled_set(hook=hook, enabled=True)
    if broken:
        hook_mend(hook=hook)
    if paused or broken:
        deliveries_kick()
    return paused or broken


def hook_pause(*, hook: Hook) -> bool:
    """Stop sending to ``hook`` (its changes keep queueing in the outbox); False when it was paused."""
    if not hook.enabled:
        return False
    hook_enabled_set(hook=hook, enabled=False)
    return True


def deliveries_redeliver_selected(*, deliveries: Sequence[HookDelivery]) -> int:
    """Send these again (dead and delivered ones; pending ones are on their way already), each in
    its place in its hook and meeting's order; how many went back to pending."""
    count = sum(delivery_redeliver(delivery=delivery) for delivery in deliveries)
    if count:
        deliveries_kick()
    return count


def hook_deliveries_recent(*, hook: Hook, limit: int = RECENT_DELIVERIES) -> list[HookDelivery]:
    """The hook's latest deliveries, newest first, at most ``limit`` (a busy hook has millions),
    with their payloads' events, not their bodies."""
    rows = HookDelivery.objects.filter(hook_id=hook.pk).select_related("payload").defer("payload__body")
    return list(rows.order_by("-pk")[:limit])
