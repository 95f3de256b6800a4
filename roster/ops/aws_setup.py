"""AWS set-up helpers: the policies that let Chime (and EventBridge) deliver to our queues.

Two layers:

- pure builders and readers (no I/O): the queue, topic and key policy statements from the Chime SDK
  documentation, the EventBridge rule's pattern, a merge that adds statements to an existing policy
  by ``Sid`` without duplicating, and a reader that tells whether a policy lets a service publish;
- thin boto3 functions that apply those policies, create the EventBridge rule and check a queue.

Clients: SQS uses ``settings.AWS_ENDPOINT_URL_SQS`` like the drain; SNS and EventBridge pass no
endpoint, so boto3 reads ``AWS_ENDPOINT_URL_SNS`` / ``AWS_ENDPOINT_URL_EVENTS`` /
``AWS_ENDPOINT_URL`` from the environment itself. Regions come from the ARNs (or queue URLs).
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from roster.domain.events import (
    CHIME_SOURCE,
    MEETING_DETAIL_TYPE,
    PIPELINE_DETAIL_TYPE,
    VOICE_CONNECTOR_DETAIL_TYPE,
)

POLICY_VERSION = "2012-10-17"
CHIME_PRINCIPAL = "meetings.chime.amazonaws.com"
EVENTS_PRINCIPAL = "events.amazonaws.com"
SNS_PRINCIPAL = "sns.amazonaws.com"

SID_QUEUE_CHIME = "ChimeRosterChimeSendMessage"
SID_TOPIC_CHIME = "ChimeRosterChimePublish"
SID_KMS_CHIME = "ChimeRosterChimeKms"
SID_RECONCILE = "ChimeRosterReconcile"
RECONCILE_ACTIONS = ["chime:GetMeeting", "chime:ListAttendees"]  # roster.sources.reconcile's calls
SID_EVENTBRIDGE_PREFIX = "ChimeRosterEventBridge"

DEFAULT_RULE_NAME = "chime-roster-events"
RULE_TARGET_ID = "chime-roster-queue"

# The marked message `check --send-test` sends. Its source is not aws.chime, so the ingest
# quarantines it as wrong_source ("source is 'chime-roster.setup-check', expected 'aws.chime'").
CHECK_SOURCE = "chime-roster.setup-check"
CHECK_DETAIL_TYPE = "chime-roster test message"

# Who may publish to a queue, by the name `check` reports: service principal.
PUBLISHERS = {"chime": CHIME_PRINCIPAL, "eventbridge": EVENTS_PRINCIPAL, "sns": SNS_PRINCIPAL}
PUBLISHER_LABELS = {"chime": "Chime", "eventbridge": "EventBridge", "sns": "SNS"}

AWS_ERRORS = (BotoCoreError, ClientError)  # a failed call; aws_error_text says what failed

_ACCOUNT = re.compile(r"^\d{12}$")
_SOURCE_KEYS = ("aws:sourcearn", "aws:sourceaccount")


# --- ARNs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arn:
    partition: str
    service: str
    region: str
    account: str
    resource: str


def arn_parse(arn: str, *, service: str | None = None) -> Arn:
    """Split an ARN; ValueError when it is not one (or not of ``service``)."""
    parts = arn.split(":", 5) if isinstance(arn, str) else []
    if len(parts) != 6 or parts[0] != "arn" or not all(parts[i] for i in (1, 2, 5)):
        raise ValueError(f"not an ARN: {arn!r}")
    parsed = Arn(*parts[1:])
    if service is not None and parsed.service != service:
        raise ValueError(f"not an {service} ARN: {arn!r}")
    if service in ("sqs", "sns") and not (parsed.region and _ACCOUNT.match(parsed.account)):
        raise ValueError(f"{service} ARN without region or 12-digit account: {arn!r}")
    return parsed


def account_check(account: str) -> str:
    if not isinstance(account, str) or not _ACCOUNT.match(account):
        raise ValueError(f"not a 12-digit AWS account id: {account!r}")
    return account


def _source_arn_check(source_arn: str | None) -> None:
    if source_arn is not None and not (isinstance(source_arn, str) and source_arn.startswith("arn:")):
        raise ValueError(f"--source-arn is not an ARN: {source_arn!r}")


# --- pure builders ---------------------------------------------------------------------------


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": POLICY_VERSION, "Statement": list(statements)}


def _chime_statement(
    sid: str, action: str | list[str], resource: str, account: str, source_arn: str | None, partition: str
) -> dict[str, Any]:
    """Chime may do ``action`` on ``resource``, with conditions against the confused deputy: only
    Chime acting for this account (or this resource)."""
    account_check(account)
    _source_arn_check(source_arn)
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"Service": CHIME_PRINCIPAL},
        "Action": action,
        "Resource": resource,
        "Condition": {
            "ArnLike": {"aws:SourceArn": source_arn or f"arn:{partition}:chime:*:{account}:*"},
            "StringEquals": {"aws:SourceAccount": account},
        },
    }


def queue_policy_chime(queue_arn: str, account: str, source_arn: str | None = None) -> dict[str, Any]:
    """The SQS queue policy that lets Chime SDK meetings send notifications to the queue."""
    partition = arn_parse(queue_arn, service="sqs").partition
    actions = ["sqs:SendMessage", "sqs:GetQueueUrl"]
    return _policy(_chime_statement(SID_QUEUE_CHIME, actions, queue_arn, account, source_arn, partition))


def topic_policy_chime(topic_arn: str, account: str, source_arn: str | None = None) -> dict[str, Any]:
    """The SNS topic policy that lets Chime SDK meetings publish notifications to the topic."""
    partition = arn_parse(topic_arn, service="sns").partition
    action = "SNS:Publish"
    return _policy(_chime_statement(SID_TOPIC_CHIME, action, topic_arn, account, source_arn, partition))


def kms_statements_chime(
    account: str, source_arn: str | None = None, *, partition: str = "aws"
) -> list[dict[str, Any]]:
    """Key policy statements for the KMS key of a queue (or topic) with SSE-KMS."""
    actions = ["kms:GenerateDataKey", "kms:Decrypt"]
    return [_chime_statement(SID_KMS_CHIME, actions, "*", account, source_arn, partition)]


def reconcile_policy(account: str, *, partition: str = "aws") -> dict[str, Any]:
    """The identity policy the roster's own role (the one its workers run as) needs for reconcile:
    GetMeeting and ListAttendees on the account's meetings in any region (a meeting lives in its
    control region, which reconcile learns from its events). Read-only: reconcile never changes a
    meeting."""
    account_check(account)
    return _policy(
        {
            "Sid": SID_RECONCILE,
            "Effect": "Allow",
            "Action": list(RECONCILE_ACTIONS),
            "Resource": f"arn:{partition}:chime:*:{account}:meeting/*",
        }
    )


def rule_sid(rule_arn: str) -> str:
    """One statement per rule, so several rules may feed one queue."""
    name = arn_parse(rule_arn, service="events").resource.rsplit("/", 1)[-1]
    return SID_EVENTBRIDGE_PREFIX + re.sub(r"[^A-Za-z0-9]", "", name)


def queue_policy_eventbridge(queue_arn: str, rule_arn: str) -> dict[str, Any]:
    """The SQS queue policy that lets one EventBridge rule deliver to the queue."""
    arn_parse(queue_arn, service="sqs")
    return _policy(
        {
            "Sid": rule_sid(rule_arn),
            "Effect": "Allow",
            "Principal": {"Service": EVENTS_PRINCIPAL},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
        }
    )


def eventbridge_pattern() -> dict[str, Any]:
    """The rule's event pattern: every Chime event type the roster reads."""
    return {
        "source": [CHIME_SOURCE],
        "detail-type": [MEETING_DETAIL_TYPE, PIPELINE_DETAIL_TYPE, VOICE_CONNECTOR_DETAIL_TYPE],
    }


