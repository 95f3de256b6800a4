"""The local SQS endpoint (roster.local_sqs): moto with a cheaper clock keeps SQS's timing."""

from __future__ import annotations

import datetime
import time
import uuid
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from roster import local_sqs
from tests.conftest import queue_depth


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


@pytest.mark.once
def test_a_send_reads_the_same_content_based_deduplication_as_moto_derives():
    from moto.sqs import models

    account, region = "123456789012", "us-east-1"
    queues = [
        models.Queue("plain", region=region, account_id=account),
        models.Queue("a.fifo", region=region, account_id=account, FifoQueue="true"),
        models.Queue(
            "b.fifo", region=region, account_id=account, FifoQueue="true", ContentBasedDeduplication="true"
        ),
    ]
    for queue in queues:
        every = models.Queue.attributes.fget(queue)  # moto's own derivation
        assert local_sqs.send_attributes(queue) == (
            {"ContentBasedDeduplication": every["ContentBasedDeduplication"]} if queue.fifo_queue else {}
        )
    assert [local_sqs.send_attributes(q).get("ContentBasedDeduplication") for q in queues] == [
        None,
        "false",
        "true",
    ]


@pytest.mark.once
def test_fifo_deduplication_and_its_rules_hold_over_http(sqs):
    """The send path reads ContentBasedDeduplication through the patch: its three outcomes."""
    name = f"roster-test-{uuid.uuid4().hex[:12]}"
    by_content = sqs.create_queue(
        QueueName=f"{name}-c.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    by_id = sqs.create_queue(QueueName=f"{name}-i.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    try:
        for _ in range(2):
            sqs.send_message(QueueUrl=by_content, MessageBody="same", MessageGroupId="g")
        received = sqs.receive_message(QueueUrl=by_content, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        assert [m["Body"] for m in received["Messages"]] == ["same"]  # deduplicated by content
        with pytest.raises(ClientError) as refused:
            sqs.send_message(QueueUrl=by_id, MessageBody="no id", MessageGroupId="g")
        assert "MessageDeduplicationId" in str(refused.value) or "ContentBasedDeduplication" in str(
            refused.value
        )
        for _ in range(2):
            sqs.send_message(QueueUrl=by_id, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d")
        received = sqs.receive_message(QueueUrl=by_id, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        assert len(received["Messages"]) == 1  # deduplicated by id
    finally:
        for url in (by_content, by_id):
            sqs.delete_queue(QueueUrl=url)


@pytest.mark.once
def test_receipt_handles_are_185_lowercase_letters_and_differ():
    handles = {local_sqs.receipt_handle() for _ in range(50)}
    assert len(handles) == 50
    assert all(len(h) == 185 and h.isascii() and h.isalpha() and h.islower() for h in handles)


@pytest.mark.once
def test_deletes_keep_moto_rules_over_http(sqs, make_queue):
    """Current and earlier receipt handles delete, a repeat is accepted, a wrong one is refused."""
    queue = make_queue()
    for body in ("a", "b", "c"):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    first = sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=1
    )
    by_body = {m["Body"]: m["ReceiptHandle"] for m in first["Messages"]}
    assert sorted(by_body) == ["a", "b", "c"]
    time.sleep(1.2)
    again = sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=30
    )
    assert sorted(m["Body"] for m in again["Messages"]) == ["a", "b", "c"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=by_body["a"])  # an earlier handle of "a"
    current_b = next(m["ReceiptHandle"] for m in again["Messages"] if m["Body"] == "b")
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=current_b)
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=current_b)  # again: accepted, as on SQS
    with pytest.raises(ClientError) as refused:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle="not-a-handle")
    assert refused.value.response["Error"]["Code"] in ("ReceiptHandleIsInvalid", "InvalidParameterValue")
    assert queue_depth(sqs, queue) == (0, 1)  # only "c" is left, in flight
