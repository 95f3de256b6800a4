"""In-process fan-out of broadcast messages: the process, not each socket, joins a group.

With Channels' usual ``group_add(group, self.channel_name)`` every socket is a member of the
group itself, so one group message for 1,000 sockets of a Daphne process is queued 1,000 times,
msgpack-decoded 1,000 times and handled by 1,000 task wake-ups, each with a new receive task and
an ``asyncio.wait``. Here the process joins each group once, with a channel of its own, and one
reader task per group hands every message, decoded once, to the process's sockets in that group,
in the order the group received them. The frames and their order are the same; the work per
delivery is what is left: the socket's checks and its write (docs/benchmarks-live.md).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Protocol

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


class Member(Protocol):
    async def broadcast_receive(self, message: dict[str, Any]) -> None: ...


class GroupFanout:
    """Group membership of one event loop's sockets, one channel-layer subscription per group."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.members: dict[str, set[Member]] = {}
        self.readers: dict[str, tuple[str, asyncio.Task]] = {}
        self.lock = asyncio.Lock()  # joins and leaves of the layer, one at a time

    async def add(self, group: str, member: Member) -> None:
        """Deliver ``group``'s messages to ``member`` from now on."""
        async with self.lock:
            self.members.setdefault(group, set()).add(member)
            if group not in self.readers:
                channel = await self.layer.new_channel()
                await self.layer.group_add(group, channel)
                self.readers[group] = (channel, asyncio.ensure_future(self._read(group, channel)))

    async def discard(self, group: str, member: Member) -> None:
        async with self.lock:
            members = self.members.get(group)
            if members is None or member not in members:
                return
            members.discard(member)
            if not members:
                del self.members[group]
                channel, reader = self.readers.pop(group)
                await self.layer.group_discard(group, channel)
                reader.cancel()  # the layer unsubscribes a channel whose receive is cancelled

    async def _read(self, group: str, channel: str) -> None:
        while True:
            message = await self.layer.receive(channel)
            for member in list(self.members.get(group, ())):
                try:
                    await member.broadcast_receive(message)
                except Exception:  # noqa: BLE001 - one socket's failure must not stop the others
                    logger.exception("delivering a %s message to a socket failed", group)


_fanouts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupFanout] = weakref.WeakKeyDictionary()


def group_fanout() -> GroupFanout:
    """The running event loop's fan-out (one per loop, like the channel layer's connections)."""
    loop = asyncio.get_running_loop()
    fanout = _fanouts.get(loop)
    if fanout is None:
        fanout = _fanouts[loop] = GroupFanout()
    return fanout