def policy_load(policy: dict[str, Any] | str | None) -> dict[str, Any]:
    """A policy document as a dict with a list of statements ('' and None give an empty one)."""
    if policy is None or policy == "":
        return {"Version": POLICY_VERSION, "Statement": []}
    doc = json.loads(policy) if isinstance(policy, str) else copy.deepcopy(policy)
    if not isinstance(doc, dict):
        raise ValueError("a policy must be a JSON object")
    statements = doc.get("Statement", [])
    doc["Statement"] = [statements] if isinstance(statements, dict) else list(statements)
    doc.setdefault("Version", POLICY_VERSION)
    return doc


def policy_merge(
    existing: dict[str, Any] | str | None, additions: dict[str, Any] | list[dict[str, Any]]
) -> dict[str, Any]:
    """``existing`` with ``additions`` (statements, or a policy whose statements to take).

    A statement whose Sid is already there replaces it in place; one without a Sid is added
    unless an equal statement is there. Other statements, the Version and the Id are kept, so
    merging the same additions twice gives the same policy.
    """
    doc = policy_load(existing)
    new = policy_load(additions)["Statement"] if isinstance(additions, dict) else list(additions)
    statements = doc["Statement"]
    for statement in new:
        sid = statement.get("Sid")
        at = next(
            (i for i, old in enumerate(statements) if (sid and old.get("Sid") == sid) or old == statement),
            None,
        )
        if at is None:
            statements.append(copy.deepcopy(statement))
        else:
            statements[at] = copy.deepcopy(statement)
    return doc


