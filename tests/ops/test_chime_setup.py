"""chime_setup: the policy builders (pure), and policy --apply / eventbridge-rule / check against a
moto server over HTTP (SQS, SNS and EventBridge on the same port)."""

from __future__ import annotations

import io
import json
import uuid

import boto3
import pytest
from django.core.management import CommandError, call_command

from roster.domain.events import Rejection, event_parse
from roster.ingest import IncomingMessage, messages_ingest
from roster.models import Quarantine, QueueSource
from roster.ops import aws_setup
from roster.ops.aws_setup import (
    eventbridge_pattern,
    kms_statements_chime,
    policy_grant,
    policy_merge,
    queue_policy_chime,
    queue_policy_eventbridge,
    reconcile_policy,
    topic_policy_chime,
)

ACCOUNT = "111122223333"
QUEUE_ARN = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:chime-events"
TOPIC_ARN = f"arn:aws:sns:eu-west-1:{ACCOUNT}:chime-topic"
RULE_ARN = f"arn:aws:events:eu-west-1:{ACCOUNT}:rule/chime-roster-events"
CHIME_CONDITIONS = {
    "ArnLike": {"aws:SourceArn": f"arn:aws:chime:*:{ACCOUNT}:*"},
    "StringEquals": {"aws:SourceAccount": ACCOUNT},
}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("chime_setup", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# --- pure: the documents -------------------------------------------------------------------


def test_queue_policy_for_chime_is_the_documented_one():
    assert queue_policy_chime(QUEUE_ARN, ACCOUNT) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ChimeRosterChimeSendMessage",
                "Effect": "Allow",
                "Principal": {"Service": "meetings.chime.amazonaws.com"},
                "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
                "Resource": QUEUE_ARN,
                "Condition": CHIME_CONDITIONS,
            }
        ],
    }
    source = f"arn:aws:chime:us-east-1:{ACCOUNT}:meeting/*"
    condition = queue_policy_chime(QUEUE_ARN, ACCOUNT, source_arn=source)["Statement"][0]["Condition"]
    assert condition == {"ArnLike": {"aws:SourceArn": source}, "StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_topic_policy_and_kms_statements_for_chime():
    assert topic_policy_chime(TOPIC_ARN, ACCOUNT)["Statement"] == [
        {
            "Sid": "ChimeRosterChimePublish",
            "Effect": "Allow",
            "Principal": {"Service": "meetings.chime.amazonaws.com"},
            "Action": "SNS:Publish",
            "Resource": TOPIC_ARN,
            "Condition": CHIME_CONDITIONS,
        }
    ]
    assert kms_statements_chime(ACCOUNT) == [
        {
            "Sid": "ChimeRosterChimeKms",
            "Effect": "Allow",
            "Principal": {"Service": "meetings.chime.amazonaws.com"},
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": "*",
            "Condition": CHIME_CONDITIONS,
        }
    ]


def test_eventbridge_pattern_and_queue_policy():
    assert eventbridge_pattern() == {
        "source": ["aws.chime"],
        "detail-type": [
            "Chime Meeting State Change",
            "Chime Media Pipeline State Change",
            "Chime VoiceConnector Streaming Status",
        ],
    }
    assert queue_policy_eventbridge(QUEUE_ARN, RULE_ARN) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ChimeRosterEventBridgechimerosterevents",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": QUEUE_ARN,
                "Condition": {"ArnEquals": {"aws:SourceArn": RULE_ARN}},
            }
        ],
    }


def test_partition_follows_the_arn():
    gov = "arn:aws-us-gov:sqs:us-gov-west-1:111122223333:q"
    condition = queue_policy_chime(gov, ACCOUNT)["Statement"][0]["Condition"]
    assert condition["ArnLike"]["aws:SourceArn"] == f"arn:aws-us-gov:chime:*:{ACCOUNT}:*"


