"""The local SQS endpoint of the tests, the demo and the benchmarks: moto's server, clock made cheap.

There is no AWS here, so an SQS endpoint on loopback stands in for it. moto's SQS reads its clock
through ``moto.core.utils.unix_time``, which builds two ``datetime`` objects per call, and calls
it for every message of the queue several times per request (every received message re-derives
all the queue's attributes, each a walk over every message). With 100 messages waiting, moto
spent 6.8 ms of CPU per message sent, received and deleted, against 1.3 ms on an empty queue, so
any backlog made the stand-in, not chime-roster, the bottleneck of every measurement through it.

Here the clock helpers give the same value from ``time.time()``, and the retention check reads
the one attribute it needs; every SQS behaviour is still moto's own (1.0 ms of CPU per message
with 100 waiting). Run it like ``moto_server``: ``python -m roster.local_sqs -H 127.0.0.1 -p 5000``.
"""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def server_command(*, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that starts this endpoint with the running interpreter (run in ROOT)."""
    return [sys.executable, "-m", "roster.local_sqs", "-H", host, "-p", str(port)]


def clock_patch() -> None:
    """Give moto's SQS the cheap clock (in the modules that imported the helpers by name too)."""
    from moto.core import utils
    from moto.sqs import models as sqs_models

    unix_time_of = utils.unix_time

    def unix_time(dt: datetime.datetime | None = None) -> float:
        """Seconds since the epoch, as moto's helper gives them (of a naive UTC ``dt``, or now)."""
        return time.time() if dt is None else unix_time_of(dt)

    def unix_time_millis(dt: datetime.datetime | None = None) -> float:
        return unix_time(dt) * 1000.0

    for module in (utils, sqs_models):
        module.unix_time = unix_time
        module.unix_time_millis = unix_time_millis


def retention_patch() -> None:
    """Check a received message's retention from the one attribute it needs.

    moto reads MessageRetentionPeriod through ``get_queue_attributes``, which derives every
    attribute of the queue three times over (each a walk over all its messages), per message.
    """
    from moto.sqs import models as sqs_models

    def is_message_valid_based_on_retention_period(self, queue_name: str, message) -> bool:  # noqa: ANN001
        retention_period = self.get_queue(queue_name).message_retention_period
        return retention_period + message.sent_timestamp / 1000 > sqs_models.unix_time()

    sqs_models.SQSBackend.is_message_valid_based_on_retention_period = (
        is_message_valid_based_on_retention_period
    )


def server_patch() -> None:
    """Per request, list moto's service modules once (not from the disk) and write no access log
    line. (Werkzeug closes every connection, so keep-alive is not on offer.)"""
    import functools
    import logging

    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = functools.cache(lambda: modules)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    from moto import server

    clock_patch()
    retention_patch()
    server_patch()
    server.main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