# --- pure reader: does a policy let a service publish? --------------------------------------


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str, *, case: bool = True) -> bool:
    """IAM wildcards: ``*`` any run, ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _principal_open(principal: Any) -> bool:
    """``"*"`` or ``{"AWS": "*"}``: anyone."""
    return principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS")))


def _principal_matches(principal: Any, service: str) -> bool:
    if _principal_open(principal):
        return True
    if not isinstance(principal, dict):
        return False
    return service.lower() in [str(s).lower() for s in _as_list(principal.get("Service"))]


def _statement_applies(statement: dict[str, Any], *, service: str, action: str, resource: str) -> bool:
    if not _principal_matches(statement.get("Principal"), service):
        return False
    if not any(_wildcard(str(a), action, case=False) for a in _as_list(statement.get("Action"))):
        return False
    resources = _as_list(statement.get("Resource"))
    return not resources or any(_wildcard(str(r), resource) for r in resources)


def _conditions_allow(condition: Any, context: dict[str, str]) -> bool:
    """Whether the condition can hold for the known context keys (unknown keys: assume it can)."""
    if not isinstance(condition, dict):
        return True
    known = {key.lower(): value for key, value in context.items()}
    for operator, tests in condition.items():
        op = operator.removesuffix("IfExists")
        if op not in ("StringEquals", "StringLike", "ArnEquals", "ArnLike") or not isinstance(tests, dict):
            continue
        for key, values in tests.items():
            if key.lower() not in known:
                continue
            value = known[key.lower()]
            like = op.endswith("Like")
            if not any(_wildcard(str(v), value) if like else str(v) == value for v in _as_list(values)):
                return False
    return True


def _source_conditions(statement: dict[str, Any]) -> list[str]:
    """The source conditions an allowing statement names ([] for a Condition that is no object:
    it guards nothing we can read, as _conditions_allow assumes)."""
    condition = statement.get("Condition")
    found = []
    for tests in condition.values() if isinstance(condition, dict) else ():
        if isinstance(tests, dict):
            for key, values in tests.items():
                if key.lower() in _SOURCE_KEYS:
                    found.append(f"{key} {', '.join(str(v) for v in _as_list(values))}")
    return found


@dataclass(frozen=True)
class Grant:
    """What a policy says about one service publishing to one resource."""

    allowed: bool
    statements: tuple[dict[str, Any], ...] = ()
    denied_by: str = ""

    @property
    def conditions(self) -> list[str]:
        """aws:SourceArn / aws:SourceAccount conditions of the allowing statements."""
        return [text for statement in self.statements for text in _source_conditions(statement)]

    @property
    def guarded(self) -> bool:
        """Every allowing statement names the source (the confused-deputy guard)."""
        return all(_source_conditions(statement) for statement in self.statements)

    @property
    def open_to_anyone(self) -> bool:
        return any(_principal_open(statement.get("Principal")) for statement in self.statements)

    def covers(self, context: dict[str, str]) -> bool:
        """Whether some allowing statement's conditions can hold for ``context`` (e.g. a rule ARN)."""
        return self.allowed and any(_conditions_allow(s.get("Condition"), context) for s in self.statements)


def policy_grant(
    policy: dict[str, Any] | str | None,
    *,
    service: str,
    action: str,
    resource: str,
    context: dict[str, str] | None = None,
) -> Grant:
    """Whether ``policy`` lets the service principal do ``action`` on ``resource``.

    A reading of the policy, not IAM's evaluator: an Allow statement whose principal, action and
    resource match (wildcards included) allows, unless a Deny statement without conditions
    matches. Conditions are judged only for the keys in ``context``.
    """
    try:
        doc = policy_load(policy)
    except (ValueError, TypeError):
        return Grant(False)
    context = context or {}
    allowing = []
    for statement in doc["Statement"]:
        if not isinstance(statement, dict) or "NotPrincipal" in statement or "NotAction" in statement:
            continue
        if not _statement_applies(statement, service=service, action=action, resource=resource):
            continue
        if statement.get("Effect") == "Deny" and not statement.get("Condition"):
            return Grant(False, denied_by=statement.get("Sid") or "(a Deny statement)")
        if statement.get("Effect") == "Allow" and _conditions_allow(statement.get("Condition"), context):
            allowing.append(statement)
    return Grant(bool(allowing), tuple(allowing))