@pytest.mark.parametrize(
    "call",
    [
        lambda: queue_policy_chime("chime-events", ACCOUNT),
        lambda: queue_policy_chime(TOPIC_ARN, ACCOUNT),
        lambda: queue_policy_chime(QUEUE_ARN, "12345"),
        lambda: topic_policy_chime(QUEUE_ARN, ACCOUNT),
        lambda: kms_statements_chime(ACCOUNT, source_arn="meeting/*"),
        lambda: queue_policy_eventbridge(QUEUE_ARN, TOPIC_ARN),
    ],
)
def test_bad_arns_and_accounts_are_refused(call):
    with pytest.raises(ValueError):
        call()


def test_merge_adds_by_sid_keeps_the_rest_and_is_idempotent():
    existing = {
        "Version": "2012-10-17",
        "Id": "mine",
        "Statement": {"Sid": "Owner", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}},
    }
    once = policy_merge(json.dumps(existing), queue_policy_chime(QUEUE_ARN, ACCOUNT))
    assert once["Id"] == "mine"
    assert [s["Sid"] for s in once["Statement"]] == ["Owner", "ChimeRosterChimeSendMessage"]
    twice = policy_merge(once, queue_policy_chime(QUEUE_ARN, ACCOUNT))
    assert twice == once
    both = policy_merge(twice, queue_policy_eventbridge(QUEUE_ARN, RULE_ARN))
    assert policy_merge(both, queue_policy_eventbridge(QUEUE_ARN, RULE_ARN)) == both
    assert len(both["Statement"]) == 3
    # Same Sid, new content: replaced in place, not duplicated.
    other = queue_policy_chime(QUEUE_ARN, ACCOUNT, source_arn=f"arn:aws:chime:us-east-1:{ACCOUNT}:meeting/x")
    replaced = policy_merge(both, other)
    assert [s["Sid"] for s in replaced["Statement"]] == [s["Sid"] for s in both["Statement"]]
    assert replaced["Statement"][1] == other["Statement"][0]
    # Statements without a Sid are deduplicated by equality; nothing is mutated.
    anonymous = [{"Effect": "Allow", "Principal": "*", "Action": "sqs:GetQueueUrl"}]
    assert policy_merge(policy_merge(None, anonymous), anonymous)["Statement"] == anonymous
    assert existing["Statement"]["Sid"] == "Owner" and "Statement" in existing
    assert json.loads(json.dumps(replaced)) == replaced


def test_policy_grant_reads_principal_action_resource_and_conditions():
    chime = queue_policy_chime(QUEUE_ARN, ACCOUNT)
    grant = policy_grant(
        chime, service=aws_setup.CHIME_PRINCIPAL, action="sqs:SendMessage", resource=QUEUE_ARN
    )
    assert grant.allowed and grant.guarded
    assert grant.conditions == [f"aws:SourceArn arn:aws:chime:*:{ACCOUNT}:*", f"aws:SourceAccount {ACCOUNT}"]
    for service, action, resource in [
        (aws_setup.EVENTS_PRINCIPAL, "sqs:SendMessage", QUEUE_ARN),
        (aws_setup.CHIME_PRINCIPAL, "sqs:DeleteMessage", QUEUE_ARN),
        (aws_setup.CHIME_PRINCIPAL, "sqs:SendMessage", QUEUE_ARN + "-other"),
    ]:
        assert not policy_grant(chime, service=service, action=action, resource=resource).allowed
    assert not policy_grant(None, service=aws_setup.CHIME_PRINCIPAL, action="x", resource="y").allowed

    wide = {
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "SQS:*", "Resource": "arn:aws:sqs:*"}]
    }
    grant = policy_grant(wide, service=aws_setup.SNS_PRINCIPAL, action="sqs:SendMessage", resource=QUEUE_ARN)
    assert grant.allowed and grant.open_to_anyone and not grant.guarded
    deny = {"Sid": "No", "Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage", "Resource": "*"}
    denied = policy_merge(chime, [deny])
    grant = policy_grant(
        denied, service=aws_setup.CHIME_PRINCIPAL, action="sqs:SendMessage", resource=QUEUE_ARN
    )
    assert (grant.allowed, grant.denied_by) == (False, "No")

    events = queue_policy_eventbridge(QUEUE_ARN, RULE_ARN)
    grant = policy_grant(
        events, service=aws_setup.EVENTS_PRINCIPAL, action="sqs:SendMessage", resource=QUEUE_ARN
    )
    assert grant.covers({"aws:SourceArn": RULE_ARN})
    assert not grant.covers({"aws:SourceArn": RULE_ARN + "-other"})


