"""roster.live.layer against channels-redis itself: these tests fail when the library changes the
conventions the broadcaster relies on (group channel names, shard choice, host decoding, default
prefix, serialisation), and check that the publisher and the consumers share the prefix of
settings. test_broadcast.py checks the pipeline's messages arrive whole and in order."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings
from django.test import override_settings

from consumers.fanout import group_fanout
from roster.live.broadcast import GROUP_ALL, GROUP_LIST, meeting_group
from roster.live.layer import DEFAULT_PREFIX, group_channel, layer_prefix, redis_groups, shard_index

pytestmark = [pytest.mark.asyncio, pytest.mark.once]  # Redis, no database: the PostgreSQL run is enough

GROUPS = [GROUP_ALL, GROUP_LIST, "test.group"] + [meeting_group(f"meeting-{i}") for i in range(64)]


def layers_setting(**config: Any) -> dict[str, Any]:
    return {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": config}}


@pytest.mark.parametrize("shard_count", [1, 2, 3, 5])
async def test_group_channel_and_shard_are_the_ones_the_layer_uses(shard_count):
    hosts = [f"redis://127.0.0.1:6379/{db}" for db in range(shard_count)]
    real = RedisPubSubChannelLayer(hosts=hosts, prefix="roster-test")._get_layer()  # connects lazily
    used = set()
    for group in GROUPS:
        channel = group_channel(group=group, prefix="roster-test")
        assert channel == real._get_group_channel_name(group)
        index = shard_index(channel=channel, shard_count=shard_count)
        assert real._shards[index] is real._get_shard(channel)
        used.add(index)
    assert len(used) == shard_count  # the groups spread over every shard: the check means something


async def test_hosts_are_decoded_as_the_layer_decodes_them():
    hosts = ["redis://127.0.0.1:6379/3", ("127.0.0.1", 6379), {"address": "redis://localhost:6379/5"}]
    with override_settings(CHANNEL_LAYERS=layers_setting(hosts=hosts)):
        layer = get_channel_layer()
        ours = redis_groups(layer=layer)
        real = layer._get_layer()
        assert ours is not None and len(ours.shards) == len(real._shards) == 3
        for client, shard in zip(ours.shards, real._shards, strict=True):
            shard._ensure_redis()  # builds its client, connects lazily
            theirs = shard._redis.connection_pool.connection_kwargs
            mine = client.connection_pool.connection_kwargs
            address = ("host", "port", "db")
            assert {k: mine.get(k, 0) for k in address} == {k: theirs.get(k, 0) for k in address}


async def test_without_a_prefix_setting_both_sides_use_the_library_default():
    with override_settings(CHANNEL_LAYERS=layers_setting(hosts=[settings.REDIS_URL])):
        assert layer_prefix() == DEFAULT_PREFIX == get_channel_layer()._get_layer().prefix


async def test_sentinel_hosts_and_other_layers_are_left_to_group_send():
    sentinel = [{"sentinels": [("127.0.0.1", 26379)], "master_name": "roster"}]
    with override_settings(CHANNEL_LAYERS=layers_setting(hosts=sentinel)):
        assert redis_groups(layer=get_channel_layer()) is None
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}):
        assert redis_groups(layer=get_channel_layer()) is None


async def test_the_publisher_and_the_consumers_use_the_deployments_namespace():
    namespace = settings.ROSTER_NAMESPACE
    assert namespace.startswith("test-")  # this run's own (tests/pytest_database.py)
    assert settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] == namespace
    ours = redis_groups(layer=get_channel_layer())
    assert ours is not None and ours.prefix == namespace == group_fanout().layer._get_layer().prefix


class Collector:
    """A fan-out member that keeps what it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def broadcast_receive(self, message: dict[str, Any]) -> None:
        self.received.put_nowait(message)


async def test_a_message_published_our_way_reaches_the_consumers_under_a_prefix_and_encryption():
    # The consumers' side: this loop's fan-out, on a layer built by channels from the same settings.
    prefix = f"roster-test-{uuid.uuid4().hex[:8]}"
    config = {"hosts": [settings.REDIS_URL], "prefix": prefix, "symmetric_encryption_keys": ["s3cret"]}
    with override_settings(CHANNEL_LAYERS=layers_setting(**config)):
        fanout = group_fanout()
        member = Collector()
        await fanout.add("test.layer", member)
        try:
            ours = redis_groups(layer=get_channel_layer())
            assert ours is not None and ours.prefix == prefix == fanout.layer._get_layer().prefix
            message = {"type": "roster.delta", "seq": 1, "text": "frame ü"}
            await asyncio.to_thread(ours.publish, [("test.layer", message)])
            assert await asyncio.wait_for(member.received.get(), 5) == message
        finally:
            await fanout.discard("test.layer", member)
