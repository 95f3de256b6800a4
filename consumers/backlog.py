"""The one change to Daphne: a websocket whose client stopped reading is closed (4408).

Daphne gives the application no send backpressure: ``websocket.send`` appends the frame to the
Twisted transport's buffer and returns, whether or not the client reads. A client that stops
reading (a stalled browser tab, a frozen app, a peer that only sends) therefore makes its
socket's buffer grow with every delta, without end, and nothing in the ASGI application can see
it. So Daphne's websocket protocol is replaced by a subclass that, before each frame the
application sends, looks at what the transport still holds unsent: past ``max_unsent_bytes`` it
sends close 4408 instead (queued behind the backlog; autobahn drops the connection when the
close handshake does not finish within its 1 s timeout) and drops the application's later frames.
The check is two attribute reads per frame, and the other sockets of the process are untouched.

A silent dead peer (one that neither reads nor sends, whatever the traffic) is found by the
websocket ping instead: ``daphne --ping-interval/--ping-timeout``, set by our start commands.

Pinned: the subclass relies on Daphne's ``WebSocketProtocol.handle_reply`` and
``WebSocketFactory.protocol``, autobahn's protocol states and ``sendClose``, and the send buffer
of Twisted's ``FileDescriptor`` (``dataBuffer``, ``offset``, ``_tempDataLen``). :func:`install`
refuses other versions than those below (requirements.txt pins the same ones); after an upgrade,
run tests/consumers/test_socket_limits.py and update PINNED.
"""

from __future__ import annotations

import logging
from importlib.metadata import version
from typing import Any

from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol

from roster.live.limits import CLOSE_NOT_READING

logger = logging.getLogger(__name__)

PINNED = {"daphne": "4.2.3", "twisted": "26.10.0", "autobahn": "26.10.2"}


def unsent_bytes(transport: Any) -> int:
    """Bytes written to a Twisted transport and not yet handed to the kernel. A TLS transport
    (a protocol wrapper) passes what it encrypted on at once: its TCP transport is measured."""
    while transport is not None and not hasattr(transport, "_tempDataLen"):
        transport = getattr(transport, "transport", None)
    if transport is None:
        return 0
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


class BoundedWebSocketProtocol(WebSocketProtocol):
    """Daphne's websocket protocol, closing 4408 when the client does not read what it is sent."""

    max_unsent_bytes = 0  # 0: no bound (set by install)

    def handle_reply(self, message: dict[str, Any]) -> None:
        if message.get("type") == "websocket.send":
            if self.state in (self.STATE_CLOSING, self.STATE_CLOSED):
                return  # the close is under way: nothing sent now could reach the client
            if self.state == self.STATE_OPEN and self.max_unsent_bytes:
                unsent = unsent_bytes(self.transport)
                if unsent > self.max_unsent_bytes:
                    client = ":".join(map(str, self.client_addr or ("?",)))
                    logger.warning(
                        "closing the websocket of %s with %d: %d bytes sent to it are still unread",
                        client,
                        CLOSE_NOT_READING,
                        unsent,
                    )
                    self.sendClose(code=CLOSE_NOT_READING, reason="the client is not reading")
                    return
        super().handle_reply(message)


def install(*, max_unsent_bytes: int) -> None:
    """Make Daphne's websocket factory build :class:`BoundedWebSocketProtocol` (before the server
    runs: the ASGI application is imported first, config.asgi calls this)."""
    installed = {name: version(name) for name in PINNED}
    if installed != PINNED:
        raise RuntimeError(
            f"consumers.backlog changes Daphne as of {PINNED}, but {installed} are installed: "
            "check it against them (tests/consumers/test_socket_limits.py), then update PINNED"
        )
    BoundedWebSocketProtocol.max_unsent_bytes = max_unsent_bytes
    WebSocketFactory.protocol = BoundedWebSocketProtocol
