"""docs/hooks.md's Node example, run by Node.js as a real receiver on loopback: the deliveries
roster.hooks.delivery signs reach it and it accepts them (during a secret rotation too, with
the old secret); a body changed on the way, or a stale stamp, it refuses."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from roster.hooks.services import hook_create, hook_secret_rotate
from roster.models import HookDelivery
from tests.hooks.conftest import ROOT
from tests.hooks.test_delivery import changes, run_until, settled

pytestmark = pytest.mark.django_db

# Appended to the documented function: answer 200 when it accepts, 401 when not, and print a
# line per request.
RECEIVER = r"""
const http = require("http");
const secret = process.env.HOOK_SECRET;
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const ok = rosterSignatureOk(secret, req.headers["x-roster-signature"] || "", Buffer.concat(chunks));
    process.stdout.write(JSON.stringify({ id: req.headers["x-roster-delivery"], ok }) + "\n");
    res.writeHead(ok ? 200 : 401, { "Content-Length": "0" });
    res.end();
  });
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
"""


def documented_node() -> str:
    text = (ROOT / "docs" / "hooks.md").read_text()
    return re.search(r"```js\n(.*?)```", text, re.S).group(1)


class NodeReceiver:
    def __init__(self, script: str, secret: str) -> None:
        node = shutil.which("node")
        assert node, "Node.js is needed (tests/setup/prerequisites.sh installs Debian's nodejs)"
        self.process = subprocess.Popen(  # noqa: S603 - our own script
            [node, "-e", script], stdout=subprocess.PIPE, text=True, env={**os.environ, "HOOK_SECRET": secret}
        )
        self.url = f"http://127.0.0.1:{json.loads(self.process.stdout.readline())['port']}/hook"
        self.seen: list[dict] = []

    def lines(self, count: int) -> list[dict]:
        """The first ``count`` requests' verdicts (blocking until they came)."""
        while len(self.seen) < count:
            self.seen.append(json.loads(self.process.stdout.readline()))
        return self.seen[:count]

    def post(self, body: bytes, signature: str) -> int:
        request = urllib.request.Request(self.url, data=body, headers={"X-Roster-Signature": signature})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=5) as answer:
                return answer.status
        except urllib.error.HTTPError as refused:
            return refused.code


@pytest.fixture
def node_receiver() -> Iterator[Callable[[str], NodeReceiver]]:
    started: list[NodeReceiver] = []

    def start(secret: str) -> NodeReceiver:
        receiver = NodeReceiver(documented_node() + RECEIVER, secret)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.process.kill()
        receiver.process.wait(5)


def sign(secret: str, body: bytes, stamp: int) -> str:
    digest = hmac.new(secret.encode(), str(stamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def test_the_node_example_accepts_real_deliveries_and_refuses_forgeries(hook_settings, node_receiver):
    secret = "whsec_node-example"
    receiver = node_receiver(secret)
    hook, _ = hook_create(name="node", target=receiver.url)
    hook.secret = secret  # the receiver was started with it: the hook signs with it
    hook.save(update_fields=["secret"])
    changes("m-node", 2)
    run_until(settled)
    assert [line["ok"] for line in receiver.lines(2)] == [True, True]
    ids = list(HookDelivery.objects.filter(hook=hook).order_by("seq").values_list("delivery_id", flat=True))
    assert [line["id"] for line in receiver.lines(2)] == ids
    assert set(HookDelivery.objects.values_list("status", flat=True)) == {"delivered"}

    hook_secret_rotate(hook=hook)  # the header now carries two v1: the new secret's, then the old
    changes("m-node", 1, start=2)
    run_until(settled)
    assert receiver.lines(3)[2]["ok"] is True

    body = b'{"id": "x", "type": "roster.change"}'
    now = int(time.time())
    assert receiver.post(body, sign(secret, body, now)) == 200
    assert receiver.post(body + b" ", sign(secret, body, now)) == 401  # changed on the way
    assert receiver.post(body, sign("whsec_other", body, now)) == 401
    assert receiver.post(body, sign(secret, body, now - 3600)) == 401  # replayed an hour later
    assert [line["ok"] for line in receiver.lines(7)[3:]] == [True, False, False, False]
