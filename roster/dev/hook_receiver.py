"""A small webhook receiver for the demo, the benchmarks and the tests: what an application that
registered an outbound hook runs, written from the public contract (../shared/DESIGN.md,
"Outbound hooks"), not from the sender's code, so it checks the signing as a stranger would.

- ``POST`` (any path): a delivery. ``X-Roster-Signature: t=<unix s>,v1=<hex>[,v1=...]`` must carry
  one ``v1`` equal to HMAC-SHA256(secret, "<t>.<raw body>") for one of the receiver's secrets,
  with ``t`` within five minutes of now; then 200, else 401 (so the sender retries). Either way the
  delivery is recorded, its check shown as ✓ or ✗.
- ``GET /``: an auto-refreshing HTML page of the latest deliveries (delivery id, events, meeting,
  seq, signature ✓/✗), everything it shows escaped.
- ``GET /deliveries.json?after=N``: the recorded deliveries numbered above N, with their receive
  times (``time.time()`` and the system-wide monotonic clock), for the benchmark and the tests.

The secrets come from ``HOOK_RECEIVER_SECRETS`` (comma separated; never on the command line, which
``ps`` shows). Run alone: ``HOOK_RECEIVER_SECRETS=... python -m roster.dev.hook_receiver --port 5200``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import html
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from roster.dev.servers import BackgroundServer, serve_until_stopped

SECRETS_ENV = "HOOK_RECEIVER_SECRETS"
TOLERANCE_SECONDS = 300  # a signature older (or newer) than this is refused: a replay
MAX_BODY_BYTES = 512 * 1024  # a delivery is at most 256 KiB; anything far larger is refused unread
PAGE_ROWS = 50
PAGE_REFRESH_SECONDS = 2


def signature_header_parse(header: str) -> tuple[int | None, list[str]]:
    """(t, every v1) of an ``X-Roster-Signature`` value; t is None when missing or not a number."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value.strip().lower())
    return timestamp, signatures


def signature_verify(
    *,
    header: str,
    body: bytes,
    secrets: Sequence[str],
    now: float | None = None,
    tolerance: float = TOLERANCE_SECONDS,
) -> tuple[bool, str]:
    """(ok, why not): one ``v1`` of the header must be the HMAC of ``"<t>.<body>"`` under one of
    ``secrets``, and ``t`` recent; compared in constant time, so timing says nothing."""
    timestamp, signatures = signature_header_parse(header or "")
    if timestamp is None or not signatures:
        return False, "no signature"
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False, "stale timestamp"
    signed = f"{timestamp}.".encode() + body
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, given) for given in signatures):
            return True, ""
    return False, "no signature matches"


@dataclass
class Delivery:
    """One POST as received: what the page and the JSON show."""

    number: int
    received_at: float  # time.time()
    received_monotonic: float  # CLOCK_MONOTONIC: comparable with another process's on this machine
    delivery_id: str
    header_delivery_id: str
    signature_ok: bool
    refused: str  # why it was refused ("" when accepted)
    events: list[str] = field(default_factory=list)
    meeting_id: str = ""
    external_meeting_id: str = ""
    seq: int | None = None
    part: int | None = None
    parts: int | None = None
    attendee_ids: list[str] = field(default_factory=list)
    size: int = 0


def delivery_read(*, number: int, headers: Any, body: bytes, secrets: Sequence[str]) -> Delivery:
    """Check a POST's signature and pick out what the page shows (the body is trusted only once
    the signature holds; a refused one shows only what its headers and body claim)."""
    received_at, received_monotonic = time.time(), time.monotonic()
    ok, why = signature_verify(header=headers.get("X-Roster-Signature", ""), body=body, secrets=secrets)
    delivery = Delivery(
        number=number,
        received_at=received_at,
        received_monotonic=received_monotonic,
        delivery_id="",
        header_delivery_id=str(headers.get("X-Roster-Delivery", ""))[:200],
        signature_ok=ok,
        refused=why,
        size=len(body),
    )
    try:
        payload = json.loads(body)
    except ValueError:
        if ok:
            delivery.refused = "not JSON"
        return delivery
    if not isinstance(payload, dict):
        return delivery
    meeting = payload.get("meeting") if isinstance(payload.get("meeting"), dict) else {}
    delivery.delivery_id = str(payload.get("id", ""))[:200]
    delivery.events = [str(e)[:100] for e in payload.get("events") or [] if isinstance(e, str)][:50]
    delivery.meeting_id = str(meeting.get("meeting_id", ""))[:200]
    delivery.external_meeting_id = str(meeting.get("external_meeting_id") or "")[:200]
    seq = meeting.get("seq")
    delivery.seq = seq if isinstance(seq, int) else None
    delivery.part = payload.get("part") if isinstance(payload.get("part"), int) else None
    delivery.parts = payload.get("parts") if isinstance(payload.get("parts"), int) else None
    delivery.attendee_ids = [
        str(a.get("attendee_id", "")) for a in payload.get("attendees") or [] if isinstance(a, dict)
    ]
    return delivery