def check_message_body(*, now: datetime | None = None) -> str:
    """A marked test message: an envelope the ingest quarantines as wrong_source."""
    now = now or datetime.now(UTC)
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": CHECK_DETAIL_TYPE,
            "source": CHECK_SOURCE,
            "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resources": [],
            "detail": {
                "note": "sent by `manage.py chime_setup check --send-test`; quarantined on purpose",
                "sentAt": now.isoformat(),
            },
        }
    )


# --- boto3: apply, create the rule, check ----------------------------------------------------


class SetupError(Exception):
    """An AWS call failed or answered something unusable; the message says what."""


def aws_error_text(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    if error:
        return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def aws_client(service: str, region: str) -> Any:
    """A boto3 client; SQS honours settings.AWS_ENDPOINT_URL_SQS, the others boto3's own env vars."""
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=settings.AWS_ENDPOINT_URL_SQS if service == "sqs" else None,
        config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}),
    )


def queue_policy_apply(queue_arn: str, additions: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    """Merge ``additions`` into the queue's policy (SetQueueAttributes); returns the policy set."""
    arn = arn_parse(queue_arn, service="sqs")
    client = aws_client("sqs", arn.region)
    try:
        url = client.get_queue_url(QueueName=arn.resource, QueueOwnerAWSAccountId=arn.account)["QueueUrl"]
        current = client.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
        merged = policy_merge(current.get("Attributes", {}).get("Policy"), additions)
        client.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(merged)})
    except AWS_ERRORS as exc:
        raise SetupError(f"queue {queue_arn}: {aws_error_text(exc)}") from exc
    return merged


