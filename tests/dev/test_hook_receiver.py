"""The demo's webhook receiver (roster.dev.hook_receiver) over real HTTP on loopback: it accepts a
delivery signed as ../shared/DESIGN.md says (the HMAC computed here from the contract, not with the
receiver's own helper), refuses a bad one with 401 and shows both, and its page escapes what it
shows."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from roster.dev.hook_receiver import ReceiverServer
from roster.dev.processes import Supervisor, hook_receiver_start

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)

SECRET = "whsec_test_0123456789"
HOSTILE = "<script>alert(1)</script>"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def payload(*, external: str = "standup", seq: int = 7, events=("attendee.joined",)) -> bytes:
    return json.dumps(
        {
            "id": "dlv-1",
            "type": "roster.change",
            "events": list(events),
            "meeting": {"meeting_id": "m-1", "external_meeting_id": external, "seq": seq},
            "attendees": [{"attendee_id": "a-1"}, {"attendee_id": "a-2"}],
        }
    ).encode()


def signed(body: bytes, secret: str = SECRET, *, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    return f"t={at},v1=" + hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()


def post(url: str, body: bytes, signature: str | None) -> int:
    headers = {"Content-Type": "application/json", "X-Roster-Delivery": "dlv-1"}
    if signature is not None:
        headers["X-Roster-Signature"] = signature
    try:
        with OPENER.open(urllib.request.Request(f"{url}/hook", data=body, headers=headers), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as refused:
        return refused.code


def get(url: str) -> str:
    with OPENER.open(url, timeout=5) as response:
        return response.read().decode()


def test_a_correctly_signed_delivery_is_accepted_and_shown_checked():
    with ReceiverServer(secrets=[SECRET]) as server:
        body = payload()
        assert post(server.url, body, signed(body)) == 200
        [seen] = json.loads(get(f"{server.url}/deliveries.json"))["deliveries"]
        assert seen["signature_ok"] and seen["refused"] == ""
        assert (seen["delivery_id"], seen["events"], seen["meeting_id"], seen["seq"]) == (
            "dlv-1",
            ["attendee.joined"],
            "m-1",
            7,
        )
        assert seen["attendee_ids"] == ["a-1", "a-2"]
        page = get(f"{server.url}/")
        assert '<meta http-equiv="refresh"' in page
        assert 'title="signature verified">✓<' in page and "dlv-1" in page and "attendee.joined" in page


@pytest.mark.parametrize(
    ("why", "signature", "reason"),
    [
        ("another secret", lambda body: signed(body, "not-the-secret"), "no signature matches"),
        ("another body", lambda body: signed(body.replace(b"standup", b"standuP")), "no signature matches"),
        (
            "an old timestamp (replay)",
            lambda body: signed(body, at=int(time.time()) - 600),
            "stale timestamp",
        ),
        ("no header", lambda body: None, "no signature"),
        ("a header without v1", lambda body: f"t={int(time.time())}", "no signature"),
    ],
)
def test_a_badly_signed_delivery_is_refused_and_shown_crossed(why, signature, reason):
    with ReceiverServer(secrets=[SECRET]) as server:
        body = payload()
        assert post(server.url, body, signature(body)) == 401, why
        [seen] = json.loads(get(f"{server.url}/deliveries.json"))["deliveries"]
        assert not seen["signature_ok"] and seen["refused"] == reason
        assert f"✗ {reason}" in get(f"{server.url}/")


def test_during_a_rotation_one_matching_v1_of_several_is_enough():
    with ReceiverServer(secrets=["new-secret"]) as server:
        body = payload()
        at = int(time.time())
        old = signed(body, "old-secret", at=at).split(",")[1]
        new = signed(body, "new-secret", at=at).split(",")[1]
        assert post(server.url, body, f"t={at},{old},{new}") == 200
        assert post(server.url, body, f"t={at},{old}") == 401


def test_the_page_escapes_what_deliveries_claim():
    with ReceiverServer(secrets=[SECRET]) as server:
        body = payload(external=HOSTILE, events=[f'"><img src=x onerror=alert(2)>{HOSTILE}'])
        assert post(server.url, body, signed(body)) == 200
        assert post(server.url, body, signed(body, "wrong")) == 401
        page = get(f"{server.url}/")
        assert "<script" not in page and "<img" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
        assert page.count("&lt;script&gt;alert(1)") == 4  # meeting and event, in both rows


def test_as_a_process_the_secret_is_in_its_environment_not_its_argv(tmp_path):
    with Supervisor(log_dir=tmp_path) as supervisor:
        url = hook_receiver_start(supervisor, secrets=["s-one", "s-two"])
        [child] = supervisor.children
        assert b"s-one" not in Path(f"/proc/{child.pid}/cmdline").read_bytes()
        body = payload()
        assert post(url, body, signed(body, "s-two")) == 200
        assert post(url, body, signed(body, "s-three")) == 401
        counted = json.loads(get(f"{url}/deliveries.json?after=1"))
        assert counted["count"] == 2 and [d["number"] for d in counted["deliveries"]] == [2]


def test_what_the_product_signs_the_receiver_accepts_during_a_rotation_too():
    from roster.hooks.signatures import signature_header

    with ReceiverServer(secrets=["new"]) as server:
        body = payload()
        assert post(server.url, body, signature_header(secrets=["new", "old"], body=body)) == 200
        assert post(server.url, body, signature_header(secrets=["old"], body=body)) == 401
