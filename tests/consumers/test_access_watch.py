"""The access watch of a Daphne process (consumers.access_watch), with stand-in sockets: one
recheck per round for all of the loop's sockets, each distinct credential asked once, and only
the sockets whose access changed are told. The real sockets are in test_revocation.py."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

import consumers.access_watch as watch_module
from consumers.access_watch import AccessWatch, access_watch
from roster.models import FeedToken
from roster.read.access import Access, access_for_token, feed_token_create

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


class Socket:
    def __init__(self) -> None:
        self.told: list[Access | None] = []

    def access_changed(self, access: Access | None) -> None:
        self.told.append(access)


@database_sync_to_async
def token_access(name: str, glob: str = "*") -> Access:
    return access_for_token(raw=feed_token_create(name=name, meetings=glob)[1])


async def test_one_question_per_round_for_every_socket_and_only_changes_are_told(monkeypatch):
    asked: list[set[Access]] = []
    recheck = watch_module.access_recheck

    def counted(*, accesses):
        asked.append(set(accesses))
        return recheck(accesses=accesses)

    monkeypatch.setattr(watch_module, "access_recheck", counted)
    kept, revoked, edited = [await token_access(name) for name in ("kept", "revoked", "edited")]
    watch = AccessWatch()
    sockets = {access: [Socket() for _ in range(100)] for access in (kept, revoked, edited)}
    for access, group in sockets.items():
        for socket in group:
            watch.add(socket, access)
    watch.task.cancel()  # rounds are run by hand here

    await watch.check()
    assert asked == [{kept, revoked, edited}]  # 300 sockets, three credentials, one question
    assert all(not s.told for group in sockets.values() for s in group)

    await database_sync_to_async(FeedToken.objects.filter(name="revoked").update)(revoked_at=timezone.now())
    await database_sync_to_async(FeedToken.objects.filter(name="edited").update)(meetings="sales-*")
    await watch.check()
    assert all(s.told == [None] for s in sockets[revoked])
    narrowed = sockets[edited][0].told[0]
    assert narrowed.globs == ("sales-*",) and all(s.told == [narrowed] for s in sockets[edited])
    assert all(not s.told for s in sockets[kept])

    await watch.check()  # told once: the revoked are no longer watched, the edited hold the new access
    assert asked[-1] == {kept, narrowed}
    assert all(len(s.told) == 1 for s in sockets[revoked] + sockets[edited])


async def test_the_watch_runs_while_sockets_are_watched(settings):
    settings.ACCESS_RECHECK_SECONDS = 0.05
    access = await token_access("app")
    socket, watch = Socket(), access_watch()
    assert access_watch() is watch  # one per event loop
    watch.add(socket, access)
    await database_sync_to_async(FeedToken.objects.filter(name="app").update)(revoked_at=timezone.now())
    for _ in range(100):
        if socket.told:
            break
        await asyncio.sleep(0.02)
    assert socket.told == [None]
    await asyncio.sleep(0.2)
    assert watch.task.done() and not watch.watched  # nothing left to watch: the task ended
