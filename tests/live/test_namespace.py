"""Two deployments on one Redis server never hear each other (ROSTER_NAMESPACE).

Redis pub/sub channels ignore the database number, so this was a real leak: the demo's dashboard
showed meetings that existed only in a test database. Here deployment A is this test run (its
PostgreSQL database, its own namespace) and deployment B is a real Daphne with a database of its
own (a SQLite file) and the namespace its settings derive by default, on the same Redis: events
ingested into one reach their own feed and metrics and never the other's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from config.namespace import namespace_default
from roster.dev.chime import as_bare, meeting_stream
from roster.dev.processes import daphne_command, free_port
from roster.ingest import IncomingMessage, messages_ingest
from roster.live.broadcast import publisher
from roster.ops.metrics import metrics_render
from roster.read.access import feed_token_create
from roster.sources.slots import slot_key
from tests.conftest import manage

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_the_default_namespace_differs_with_the_database_or_the_redis_database():
    postgres = {"ENGINE": "django.db.backends.postgresql", "HOST": "db", "PORT": 5432, "NAME": "roster"}
    same = namespace_default(database=postgres, redis_url="redis://cache:6379/0")
    assert same == namespace_default(database=dict(postgres), redis_url="redis://cache:6379")
    others = {
        namespace_default(database={**postgres, "NAME": "staging"}, redis_url="redis://cache:6379/0"),
        namespace_default(database={**postgres, "HOST": "db2"}, redis_url="redis://cache:6379/0"),
        namespace_default(database=postgres, redis_url="redis://cache:6379/1"),
        namespace_default(database=postgres, redis_url="redis://cache2:6379/0"),
    }
    assert same not in others and len(others) == 4


@contextmanager
def feed(port: int, token: str) -> Iterator[ClientConnection]:
    """A feed client subscribed to every meeting, past its hello."""
    url = f"ws://127.0.0.1:{port}/ws/feed/"
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10) as socket:
        assert json.loads(socket.recv(timeout=10))["type"] == "hello"
        socket.send(json.dumps({"type": "subscribe", "meetings": "*"}))
        socket.send(json.dumps({"type": "ping"}))  # answered once the subscription is in place
        assert json.loads(socket.recv(timeout=10))["type"] == "pong"
        yield socket


def quiet(socket: ClientConnection, seconds: float = 1.0) -> bool:
    try:
        socket.recv(timeout=seconds)
    except TimeoutError:
        return True
    except ConnectionClosed:
        return False
    return False


def meeting_ids(socket: ClientConnection) -> str:
    return json.loads(socket.recv(timeout=10))["meeting"]["meeting_id"]


def file_lines(scraped: str) -> list[str]:
    """The metric lines of events read from files (deployment B ingests one)."""
    return [line for line in scraped.splitlines() if 'queue="file"' in line]


def test_two_deployments_on_one_redis_never_hear_each_other(daphne, subprocess_env, processes, tmp_path):
    env_b = {k: v for k, v in subprocess_env.items() if k != "ROSTER_NAMESPACE"}  # B derives its own
    env_b.update(DATABASE_URL=f"sqlite:///{tmp_path / 'b.sqlite3'}", METRICS_TOKEN="b-metrics")
    assert manage("migrate", "--noinput", env=env_b).returncode == 0
    created = manage("create_feed_token", "app-b", env=env_b)
    assert created.returncode == 0, created.stderr
    namespace_b = manage(
        "shell", "-c", "from django.conf import settings; print(settings.ROSTER_NAMESPACE)", env=env_b
    ).stdout.split()[-1]
    assert namespace_b.startswith("roster-") and namespace_b != settings.ROSTER_NAMESPACE
    port_b = free_port()
    processes.spawn("daphne-b", daphne_command(port_b), env=env_b, stop_timeout=30)
    processes.wait_port(port_b, what="waiting for deployment B's daphne", timeout=30)

    _, token_a = feed_token_create(name="app-a")
    file_lines_a = file_lines(metrics_render().decode())  # earlier tests of this run may have some
    with (
        feed(int(daphne.rsplit(":", 1)[1]), token_a) as feed_a,
        feed(port_b, created.stdout.split()[-1]) as feed_b,
    ):
        in_a = meeting_stream(seed=171, attendees=2, end=False, meeting_id="room-0")
        messages_ingest(messages=[IncomingMessage(body=as_bare(d), queue="queue-a") for d in in_a])
        publisher.flush()
        assert meeting_ids(feed_a) == "room-0"
        assert quiet(feed_b)  # A's meeting never reaches B

        in_b = meeting_stream(seed=172, attendees=2, end=False, meeting_id="room-b")
        lines = tmp_path / "b.jsonl"
        lines.write_text("".join(as_bare(d) + "\n" for d in in_b))
        assert manage("ingest_file", str(lines), env=env_b).returncode == 0
        assert meeting_ids(feed_b) == "room-b"
        assert quiet(feed_a)  # nor B's meeting A

    # Metrics: each deployment counts its own events only.
    scraped_a = metrics_render().decode()
    assert 'queue="queue-a"' in scraped_a and file_lines(scraped_a) == file_lines_a  # B's file: not here
    scraped_b = manage(
        "shell",
        "-c",
        "from roster.ops.metrics import metrics_render; print(metrics_render().decode())",
        env=env_b,
    )
    assert 'queue="file"' in scraped_b.stdout and 'queue="queue-a"' not in scraped_b.stdout

    # Drain slots: A holding slot 0 of a queue leaves B's slot 0 of the same queue free.
    queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/chime-events"
    client = redis.Redis.from_url(settings.REDIS_URL)
    key_a = slot_key(queue_url, 0)
    with override_settings(ROSTER_NAMESPACE=namespace_b):
        key_b = slot_key(queue_url, 0)
    try:
        assert client.lock(key_a, timeout=10).acquire(blocking=False)
        assert client.lock(key_b, timeout=10).acquire(blocking=False)
        assert key_a.startswith(f"{settings.ROSTER_NAMESPACE}:") and key_b.startswith(f"{namespace_b}:")
    finally:
        client.delete(key_a, key_b)
