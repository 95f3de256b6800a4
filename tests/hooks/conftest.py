"""A real HTTP receiver on loopback that checks signatures with docs/hooks.md's own Python example,
and the short timings the hook tests run with."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def docs_verifier() -> Callable[..., bool]:
    """``roster_signature_ok`` exactly as docs/hooks.md prints it."""
    text = (ROOT / "docs" / "hooks.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "docs/hooks.md", "exec"), namespace)  # noqa: S102 - the documented example
    return namespace["roster_signature_ok"]


@dataclass
class Received:
    delivery_id: str
    signature: str
    body: bytes
    verified: bool
    host: str = ""
    peer: int = 0  # the sender's port: one per connection

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers ``status`` (a callable of the request's number, from 1) after ``hold`` is set."""

    url: str = ""
    secrets: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    status: Callable[[int], int] = lambda n: 200
    hold: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    hang_up: bool = False  # answer as keep-alive, then close: what an idle timeout does later

    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.verified]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    verify = docs_verifier()
    state = Receiver()
    state.hold.set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as most receivers

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            signature = self.headers.get("X-Roster-Signature", "")
            verified = any(verify(secret, signature, body) for secret in state.secrets)
            with lock:
                state.received.append(
                    Received(
                        self.headers.get("X-Roster-Delivery", ""),
                        signature,
                        body,
                        verified,
                        self.headers.get("Host", ""),
                        self.client_address[1],
                    )
                )
                number = len(state.received)
            state.arrived.set()
            state.hold.wait(30)
            code = state.status(number) if verified else 401
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.close_connection = state.hang_up

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_port}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.hold.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def hook_settings(settings):
    """Loopback allowed, short timeouts and backoff: the hook tests' timings."""
    settings.HOOKS_ALLOW_HTTP_LOOPBACK = True
    settings.HOOKS_TIMEOUT_SECONDS = 1.0
    settings.HOOKS_RETRY_BASE_SECONDS = 0.02
    settings.HOOKS_RETRY_MAX_SECONDS = 0.1
    settings.HOOKS_BREAKER_FAILURES = 100
    settings.HOOKS_BREAKER_COOLDOWN_SECONDS = 0.2
    settings.HOOKS_CACHE_SECONDS = 0.0
    from roster.hooks.delivery import kick_mark_clear

    kick_mark_clear()  # an earlier test's kick may still wait in the broker: this one kicks afresh
    return settings