def test_a_statement_whose_condition_is_no_object_allows_but_guards_nothing():
    statement = {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": QUEUE_ARN, "Condition": ["x"]}
    odd = {"Statement": [{**statement, "Principal": {"Service": aws_setup.CHIME_PRINCIPAL}}]}
    grant = policy_grant(odd, service=aws_setup.CHIME_PRINCIPAL, action="sqs:SendMessage", resource=QUEUE_ARN)
    assert grant.allowed and grant.conditions == [] and not grant.guarded  # it used to raise


def test_check_message_is_quarantined_as_wrong_source():
    rejection = event_parse(aws_setup.check_message_body())
    assert isinstance(rejection, Rejection)
    assert rejection.code == "wrong_source"
    assert "chime-roster.setup-check" in rejection.message


def test_policy_command_prints_valid_json():
    out = json.loads(
        run("policy", "--queue-arn", QUEUE_ARN, "--topic-arn", TOPIC_ARN, "--account", ACCOUNT, "--kms")
    )
    assert out == {
        "queue_policy": queue_policy_chime(QUEUE_ARN, ACCOUNT),
        "topic_policy": topic_policy_chime(TOPIC_ARN, ACCOUNT),
        "kms_key_policy_statements": kms_statements_chime(ACCOUNT),
    }
    assert list(json.loads(run("policy", "--queue-arn", QUEUE_ARN, "--account", ACCOUNT))) == ["queue_policy"]


def test_reconcile_policy_grants_the_two_calls_reconcile_makes_on_the_accounts_meetings():
    assert reconcile_policy(ACCOUNT) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ChimeRosterReconcile",
                "Effect": "Allow",
                "Action": ["chime:GetMeeting", "chime:ListAttendees"],
                "Resource": f"arn:aws:chime:*:{ACCOUNT}:meeting/*",
            }
        ],
    }
    # the calls roster.sources.reconcile makes, as IAM names them (chime: + the operation)
    service = boto3.session.Session().client("chime-sdk-meetings", region_name="us-east-1").meta.service_model
    assert {f"chime:{name}" for name in ("GetMeeting", "ListAttendees")} <= {
        f"chime:{name}" for name in service.operation_names
    }
    out = json.loads(run("policy", "--reconcile", "--account", ACCOUNT))
    assert out == {"reconcile_policy": reconcile_policy(ACCOUNT)}
    gov = "arn:aws-us-gov:sqs:us-gov-west-1:123456789012:chime-events"
    out = json.loads(run("policy", "--reconcile", "--queue-arn", gov, "--account", ACCOUNT))
    assert out["reconcile_policy"]["Statement"][0]["Resource"].startswith("arn:aws-us-gov:chime:*:")


