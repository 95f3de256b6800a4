"""The local SQS endpoint (roster.local_sqs): moto with a cheaper clock keeps SQS's timing."""

from __future__ import annotations

import datetime
import time
from types import SimpleNamespace

import pytest

from roster import local_sqs


@pytest.mark.once
def test_clock_patch_gives_moto_the_same_times(monkeypatch):
    from moto.core import utils
    from moto.sqs import models

    original = utils.unix_time
    for module in (utils, models):
        for name in ("unix_time", "unix_time_millis"):
            monkeypatch.setattr(module, name, getattr(module, name))  # put back after the test
    local_sqs.clock_patch()
    assert models.unix_time is not original
    assert abs(models.unix_time() - original()) < 0.05
    assert abs(models.unix_time_millis() / 1000 - original()) < 0.05
    # A given (naive UTC) datetime still goes through moto's own conversion.
    assert models.unix_time(datetime.datetime(2020, 1, 1)) == 1577836800.0
    assert models.unix_time_millis(datetime.datetime(2020, 1, 1, 0, 0, 1)) == 1577836801000.0


@pytest.mark.once
def test_retention_patch_keeps_the_retention_rule(monkeypatch):
    from moto.sqs import models

    monkeypatch.setattr(
        models.SQSBackend,
        "is_message_valid_based_on_retention_period",
        models.SQSBackend.is_message_valid_based_on_retention_period,
    )
    local_sqs.retention_patch()
    backend = SimpleNamespace(get_queue=lambda name: SimpleNamespace(message_retention_period=60))
    check = models.SQSBackend.is_message_valid_based_on_retention_period
    assert check(backend, "q", SimpleNamespace(sent_timestamp=(time.time() - 58) * 1000)) is True
    assert check(backend, "q", SimpleNamespace(sent_timestamp=(time.time() - 61) * 1000)) is False


@pytest.mark.once
def test_the_endpoint_keeps_delays_and_visibility_timeouts(sqs, make_queue):
    """Timing is what the patch touches: a delayed message and a lapsed receive behave as on SQS."""
    queue = make_queue()
    sqs.send_message(QueueUrl=queue, MessageBody="later", DelaySeconds=1)
    assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages", []) == []
    time.sleep(1.2)
    (first,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0, VisibilityTimeout=1)["Messages"]
    assert first["Body"] == "later"
    assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages", []) == []
    time.sleep(1.2)
    (again,) = sqs.receive_message(
        QueueUrl=queue, WaitTimeSeconds=0, MessageSystemAttributeNames=["ApproximateReceiveCount"]
    )["Messages"]
    assert again["MessageId"] == first["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
