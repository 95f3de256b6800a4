"""Follow chime-roster's feed and print live changes (protocol v1, docs/feed.md).

    python -m examples.feed_client --url ws://127.0.0.1:8000/ws/feed/ --token crt_... [--meetings ID ...]

Keeps the highest seq per meeting and reconnects with backoff and `since`, so nothing is missed;
stops (exit status 3) when the server closes with 4403: the token was revoked, reconnecting with
it is pointless. Needs only the `websockets` package.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys

import websockets

CLOSE_REVOKED = 4403  # after an error "revoked" (docs/feed.md, "When access changes")


class Revoked(Exception):
    """The server ended this token's access."""


def describe(attendee: dict) -> str:
    flags = [
        name for name in ("video", "screen_share", "content_share", "content_video") if attendee.get(name)
    ]
    name = attendee.get("external_user_id") or attendee["attendee_id"]
    return f"{name}: {attendee.get('presence') or '-'} {' '.join(flags)}".rstrip()


class Follower:
    def __init__(self, *, url: str, token: str, meetings: list[str] | None, limit: int | None) -> None:
        self.url, self.token, self.meetings, self.limit = url, token, meetings, limit
        self.seqs: dict[str, int] = {}
        self.printed = 0

    def show(self, message: dict) -> None:
        meeting = message["meeting"]
        self.seqs[meeting["meeting_id"]] = meeting["seq"]
        label = meeting.get("external_meeting_id") or meeting["meeting_id"]
        print(
            f"{message['type']} {label} seq={meeting['seq']} status={meeting['status']} "
            f"joined={meeting['joined_count']} changed={len(message['attendees'])}",
            flush=True,
        )
        for attendee in message["attendees"]:
            print(f"  {describe(attendee)}", flush=True)
        self.printed += 1

    async def session(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with websockets.connect(self.url, additional_headers=headers, max_size=None) as socket:
            hello = json.loads(await socket.recv())
            if hello.get("type") != "hello":
                raise RuntimeError(f"unexpected first message: {hello}")
            subscribe = {"type": "subscribe", "meetings": self.meetings or "*"}
            if self.seqs:
                subscribe["since"] = self.seqs
            await socket.send(json.dumps(subscribe))
            async for raw in socket:
                message = json.loads(raw)
                if message["type"] in ("snapshot", "changes", "delta"):
                    self.show(message)
                    if self.limit is not None and self.printed >= self.limit:
                        return
                elif message["type"] == "unsubscribed":  # left the token's scope: hold nothing of it
                    self.seqs.pop(message["meeting_id"], None)
                    print(f"unsubscribed {message['meeting_id']} ({message['reason']})", flush=True)
                elif message["type"] == "error":
                    print(f"error {message['code']}: {message['message']}", file=sys.stderr, flush=True)

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self.session()
                return
            except (OSError, websockets.ConnectionClosed) as exc:
                closed = getattr(exc, "rcvd", None)
                if closed is not None and closed.code == CLOSE_REVOKED:
                    raise Revoked(closed.reason or "access revoked") from None
                wait = min(backoff, 15.0) * (0.5 + random.random())
                print(
                    f"disconnected ({exc}); reconnecting in {wait:.1f}s with since={self.seqs}",
                    file=sys.stderr,
                )
                await asyncio.sleep(wait)
                backoff *= 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8000/ws/feed/")
    parser.add_argument("--token", default=os.environ.get("ROSTER_FEED_TOKEN", ""))
    parser.add_argument("--meetings", nargs="*", help="meeting ids (default: every meeting in scope)")
    parser.add_argument("--limit", type=int, help="exit after printing this many changes")
    args = parser.parse_args()
    if not args.token:
        parser.error("--token (or ROSTER_FEED_TOKEN) is required")
    with contextlib.suppress(KeyboardInterrupt):
        follower = Follower(url=args.url, token=args.token, meetings=args.meetings, limit=args.limit)
        try:
            asyncio.run(follower.run())
        except Revoked as revoked:
            print(f"stopped: {revoked}", file=sys.stderr)
            sys.exit(3)


if __name__ == "__main__":
    main()
