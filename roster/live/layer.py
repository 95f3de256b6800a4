"""channels-redis' pub/sub layer as the broadcaster addresses it without the layer: every
convention of the library we rely on, in one place.

``group_send`` on the pub/sub layer is one PUBLISH, awaited through an event loop, per group
message. Consumers only see what arrives on the group's Redis channel, so the broadcaster
publishes the same bytes (the layer's serialisation) to the same channel (the layer's name for
the group) on the same shard (the layer's choice of host) with a plain Redis pipeline, many per
round trip. The names, the shard choice and the host decoding are the library's private
conventions: tests/live/test_layer.py compares them with what a real layer computes and fails
when the library changes them.

The prefix and the hosts come from settings (``CHANNEL_LAYERS["default"]["CONFIG"]``), the same
configuration channels builds the consumers' layer from.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Any

import redis
from channels_redis.pubsub import RedisPubSubChannelLayer
from channels_redis.utils import decode_hosts
from django.conf import settings

DEFAULT_PREFIX = "asgi"  # channels-redis' own default
GroupMessage = tuple[str, dict[str, Any]]  # (group, channel-layer message)


def layer_config() -> dict[str, Any]:
    """The CONFIG of the default channel layer, from settings."""
    return settings.CHANNEL_LAYERS["default"].get("CONFIG", {})


def layer_prefix() -> str:
    return layer_config().get("prefix", DEFAULT_PREFIX)


def group_channel(*, group: str, prefix: str) -> str:
    """The Redis channel the pub/sub layer uses for a group."""
    return f"{prefix}__group__{group}"


def shard_index(*, channel: str, shard_count: int) -> int:
    """The host (index into the decoded hosts) the pub/sub layer uses for a channel."""
    if shard_count == 1:
        return 0
    return int((binascii.crc32(channel.encode("utf-8")) & 0xFFF) / (4096 / shard_count))


@dataclass(frozen=True, slots=True)
class RedisGroups:
    """Publishes group messages as the pub/sub layer would, one pipeline per shard per call."""

    prefix: str
    shards: list[redis.Redis]
    layer: RedisPubSubChannelLayer  # for its serialiser (format, encryption keys)

    def publish(self, messages: list[GroupMessage]) -> None:
        pipes = [shard.pipeline(transaction=False) for shard in self.shards]
        for group, message in messages:
            channel = group_channel(group=group, prefix=self.prefix)
            pipes[shard_index(channel=channel, shard_count=len(pipes))].publish(
                channel, self.layer.serialize(message)
            )
        for pipe in pipes:
            if pipe:
                pipe.execute()


def redis_groups(*, layer: object) -> RedisGroups | None:
    """For the pub/sub layer on plain Redis addresses; None otherwise (use its group_send)."""
    if not isinstance(layer, RedisPubSubChannelLayer):
        return None
    config = layer_config()
    hosts = decode_hosts(config.get("hosts"))  # one dict of connection arguments per shard
    if any("master_name" in host for host in hosts):
        return None  # Sentinel: leave it to the layer
    return RedisGroups(prefix=layer_prefix(), shards=[_sync_redis(host) for host in hosts], layer=layer)


def _sync_redis(host: dict[str, Any]) -> redis.Redis:
    host = dict(host)
    if "address" in host:
        return redis.Redis.from_url(host.pop("address"), **host)
    return redis.Redis(**host)
