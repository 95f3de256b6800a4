"""The local SQS endpoint (roster.dev.local_sqs): moto with a cheaper clock keeps SQS's timing."""

from __future__ import annotations

import datetime
import time
import uuid
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from roster.dev import local_sqs
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


@pytest.mark.once
def test_dispatch_patch_keeps_motos_answers_and_works_them_out_once(monkeypatch):
    from moto.core import responses
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from moto.sqs.responses import SQSResponse

    monkeypatch.setattr(responses, "method_names_from_class", responses.method_names_from_class)
    monkeypatch.setattr(
        DomainDispatcherApplication, "get_backend_for_host", DomainDispatcherApplication.get_backend_for_host
    )
    hosts = [
        "sqs.us-east-1.amazonaws.com",
        "sqs.eu-west-1.amazonaws.com",
        "sqs",
        "moto_api",
        None,
        "x.example",
    ]
    before_names = responses.method_names_from_class(SQSResponse)
    before_hosts = [DomainDispatcherApplication(create_backend_app).get_backend_for_host(h) for h in hosts]
    assert before_hosts[:4] == ["sqs", "sqs", "sqs", "moto_api"]

    local_sqs.dispatch_patch()
    assert responses.method_names_from_class(SQSResponse) == before_names
    assert responses.method_names_from_class(SQSResponse) is responses.method_names_from_class(SQSResponse)
    app = DomainDispatcherApplication(create_backend_app)
    assert [app.get_backend_for_host(h) for h in hosts] == before_hosts
    assert [app.get_backend_for_host(h) for h in hosts] == before_hosts  # from the cache
    assert set(app._backend_by_host) == set(hosts)


@pytest.mark.once
def test_direct_json_answers_equal_what_motos_serializer_writes(monkeypatch):
    """Every answer json_answer writes, for standard and FIFO queues, with and without failures,
    equals moto's own serialisation of the same result; one with MessageAttributes is left to moto."""
    import json
    from collections import Counter

    import boto3
    from moto import mock_aws
    from moto.core.responses import ActionResult

    compared: list[tuple[str, tuple, tuple]] = []
    left_to_moto: list[str] = []
    serialize = ActionResult.execute_result

    def both(self, context):  # noqa: ANN001, ANN202
        direct = local_sqs.json_answer(self.result, context)  # first: as the patch calls it
        expected = serialize(self, context)
        if direct is None:
            left_to_moto.append(context.operation_model.name)
        else:  # copies: moto adds its common headers to the returned dict afterwards
            compared.append(
                (context.operation_model.name, (*expected[:1], dict(expected[1]), expected[2]), direct)
            )
        return expected

    monkeypatch.setattr(ActionResult, "execute_result", both)
    for name in ("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"):  # in process, not the session's server
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        plain = sqs.create_queue(QueueName="plain")["QueueUrl"]
        fifo = sqs.create_queue(QueueName="q.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        sent = sqs.send_message_batch(
            QueueUrl=plain,
            Entries=[
                {"Id": "a", "MessageBody": '{"x": "é<&>"}'},
                {"Id": "b", "MessageBody": "two", "DelaySeconds": 0},
                {"Id": "late", "MessageBody": "never", "DelaySeconds": 901},  # refused: Failed
            ],
        )
        assert [entry["Id"] for entry in sent["Failed"]] == ["late"]
        sqs.send_message_batch(
            QueueUrl=fifo,
            Entries=[
                {
                    "Id": str(i),
                    "MessageBody": f"f{i}",
                    "MessageGroupId": "g",
                    "MessageDeduplicationId": f"d{i}",
                }
                for i in range(3)
            ],
        )
        got = sqs.receive_message(
            QueueUrl=plain, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageSystemAttributeNames=["All"]
        )["Messages"]
        fifo_got = sqs.receive_message(
            QueueUrl=fifo,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp", "SequenceNumber"],
        )["Messages"]
        assert sqs.receive_message(QueueUrl=plain, WaitTimeSeconds=0).get("Messages", []) == []
        deleted = sqs.delete_message_batch(
            QueueUrl=plain,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
            + [{"Id": "wrong", "ReceiptHandle": "not-a-handle"}],
        )
        assert [entry["Id"] for entry in deleted["Failed"]] == ["wrong"]
        sqs.delete_message_batch(
            QueueUrl=fifo,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(fifo_got)],
        )
        sqs.send_message(
            QueueUrl=plain,
            MessageBody="with attributes",
            MessageAttributes={"k": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}},
        )
        (with_attributes,) = sqs.receive_message(
            QueueUrl=plain, WaitTimeSeconds=0, MessageAttributeNames=["All"]
        )["Messages"]
        assert with_attributes["MessageAttributes"]["k"]["BinaryValue"] == b"\x00\x01"

    assert Counter(name for name, _, _ in compared) == {
        "SendMessageBatch": 2,
        "ReceiveMessage": 3,
        "DeleteMessageBatch": 2,
    }
    assert "ReceiveMessage" in left_to_moto  # the one with MessageAttributes
    for name, (status, headers, body), (direct_status, direct_headers, direct_body) in compared:
        assert (direct_status, direct_headers) == (status, headers), name
        assert json.loads(direct_body) == json.loads(body), name
