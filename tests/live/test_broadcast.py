"""The broadcaster's publishing: what it writes to Redis is what the channel layer delivers.

Consumers receive group messages through channels_redis; the broadcaster publishes them with a
plain Redis pipeline (roster.live.layer.RedisGroups). These tests subscribe through the real
layer on the real Redis and check that every message arrives, whole and in order; and that a
layer the pipeline cannot address still gets every message through its own group_send.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from channels.layers import InMemoryChannelLayer, get_channel_layer

from roster.live.broadcast import _Publisher
from roster.live.layer import redis_groups

pytestmark = [pytest.mark.asyncio, pytest.mark.once]  # Redis, no database: the PostgreSQL run is enough


def _messages(groups: list[str], count: int) -> list[tuple[str, dict]]:
    return [
        (groups[i % len(groups)], {"type": "roster.delta", "seq": i, "text": f"frame {i} ü"})
        for i in range(count)
    ]


async def _subscribed(layer, groups: list[str]) -> dict[str, str]:
    channels = {}
    for group in groups:
        channels[group] = await layer.new_channel()
        await layer.group_add(group, channels[group])
    return channels


async def _received(layer, channel: str, count: int) -> list[dict]:
    return [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(count)]


async def test_pipelined_publish_reaches_layer_subscribers_whole_and_in_order():
    layer = get_channel_layer()
    groups = [f"test.broadcast.{uuid.uuid4().hex[:8]}" for _ in range(3)]
    channels = await _subscribed(layer, groups)
    messages = _messages(groups, 30)
    pipeline = redis_groups(layer=layer)
    assert pipeline is not None  # the project's layer is channels_redis pub/sub on Redis
    await asyncio.to_thread(pipeline.publish, messages)
    for group in groups:
        got = await _received(layer, channels[group], 10)
        assert got == [message for g, message in messages if g == group]
        await layer.group_discard(group, channels[group])


async def test_publisher_sends_every_turn_queued_and_flush_waits_for_them():
    layer = get_channel_layer()
    group = f"test.broadcast.{uuid.uuid4().hex[:8]}"
    channels = await _subscribed(layer, [group])
    publisher = _Publisher()
    messages = _messages([group], 40)
    for start in range(0, 40, 4):  # ten commits' worth, queued faster than one round trip
        publisher.submit(messages[start : start + 4])
    await asyncio.to_thread(publisher.flush, 5.0)
    assert publisher.sent == 40
    assert await _received(layer, channels[group], 40) == [message for _, message in messages]
    await layer.group_discard(group, channels[group])


async def test_a_layer_the_pipeline_cannot_address_gets_its_own_group_send():
    layer = InMemoryChannelLayer()
    assert redis_groups(layer=layer) is None
    group = "test.broadcast.memory"
    channels = await _subscribed(layer, [group])
    messages = _messages([group], 3)
    publisher = _Publisher()
    publisher._loop = asyncio.new_event_loop()  # as its thread makes one when it has no pipeline
    try:
        await asyncio.to_thread(publisher._send, layer, None, messages)
    finally:
        publisher._loop.close()
    assert await _received(layer, channels[group], 3) == [message for _, message in messages]