def topic_policy_apply(topic_arn: str, additions: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    """Merge ``additions`` into the topic's policy (SetTopicAttributes); returns the policy set."""
    arn = arn_parse(topic_arn, service="sns")
    client = aws_client("sns", arn.region)
    try:
        current = client.get_topic_attributes(TopicArn=topic_arn)["Attributes"].get("Policy")
        merged = policy_merge(current, additions)
        client.set_topic_attributes(
            TopicArn=topic_arn, AttributeName="Policy", AttributeValue=json.dumps(merged)
        )
    except AWS_ERRORS as exc:
        raise SetupError(f"topic {topic_arn}: {aws_error_text(exc)}") from exc
    return merged


_RULE_NAME = re.compile(r"^[.\-_A-Za-z0-9]{1,64}$")


def eventbridge_rule_create(queue_arn: str, *, name: str = DEFAULT_RULE_NAME) -> dict[str, Any]:
    """Create (or update) the rule on the default bus of the queue's region, with the queue as target.

    The queue policy statement for the rule is set before the target, so no event is refused in
    between. Re-running changes nothing that is already right.
    """
    arn = arn_parse(queue_arn, service="sqs")
    if not _RULE_NAME.match(name):
        raise ValueError(f"not a valid rule name (1-64 of A-Z a-z 0-9 . - _): {name!r}")
    events = aws_client("events", arn.region)
    pattern = eventbridge_pattern()
    target: dict[str, Any] = {"Id": RULE_TARGET_ID, "Arn": queue_arn}
    if arn.resource.endswith(".fifo"):
        target["SqsParameters"] = {"MessageGroupId": "chime-roster"}
    try:
        rule_arn = events.put_rule(
            Name=name,
            EventPattern=json.dumps(pattern),
            State="ENABLED",
            Description="Chime SDK events for chime-roster",
        )["RuleArn"]
    except AWS_ERRORS as exc:
        raise SetupError(f"rule {name}: {aws_error_text(exc)}") from exc
    policy = queue_policy_apply(queue_arn, queue_policy_eventbridge(queue_arn, rule_arn))
    try:
        response = events.put_targets(Rule=name, Targets=[target])
    except AWS_ERRORS as exc:
        raise SetupError(f"rule {name} target: {aws_error_text(exc)}") from exc
    if response.get("FailedEntryCount"):
        failed = response.get("FailedEntries", [{}])[0]
        raise SetupError(f"rule {name} target: {failed.get('ErrorCode')}: {failed.get('ErrorMessage')}")
    return {"rule_arn": rule_arn, "event_pattern": pattern, "target": target, "queue_policy": policy}


@dataclass
class RuleTarget:
    name: str
    arn: str
    state: str
    allowed: bool


@dataclass
class QueueCheck:
    """What `check` found about one queue (AWS only; the database side is the command's)."""

    url: str
    reachable: bool = False
    error: str = ""
    arn: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    rules: list[RuleTarget] = field(default_factory=list)
    rules_error: str = ""
    policy_problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Reachable, and no policy problem (an expected sender or a targeting rule refused)."""
        return self.reachable and not self.policy_problems


def _rules_targeting(region: str, queue_arn: str) -> list[tuple[str, str, str]]:
    events = aws_client("events", region)
    found = []
    for page in events.get_paginator("list_rule_names_by_target").paginate(TargetArn=queue_arn):
        for name in page.get("RuleNames", []):
            rule = events.describe_rule(Name=name)
            found.append((name, rule["Arn"], rule.get("State", "")))
    return found


def queue_check(url: str, *, expect: tuple[str, ...] | list[str] = ()) -> QueueCheck:
    """Reachable? Does its policy let Chime / EventBridge / SNS send, and every rule that targets it?"""
    from roster.sources.sqs import queue_region

    result = QueueCheck(url=url)
    region = queue_region(url)
    try:
        response = aws_client("sqs", region).get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    except AWS_ERRORS as exc:
        result.error = aws_error_text(exc)
        return result
    result.reachable = True
    attrs = result.attributes = response.get("Attributes", {})
    result.arn = attrs.get("QueueArn", "")
    policy = attrs.get("Policy")
    for name, principal in PUBLISHERS.items():
        result.grants[name] = policy_grant(
            policy, service=principal, action="sqs:SendMessage", resource=result.arn
        )
    if not policy:
        result.policy_problems.append("no queue policy: neither Chime nor EventBridge nor SNS may send")
    elif not any(grant.allowed for grant in result.grants.values()):
        result.policy_problems.append("the policy lets neither Chime nor EventBridge nor SNS send")
    for name in expect:
        if not result.grants[name].allowed:
            result.policy_problems.append(f"the policy does not let {PUBLISHER_LABELS[name]} send")
    chime = result.grants["chime"]
    if chime.allowed and not chime.guarded:
        result.warnings.append(
            "Chime may send without an aws:SourceArn/aws:SourceAccount condition (confused deputy)"
        )
    if any(grant.open_to_anyone for grant in result.grants.values()):
        result.warnings.append("the policy lets anyone send (Principal *)")
    if attrs.get("KmsMasterKeyId"):
        result.warnings.append(
            f"SSE-KMS with key {attrs['KmsMasterKeyId']}: its key policy must let the senders use it "
            "(`chime_setup policy --kms` prints Chime's statements)"
        )
    if result.arn:
        try:
            rules = _rules_targeting(arn_parse(result.arn).region or region, result.arn)
        except (*AWS_ERRORS, ValueError) as exc:
            result.rules_error = aws_error_text(exc)
            rules = []
        for name, rule_arn, state in rules:
            context = {"aws:SourceArn": rule_arn, "aws:SourceAccount": arn_parse(rule_arn).account}
            allowed = result.grants["eventbridge"].covers(context)
            result.rules.append(RuleTarget(name, rule_arn, state, allowed))
            if not allowed:
                result.policy_problems.append(
                    f"EventBridge rule {name} targets this queue but the policy does not let it send"
                )
    return result


def check_message_send(url: str) -> str:
    """Send the marked test message; returns its MessageId."""
    from roster.sources.sqs import queue_region

    extra: dict[str, str] = {}
    if url.endswith(".fifo"):
        extra = {"MessageGroupId": "chime-roster-check", "MessageDeduplicationId": uuid.uuid4().hex}
    try:
        return aws_client("sqs", queue_region(url)).send_message(
            QueueUrl=url,
            MessageBody=check_message_body(),
            MessageAttributes={"chime-roster-test": {"DataType": "String", "StringValue": "1"}},
            **extra,
        )["MessageId"]
    except AWS_ERRORS as exc:
        raise SetupError(f"test message to {url}: {aws_error_text(exc)}") from exc