@pytest.mark.parametrize(
    "args, message",
    [
        (["policy", "--account", ACCOUNT], "nothing to print"),
        (["policy", "--queue-arn", QUEUE_ARN, "--account", "nope"], "12-digit"),
        (["policy", "--queue-arn", "chime-events", "--account", ACCOUNT], "not an ARN"),
        (["policy", "--queue-arn", QUEUE_ARN], "--account"),
        (["eventbridge-rule", "--queue-arn", QUEUE_ARN, "--name", "bad name"], "rule name"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_command_errors(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


# --- against the moto server ---------------------------------------------------------------


@pytest.fixture
def aws(sqs_endpoint, monkeypatch):
    """SNS and EventBridge clients reach the same moto server (boto3 reads AWS_ENDPOINT_URL)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", sqs_endpoint)
    return sqs_endpoint


def queue_arn_of(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def queue_policy_of(sqs, url: str) -> dict:
    return json.loads(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"]
    )


def sids(policy: dict) -> list[str]:
    return [s.get("Sid") for s in policy["Statement"]]


@pytest.mark.sqs
def test_policy_apply_sets_queue_and_topic_policies(aws, sqs, make_queue):
    url = make_queue()
    arn = queue_arn_of(sqs, url)
    account = arn.split(":")[4]
    owner = {
        "Sid": "Owner",
        "Effect": "Allow",
        "Principal": {"AWS": account},
        "Action": "sqs:*",
        "Resource": arn,
    }
    sqs.set_queue_attributes(
        QueueUrl=url, Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": [owner]})}
    )
    sns = boto3.client("sns", region_name="us-east-1")
    topic = sns.create_topic(Name=f"roster-test-{uuid.uuid4().hex[:12]}")["TopicArn"]
    try:
        args = ("policy", "--queue-arn", arn, "--topic-arn", topic, "--account", account, "--apply")
        printed = json.loads(run(*args))
        queue_policy = queue_policy_of(sqs, url)
        assert queue_policy == printed["queue_policy"]
        assert queue_policy["Statement"] == [owner, *queue_policy_chime(arn, account)["Statement"]]
        topic_policy = json.loads(sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])
        assert topic_policy == printed["topic_policy"]
        assert topic_policy["Statement"][-1] == topic_policy_chime(topic, account)["Statement"][0]
        assert topic_policy["Statement"][0]["Sid"] == "__default_statement_ID"  # kept

        run(*args)  # again: nothing duplicated
        assert queue_policy_of(sqs, url) == queue_policy
        assert json.loads(sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"]) == topic_policy
    finally:
        sns.delete_topic(TopicArn=topic)


@pytest.mark.sqs
def test_policy_apply_to_a_missing_queue_fails(aws, sqs_endpoint):
    with pytest.raises(CommandError, match="queue arn:aws:sqs"):
        run(
            "policy",
            "--queue-arn",
            "arn:aws:sqs:us-east-1:123456789012:nope-x",
            "--account",
            ACCOUNT,
            "--apply",
        )


@pytest.mark.sqs
def test_eventbridge_rule_creates_rule_target_and_queue_policy(aws, sqs, make_queue):
    url = make_queue()
    arn = queue_arn_of(sqs, url)
    name = f"roster-test-{uuid.uuid4().hex[:12]}"
    events = boto3.client("events", region_name="us-east-1")
    try:
        printed = json.loads(run("eventbridge-rule", "--queue-arn", arn, "--name", name))
        rule = events.describe_rule(Name=name)
        assert rule["State"] == "ENABLED"
        assert json.loads(rule["EventPattern"]) == eventbridge_pattern()
        assert printed["rule_arn"] == rule["Arn"]
        targets = events.list_targets_by_rule(Rule=name)["Targets"]
        assert [(t["Id"], t["Arn"]) for t in targets] == [("chime-roster-queue", arn)]
        policy = queue_policy_of(sqs, url)
        assert policy["Statement"] == queue_policy_eventbridge(arn, rule["Arn"])["Statement"]
        statement = policy["Statement"][0]
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule["Arn"]}}

        run("eventbridge-rule", "--queue-arn", arn, "--name", name)  # idempotent
        assert queue_policy_of(sqs, url) == policy
        assert len(events.list_targets_by_rule(Rule=name)["Targets"]) == 1
    finally:
        events.remove_targets(Rule=name, Ids=["chime-roster-queue"])
        events.delete_rule(Name=name)


def check_output(*args: str) -> tuple[str, CommandError | None]:
    out = io.StringIO()
    try:
        call_command("chime_setup", "check", *args, stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def section(output: str, url: str) -> str:
    """The lines `check` printed for one queue."""
    lines = output.splitlines()
    start = lines.index(url)
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return "\n".join(lines[start:end])


@pytest.mark.sqs
@pytest.mark.django_db
def test_check_reports_reachable_policy_and_unreachable(aws, sqs, make_queue, settings, sqs_endpoint):
    good, bare = make_queue(), make_queue()
    arn = queue_arn_of(sqs, good)
    account = arn.split(":")[4]
    run("policy", "--queue-arn", arn, "--account", account, "--apply")
    missing = f"{sqs_endpoint}/123456789012/roster-missing-{uuid.uuid4().hex[:12]}"
    settings.SQS_QUEUE_URLS = [good]
    QueueSource.objects.create(url=bare)
    QueueSource.objects.create(url=missing)
    QueueSource.objects.create(url=f"{sqs_endpoint}/123456789012/disabled", enabled=False)

    output, error = check_output()
    ok = section(output, good)
    assert f"  reachable: yes ({arn})" in ok
    assert "  policy: OK" in ok
    assert (
        f"    Chime may send (aws:SourceArn arn:aws:chime:*:{account}:*; aws:SourceAccount {account})" in ok
    )
    assert "    EventBridge may not send" in ok
    assert "  messages: 0 waiting, 0 in flight, 0 delayed" in ok
    assert "  drain: no QueueSource row" in ok
    assert "  flowing: nothing stored from it in the last 60 min" in ok

    not_ok = section(output, bare)
    assert "  reachable: yes" in not_ok
    assert "  policy: NOT OK" in not_ok
    assert "problem: no queue policy" in not_ok
    assert "  drain: never polled, 0 received in all" in not_ok

    gone = section(output, missing)
    assert "  reachable: no (AWS.SimpleQueueService.NonExistentQueue" in gone
    assert "skipped: disabled in admin" in output
    assert error is not None
    assert str(error) == f"2 of 3 queues not OK: {bare} (policy), {missing} (unreachable)"

    output, error = check_output("--queue-url", good)
    assert error is None
    assert output.splitlines()[-1] == "checked 1 queue: OK"
    output, error = check_output("--queue-url", good, "--expect", "eventbridge")
    assert "problem: the policy does not let EventBridge send" in output
    assert error is not None


@pytest.mark.sqs
@pytest.mark.django_db
def test_check_flags_a_rule_the_policy_does_not_allow(aws, sqs, make_queue):
    url = make_queue()
    arn = queue_arn_of(sqs, url)
    account = arn.split(":")[4]
    name = f"roster-test-{uuid.uuid4().hex[:12]}"
    events = boto3.client("events", region_name="us-east-1")
    try:
        run("eventbridge-rule", "--queue-arn", arn, "--name", name)
        output, error = check_output("--queue-url", url, "--expect", "eventbridge")
        assert error is None, output
        assert f"    EventBridge rule {name} (ENABLED) targets it: allowed by the policy" in output

        # A policy written for Chime only (the EventBridge statement replaced): the rule is refused.
        sqs.set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": json.dumps(queue_policy_chime(arn, account))}
        )
        output, error = check_output("--queue-url", url)
        assert "  policy: NOT OK" in output
        assert f"    EventBridge rule {name} (ENABLED) targets it: NOT allowed by the policy" in output
        assert (
            f"problem: EventBridge rule {name} targets this queue but the policy does not let it send"
            in output
        )
        assert error is not None
    finally:
        events.remove_targets(Rule=name, Ids=["chime-roster-queue"])
        events.delete_rule(Name=name)


@pytest.mark.sqs
@pytest.mark.django_db
def test_check_send_test_message_is_quarantined_with_a_clear_reason(aws, sqs, make_queue):
    url = make_queue()
    arn = queue_arn_of(sqs, url)
    run("policy", "--queue-arn", arn, "--account", arn.split(":")[4], "--apply")
    QueueSource.objects.create(url=url)

    output, error = check_output("--send-test")
    assert error is None, output
    assert "  test message: sent (" in section(output, url)

    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert len(messages) == 1
    result = messages_ingest(
        messages=[IncomingMessage(body=m["Body"], queue=url, message_id=m["MessageId"]) for m in messages]
    )
    assert (result.received, result.quarantined) == (1, 1)
    quarantined = Quarantine.objects.get(queue=url)
    assert quarantined.reason_code == "wrong_source"
    assert "chime-roster.setup-check" in quarantined.reason

    output, _ = check_output("--queue-url", url)
    assert "  flowing: yes, 0 events and 1 quarantined stored from it in the last 60 min" in output
