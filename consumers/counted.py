"""Open-socket counting for /metrics (roster.live.sockets, read by roster.ops.metrics): a
process-local count is right here, because sockets live in the Daphne process that also serves
/metrics."""

from __future__ import annotations

from typing import Any

from roster.live.sockets import socket_closed, socket_opened


class CountedSocket:
    """Mixin for a websocket consumer: counted from its accepted handshake to its disconnect.

    A handshake the consumer refuses (bad token, no session) is never counted, whether or not
    the server later reports a disconnect for it.
    """

    metrics_endpoint = ""
    _counted = False

    async def accept(self, *args: Any, **kwargs: Any) -> None:
        await super().accept(*args, **kwargs)
        if not self._counted:
            self._counted = True
            socket_opened(endpoint=self.metrics_endpoint)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        try:
            await super().websocket_disconnect(message)
        finally:  # super() ends the consumer by raising StopConsumer
            if self._counted:
                self._counted = False
                socket_closed(endpoint=self.metrics_endpoint)
