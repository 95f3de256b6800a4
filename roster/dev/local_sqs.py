"""The local SQS endpoint of the tests, the demo and the benchmarks: moto's server, clock made cheap.

There is no AWS here, so an SQS endpoint on loopback stands in for it. moto's SQS reads its clock
through ``moto.core.utils.unix_time``, which builds two ``datetime`` objects per call, and calls
it for every message of the queue several times per request (every received message re-derives
all the queue's attributes, each a walk over every message). With 100 messages waiting, moto
spent 6.8 ms of CPU per message sent, received and deleted, against 1.3 ms on an empty queue, so
any backlog made the stand-in, not chime-roster, the bottleneck of every measurement through it.

Here the clock helpers give the same value from ``time.time()``, the retention check reads the
one attribute it needs, a sent message reads its queue's ContentBasedDeduplication without
deriving every other attribute, a delete walks the queue once, and a receipt handle is drawn in
one call; per request, moto finds the handler's methods and the backend of a host once, and the
answers of the three calls of every drained batch (SendMessageBatch, ReceiveMessage,
DeleteMessageBatch) are written as JSON directly, the same JSON moto's generic serializer writes
by walking botocore's model (about a fifth of the endpoint's CPU). Every SQS behaviour is still moto's
own. Run it like ``moto_server``:
``python -m roster.dev.local_sqs -H 127.0.0.1 -p 5000``.
"""

from __future__ import annotations

import datetime
import functools
import json
import string
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def server_command(*, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that starts this endpoint with the running interpreter (run in ROOT)."""
    return [sys.executable, "-m", "roster.dev.local_sqs", "-H", host, "-p", str(port)]


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


def send_attributes(queue) -> dict:  # noqa: ANN001 - a moto Queue
    """The one attribute a send reads, ContentBasedDeduplication (FIFO queues only), as moto
    derives it (a bool becomes "true"/"false")."""
    if not queue.fifo_queue:
        return {}
    value = queue.content_based_deduplication
    return {"ContentBasedDeduplication": str(value).lower() if isinstance(value, bool) else value}


def send_patch() -> None:
    """Sending a message reads one queue attribute, so derive only that one.

    moto's ``send_message`` (and the FIFO checks it calls) ask ``queue.attributes`` for
    ContentBasedDeduplication, and that property derives every attribute, three of them by
    walking all the queue's messages: per message sent, a cost that grows with the backlog.
    While a send runs on a thread, the property gives :func:`send_attributes`.
    """
    from moto.sqs import models as sqs_models

    every_attribute = sqs_models.Queue.attributes.fget
    sending = threading.local()

    def attributes(queue) -> dict:  # noqa: ANN001
        return send_attributes(queue) if getattr(sending, "active", False) else every_attribute(queue)

    original_send = sqs_models.SQSBackend.send_message

    @functools.wraps(original_send)
    def send_message(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        sending.active = True
        try:
            return original_send(self, *args, **kwargs)
        finally:
            sending.active = False

    sqs_models.Queue.attributes = property(attributes)
    sqs_models.SQSBackend.send_message = send_message


def receipt_handle() -> str:
    """185 lowercase letters, as moto draws them (from its seedable random), in one call."""
    from moto.sqs import utils as sqs_utils

    return "".join(sqs_utils.random.choices(string.ascii_lowercase, k=185))


def delete_patch() -> None:
    """Delete in one walk over the queue, and draw a receipt handle in one call.

    moto walks every message twice per deleted receipt handle, building a list of each one's
    handles at every step, and draws a handle's 185 letters with one ``choice`` call each.
    """
    from moto.sqs import models as sqs_models
    from moto.sqs import utils as sqs_utils
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    def delete_message(self, receipt_handle: str) -> None:  # noqa: ANN001
        if receipt_handle in self.deleted_messages:
            return  # already deleted: SQS accepts it again
        messages = self._messages
        index = next(
            (
                i
                for i, message in enumerate(messages)
                if receipt_handle == message.receipt_handle or receipt_handle in message._old_receipt_handles
            ),
            None,
        )
        if index is None:
            raise ReceiptHandleIsInvalid()
        message = messages[index]
        self.pending_messages.discard(message)
        self.deleted_messages.update(message.all_receipt_handles)
        self._messages = messages[:index] + messages[index + 1 :]  # a new list, as moto makes

    sqs_models.Queue.delete_message = delete_message
    for module in (sqs_utils, sqs_models):
        module.generate_receipt_handle = receipt_handle


def dispatch_patch() -> None:
    """Per request, moto lists its handler class's methods (``inspect.getmembers``) and matches
    the host against every service's URL patterns; both answers are fixed, so keep them."""
    from moto.core import responses
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    responses.method_names_from_class = functools.cache(responses.method_names_from_class)
    backend_for_host = DomainDispatcherApplication.get_backend_for_host

    @functools.wraps(backend_for_host)
    def get_backend_for_host(self, host):  # noqa: ANN001, ANN202
        known = self.__dict__.setdefault("_backend_by_host", {})
        if host not in known:
            known[host] = backend_for_host(self, host)
        return known[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host


# The answers serialised directly: plain dicts of strings, numbers, booleans and lists, named as
# botocore's model names them, so the model walk changes nothing. MessageAttributes (whose binary
# values the model would encode) and anything else go through moto's serializer.
DIRECT_JSON_OPERATIONS = frozenset({"SendMessageBatch", "ReceiveMessage", "DeleteMessageBatch"})
_PLAIN = (str, int, bool)


def _plain(value: object) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def json_answer(result: object, context) -> tuple[int, dict, str] | None:  # noqa: ANN001 - ActionContext
    """(status, headers, body) of an SQS JSON-protocol answer, as moto's serializer writes it, or
    None when ``result`` is not one this writes (moto's serializer does it then)."""
    from moto import settings
    from moto.core.serialize import BaseJSONSerializer

    operation = context.operation_model
    if (
        operation.name not in DIRECT_JSON_OPERATIONS
        or context.service_model.service_name != "sqs"
        or not issubclass(context.serializer_class, BaseJSONSerializer)
        or settings.PRETTIFY_RESPONSES
        or not isinstance(result, dict)
        or any(key not in operation.output_shape.members for key in result)
        or any("MessageAttributes" in message for message in result.get("Messages", ()))
        or not _plain(result)
    ):
        return None
    version = context.service_model.metadata.get("jsonVersion", "1.0")
    headers = {"Content-Type": f"application/x-amz-json-{version}"}
    return operation.http.get("responseCode", 200), headers, json.dumps(result)


def serializer_patch() -> None:
    """Write the drain's three answers as JSON directly (:func:`json_answer`)."""
    from moto.core.responses import ActionResult

    serialize = ActionResult.execute_result

    @functools.wraps(serialize)
    def execute_result(self, context):  # noqa: ANN001, ANN202
        direct = json_answer(self.result, context)
        return serialize(self, context) if direct is None else direct

    ActionResult.execute_result = execute_result


def server_patch() -> None:
    """Per request, list moto's service modules once (not from the disk) and write no access log
    line. (Werkzeug closes every connection, so keep-alive is not on offer.)"""
    import logging

    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = functools.cache(lambda: modules)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    from moto import server

    clock_patch()
    retention_patch()
    send_patch()
    delete_patch()
    dispatch_patch()
    serializer_patch()
    server_patch()
    server.main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