class Receiver:
    """The deliveries kept (the latest ``keep``) and the secrets they are checked against."""

    def __init__(self, *, secrets: Sequence[str] = (), keep: int = 100_000) -> None:
        self.secrets = [s for s in secrets if s]
        self.deliveries: deque[Delivery] = deque(maxlen=keep)
        self.count = 0
        self.lock = threading.Lock()

    def receive(self, headers: Any, body: bytes) -> Delivery:
        with self.lock:
            self.count += 1
            number = self.count
        delivery = delivery_read(number=number, headers=headers, body=body, secrets=self.secrets)
        with self.lock:
            self.deliveries.append(delivery)
        return delivery

    def after(self, number: int) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.number > number]

    def latest(self, count: int = PAGE_ROWS) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)[-count:][::-1]


def page_render(*, deliveries: Sequence[Delivery], total: int) -> str:
    """The auto-refreshing page, newest first; every value escaped (a meeting's name is anyone's)."""
    e = html.escape
    rows = []
    for d in deliveries:
        check = (
            '<td class="ok" title="signature verified">✓</td>'
            if d.signature_ok
            else f'<td class="bad" title="{e(d.refused)}">✗ {e(d.refused)}</td>'
        )
        part = f" (part {d.part}/{d.parts})" if d.part is not None and d.parts is not None else ""
        meeting = e(d.external_meeting_id) + (
            f' <span class="id">{e(d.meeting_id)}</span>' if d.meeting_id else ""
        )
        rows.append(
            "<tr>"
            f"<td>{d.number}</td>"
            f"<td>{e(time.strftime('%H:%M:%S', time.localtime(d.received_at)))}</td>"
            f'<td class="id">{e(d.delivery_id or d.header_delivery_id)}</td>'
            f"<td>{e(', '.join(d.events))}</td>"
            f"<td>{meeting}</td>"
            f"<td>{'' if d.seq is None else d.seq}{e(part)}</td>"
            f"<td>{len(d.attendee_ids)}</td>"
            f"{check}"
            "</tr>"
        )
    body = "\n".join(rows) or '<tr><td colspan="8">No delivery yet.</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{PAGE_REFRESH_SECONDS}">
<title>Hook receiver: {total} deliveries</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: .25em .6em; border-bottom: 1px solid #ddd; text-align: left; }}
.id {{ color: #777; font-family: monospace; font-size: .85em; }}
.ok {{ color: #070; }} .bad {{ color: #b00; }}
</style></head>
<body>
<h1>Hook receiver</h1>
<p>{total} deliveries received; the latest {min(total, PAGE_ROWS)}, newest first. Signatures are checked
with the hook's secret (X-Roster-Signature). This page refreshes every {PAGE_REFRESH_SECONDS} s.</p>
<table>
<thead><tr><th>#</th><th>received</th><th>delivery id</th><th>events</th><th>meeting</th><th>seq</th>
<th>attendees</th><th>signature</th></tr></thead>
<tbody>
{body}
</tbody></table>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a sender's pooled connection is reused
    disable_nagle_algorithm = True
    server: _Server
    timeout = 60

    def _answer(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._answer(413, b"too large\n", "text/plain")
            return
        body = self.rfile.read(length) if length else b""
        delivery = self.server.receiver.receive(self.headers, body)
        if delivery.signature_ok and not delivery.refused:
            self._answer(200, b'{"ok": true}', "application/json")
        else:
            self._answer(401, json.dumps({"error": delivery.refused}).encode(), "application/json")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        receiver = self.server.receiver
        if url.path == "/":
            page = page_render(deliveries=receiver.latest(), total=receiver.count)
            self._answer(200, page.encode(), "text/html; charset=utf-8")
        elif url.path == "/deliveries.json":
            after = parse_qs(url.query).get("after", ["0"])[0]
            found = receiver.after(int(after) if after.isdigit() else 0)
            payload = {"count": receiver.count, "deliveries": [asdict(d) for d in found]}
            self._answer(200, json.dumps(payload).encode(), "application/json")
        else:
            self._answer(404, b"not found\n", "text/plain")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if self.server.verbose:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], receiver: Receiver, *, verbose: bool = False) -> None:
        super().__init__(address, _Handler)
        self.receiver = receiver
        self.verbose = verbose


class ReceiverServer(BackgroundServer):
    """The receiver on loopback in a background thread (tests): ``with ReceiverServer(secrets=[s])
    as server: server.url``; ``server.receiver`` holds what came."""

    thread_name = "hook-receiver"

    def __init__(self, *, secrets: Sequence[str] = (), host: str = "127.0.0.1", port: int = 0) -> None:
        self.receiver = Receiver(secrets=secrets)
        super().__init__(_Server((host, port), self.receiver))


def server_command(*, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that starts the receiver with the running interpreter (secrets in the
    environment: ``HOOK_RECEIVER_SECRETS``)."""
    return [sys.executable, "-m", "roster.dev.hook_receiver", "--host", host, "--port", str(port)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A webhook receiver that checks roster signatures.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--keep", type=int, default=100_000, help="deliveries kept for /deliveries.json")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    secrets = [s.strip() for s in os.environ.get(SECRETS_ENV, "").split(",") if s.strip()]
    receiver = Receiver(secrets=secrets, keep=args.keep)
    httpd = _Server((args.host, args.port), receiver, verbose=args.verbose)
    note = "" if secrets else " (no secret set: every delivery is refused)"
    serve_until_stopped(httpd, banner="hook receiver on {url}/" + note)


if __name__ == "__main__":
    main()
