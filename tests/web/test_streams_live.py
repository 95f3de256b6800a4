"""The streams page and the queue lag warning in a real browser (Daphne, headless Chromium): what
is ingested after the page loaded appears without a reload, hostile text stays text."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from roster.dev.chime import as_bare
from roster.ingest import IncomingMessage, messages_ingest
from roster.models import QueueSource
from tests.conftest import chromium_page, in_thread

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.browser]

HOSTILE = "<img src=x onerror=alert(1)>"


def vc(transaction: str, status: str, at: str, **extra: str) -> dict:
    time_field = {"STARTED": "startTime", "ENDED": "endTime"}[status]
    return {
        "voiceConnectorId": "vc-live",
        "transactionId": transaction,
        "callId": f"call-{transaction}",
        "direction": "Outbound",
        "fromNumber": "+15550100",
        "toNumber": "+15550199",
        "streamingStatus": status,
        time_field: at,
        **extra,
    }


def ingest(*details: dict) -> None:
    messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details])


def test_streams_and_queue_lag_change_without_reload(daphne):
    ingest(vc("tx-old", "STARTED", "2024-01-01T10:00:00.000Z"))
    User.objects.create_user("ops", password="correct horse battery", is_staff=True)
    dialogs: list[str] = []
    with chromium_page(dialogs) as page:
        # The page's timers run on a clock the test moves: the streams (every 5 s) and the queue
        # lag (every 10 s) are polled on data-poll-seconds, and the test jumps to their next polls
        # instead of waiting for them.
        page.clock.install()
        page.goto(f"http://{daphne}/admin/login/?next=/streams/")
        page.fill("#id_username", "ops")
        page.fill("#id_password", "correct horse battery")
        page.click("input[type=submit]")
        page.wait_for_url("**/streams/")
        page.wait_for_selector("#connection-status[data-state=live]", timeout=15000)
        assert page.locator('section[data-status="STARTED"] tr[data-key="vc-live/tx-old"]').count() == 1
        assert page.locator("#queue-lag").is_hidden()
        url_before = page.url

        in_thread(
            ingest,
            vc("tx-new", "STARTED", "2024-01-01T10:05:00.000Z", fromNumber=HOSTILE),
            vc("tx-old", "ENDED", "2024-01-01T10:06:00.000Z"),
        )
        in_thread(
            QueueSource.objects.create,
            url="https://sqs.us-east-1.amazonaws.com/1/q",
            backlog=80,
            oldest_age_seconds=95,
            last_poll_at=timezone.now(),
        )
        polls = [
            page.locator(node).get_attribute("data-poll-seconds") for node in ("#streams-app", "#queue-lag")
        ]
        page.clock.fast_forward(max(int(seconds) for seconds in polls) * 1000)  # each fires once
        row = page.locator('section[data-status="STARTED"] tr[data-key="vc-live/tx-new"]')
        row.wait_for(timeout=15000)
        assert row.locator("td.from-number").inner_text() == HOSTILE  # shown as text
        assert page.locator('section[data-status="ENDED"] tr[data-key="vc-live/tx-old"]').count() == 1
        assert page.locator('section[data-status="STARTED"] tr[data-key="vc-live/tx-old"]').count() == 0
        assert page.locator('[data-count-for="ENDED"]').inner_text() == "1"
        page.wait_for_selector("#queue-lag:not([hidden])", timeout=20000)
        assert page.locator("#queue-lag").inner_text() == "Queue lag 95 s · 80 waiting"
        assert page.url == url_before  # no reload
        assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0
    assert dialogs == []
