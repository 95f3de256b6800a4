"""A meeting family in a real browser (Daphne, headless Chromium): the list folds the replica under
its primary with the family's figures and an expand control, the primary's page has the family
panel, and both follow a replica's events live, a replica learned later included. The host's rule
names only the primary's externalMeetingId: its replicas are in scope through it. Screenshots go
to artifacts/family_live/ (gitignored)."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from roster.domain.plan import MeetingFacts
from roster.domain.repairs import Repairs
from roster.ingest import IncomingMessage, messages_ingest, repairs_ingest
from roster.live.broadcast import publisher
from roster.models import AccessRule
from tests.conftest import chime_body as event
from tests.conftest import chromium_page, in_thread

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.browser]

T = 1_700_000_000_000
HOSTILE = "<img src=x onerror=alert(1)>"


def ingest(*bodies: str, replicas_of: str = "", replicas: tuple[str, ...] = ()) -> None:
    messages_ingest(messages=[IncomingMessage(body=body) for body in bodies])
    if replicas:
        repairs_ingest(
            repairs=[
                Repairs(meeting_id=r, facts=MeetingFacts(primary_meeting_id=replicas_of)) for r in replicas
            ]
        )
    publisher.flush()


def text_becomes(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([s, t]) => { const n = document.querySelector(s); return n && n.textContent.trim() === t; }",
        arg=[selector, text],
        timeout=15000,
    )


def test_a_family_on_the_list_and_the_primarys_page_follows_its_replicas_live(daphne, artifacts):
    tag = uuid.uuid4().hex[:8]  # Redis is shared with other runs: ids of our own
    p, r1, r2 = f"{tag}-p", f"{tag}-r1", f"{tag}-r2"
    ingest(
        event(p, "MeetingStarted", T, external=f"webinar-{tag}"),
        event(p, "AttendeeJoined", T + 1, "host"),
        event(r1, "MeetingStarted", T, external=HOSTILE),
        event(r1, "AttendeeJoined", T + 2, "v1"),
        replicas_of=p,
        replicas=(r1,),
    )
    host = User.objects.create_user("host", password="unused")  # not staff: a rule lets them in
    AccessRule.objects.create(user=host, meetings=f"webinar-{tag}")
    signed_in = Client()
    signed_in.force_login(host)
    base = f"http://{daphne}"
    cookie = {
        "name": settings.SESSION_COOKIE_NAME,
        "value": signed_in.cookies[settings.SESSION_COOKIE_NAME].value,
    }

    dialogs: list[str] = []
    with chromium_page(dialogs) as page:
        page.context.add_cookies([{**cookie, "url": f"{base}/"}])
        page.goto(f"{base}/")
        page.wait_for_selector("#connection-status[data-state=live]", timeout=15000)
        rows = page.eval_on_selector_all("tr.meeting-row", "rows => rows.map(r => r.dataset.meetingId)")
        assert rows == [p]  # the replica is folded under its primary
        family = f'tr.meeting-row[data-meeting-id="{p}"] .family'
        assert page.locator(family).inner_text() == "family 2 joined · peak 2 · 1 replica"
        page.click(f"{family} .family-toggle")
        replica = page.locator(f'tr.replica-rows[data-primary-id="{p}"] li[data-replica-id="{r1}"]')
        assert replica.inner_text() == f"{HOSTILE} 1 joined"  # shown as text

        in_thread(ingest, event(r1, "AttendeeJoined", T + 3, "v2"))
        text_becomes(page, f"{family} .family-joined", "3")
        assert replica.locator(".replica-joined").inner_text() == "2 joined"
        page.screenshot(path=artifacts / "list.png", full_page=True)

        page.goto(f"{base}/meetings/{p}/")
        page.wait_for_selector("#connection-status[data-state=live]", timeout=15000)
        assert page.locator("#family-panel").is_visible()
        assert page.locator("#family-joined").inner_text() == "3"
        in_thread(
            ingest,
            event(r1, "AttendeeLeft", T + 4, "v1"),
            event(r2, "MeetingStarted", T, external=f"overflow-{tag}"),
            event(r2, "AttendeeJoined", T + 5, "w1"),
            replicas_of=p,
            replicas=(r2,),
        )
        text_becomes(page, "#family-replicas", "2")
        assert page.locator("#family-joined").inner_text() == "3"
        assert page.locator("#family-peak").inner_text() == "3"
        joined = page.eval_on_selector_all(
            "#family-rows tr",
            "rows => rows.map(r => [r.dataset.replicaId, r.querySelector('td').textContent])",
        )
        assert joined == [[r1, "1"], [r2, "1"]]
        page.screenshot(path=artifacts / "primary.png", full_page=True)
    assert dialogs == []  # the hostile name ran nothing
