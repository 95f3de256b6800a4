"""AWS set-up helpers: policies for Chime, the EventBridge rule, and a check of the configured queues.

    manage.py chime_setup policy --queue-arn ARN --account ID [--source-arn ARN]
                                 [--topic-arn ARN] [--kms] [--reconcile] [--apply]
    manage.py chime_setup eventbridge-rule --queue-arn ARN [--name NAME]
    manage.py chime_setup check [--queue-url URL ...] [--expect chime|eventbridge|sns ...] [--send-test]

Policies are printed as one JSON object on stdout; notes go to stderr. Failures exit non-zero.
"""

from __future__ import annotations

import json
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from roster.ops import aws_setup
from roster.read.selectors import queue_activity_get, queue_urls_configured

STALE_POLL = timedelta(minutes=5)


class Command(BaseCommand):
    help = "AWS set-up helpers for Chime: queue/topic/key policies, the EventBridge rule, and a check."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(
            dest="subcommand", required=True, metavar="{policy,eventbridge-rule,check}"
        )

        policy = sub.add_parser(
            "policy",
            help="print (and with --apply set) the policies that let Chime publish",
            description="Prints one JSON object: queue_policy, topic_policy, kms_key_policy_statements, "
            "reconcile_policy (those asked for). --apply merges the queue's and topic's policies by Sid.",
        )
        policy.add_argument("--queue-arn", metavar="ARN", help="the SQS queue Chime sends to")
        policy.add_argument("--topic-arn", metavar="ARN", help="the SNS topic Chime publishes to")
        policy.add_argument("--account", required=True, metavar="ID", help="the AWS account of the meetings")
        policy.add_argument(
            "--source-arn",
            metavar="ARN",
            help="aws:SourceArn to allow (default arn:aws:chime:*:ACCOUNT:*: any Chime resource of ACCOUNT)",
        )
        policy.add_argument("--kms", action="store_true", help="also the key policy statements for SSE-KMS")
        policy.add_argument(
            "--reconcile",
            action="store_true",
            help="also the identity policy the roster's role needs for reconcile (chime:GetMeeting, "
            "chime:ListAttendees); attach it to the role or user the workers run as",
        )
        policy.add_argument(
            "--apply",
            action="store_true",
            help="set them with SetQueueAttributes / SetTopicAttributes (key policies are left to you)",
        )

        rule = sub.add_parser(
            "eventbridge-rule",
            help="create the EventBridge rule for Chime events with the queue as target",
            description="Creates (or updates) a rule on the default bus of the queue's region matching "
            "source aws.chime and the three Chime detail-types, adds the queue policy statement "
            "EventBridge needs, then the target. Prints the result as JSON.",
        )
        rule.add_argument("--queue-arn", required=True, metavar="ARN")
        rule.add_argument(
            "--name", default=aws_setup.DEFAULT_RULE_NAME, help="rule name (default %(default)s)"
        )

        check = sub.add_parser(
            "check",
            help="is each configured queue reachable, open to Chime/EventBridge, and receiving?",
            description="Checks --queue-url, else SQS_QUEUE_URLS and the enabled QueueSource rows.",
        )
        check.add_argument("--queue-url", action="append", dest="queue_urls", default=[], metavar="URL")
        check.add_argument(
            "--expect",
            action="append",
            default=[],
            choices=sorted(aws_setup.PUBLISHERS),
            help="require that this sender may send (repeatable); by default any one of them will do",
        )
        check.add_argument(
            "--send-test",
            action="store_true",
            help="send a marked test message; the ingest quarantines it as wrong_source",
        )
        check.add_argument(
            "--recent-minutes",
            type=int,
            default=60,
            help="window for 'messages stored recently' (default %(default)s)",
        )

    def handle(self, *args, subcommand, **options):
        handler = {
            "policy": self.do_policy,
            "eventbridge-rule": self.do_eventbridge_rule,
            "check": self.do_check,
        }[subcommand]
        try:
            handler(**options)
        except (ValueError, aws_setup.SetupError) as exc:
            raise CommandError(str(exc)) from exc

    # --- policy ----------------------------------------------------------------------------

    def do_policy(self, *, queue_arn, topic_arn, account, source_arn, kms, reconcile, apply, **_):
        if not (queue_arn or topic_arn or kms or reconcile):
            raise CommandError("nothing to print: pass --queue-arn, --topic-arn, --kms and/or --reconcile")
        out = {}
        if queue_arn:
            out["queue_policy"] = aws_setup.queue_policy_chime(queue_arn, account, source_arn)
        if topic_arn:
            out["topic_policy"] = aws_setup.topic_policy_chime(topic_arn, account, source_arn)
        partition = (
            aws_setup.arn_parse(queue_arn or topic_arn).partition if (queue_arn or topic_arn) else "aws"
        )
        if kms:
            out["kms_key_policy_statements"] = aws_setup.kms_statements_chime(
                account, source_arn, partition=partition
            )
        if reconcile:
            out["reconcile_policy"] = aws_setup.reconcile_policy(account, partition=partition)
        if apply:
            if reconcile:
                self.stderr.write(
                    "reconcile policy not attached: attach reconcile_policy to the IAM role or user "
                    "the workers run as yourself"
                )
            if queue_arn:
                out["queue_policy"] = aws_setup.queue_policy_apply(queue_arn, out["queue_policy"])
                self.stderr.write(f"queue policy set on {queue_arn} (merged by Sid)")
            if topic_arn:
                out["topic_policy"] = aws_setup.topic_policy_apply(topic_arn, out["topic_policy"])
                self.stderr.write(f"topic policy set on {topic_arn} (merged by Sid)")
            if kms:
                self.stderr.write(
                    "key policy not changed: add kms_key_policy_statements to the key policy of the "
                    "queue's (or topic's) KMS key yourself (PutKeyPolicy replaces the whole policy)"
                )
        self.stdout.write(json.dumps(out, indent=2))

    # --- eventbridge-rule --------------------------------------------------------------------

    def do_eventbridge_rule(self, *, queue_arn, name, **_):
        result = aws_setup.eventbridge_rule_create(queue_arn, name=name)
        self.stderr.write(f"rule {result['rule_arn']} sends Chime events to {queue_arn}")
        self.stdout.write(json.dumps(result, indent=2))

    # --- check -------------------------------------------------------------------------------

    def do_check(self, *, queue_urls, expect, send_test, recent_minutes, **_):
        if recent_minutes < 1:
            raise CommandError("--recent-minutes must be at least 1")
        urls = list(dict.fromkeys(queue_urls)) or self._configured_urls()
        if not urls:
            raise CommandError("no queue: pass --queue-url URL, set SQS_QUEUE_URLS or add a QueueSource")
        failed = []
        for url in urls:
            result = aws_setup.queue_check(url, expect=expect)
            self._report(result)
            if result.reachable:
                self._activity(url, result.attributes, minutes=recent_minutes)
                if send_test:
                    message_id = aws_setup.check_message_send(url)
                    self.stdout.write(
                        f"  test message: sent ({message_id}); the ingest will quarantine it as "
                        f"wrong_source (source {aws_setup.CHECK_SOURCE!r})"
                    )
            if not result.ok:
                failed.append(f"{url} ({'policy' if result.reachable else 'unreachable'})")
        if failed:
            raise CommandError(f"{len(failed)} of {len(urls)} queues not OK: {', '.join(failed)}")
        self.stdout.write(f"checked {len(urls)} queue{'s' if len(urls) != 1 else ''}: OK")

    def _configured_urls(self) -> list[str]:
        """What workers drain; the queues disabled in admin are named as skipped."""
        urls, disabled = queue_urls_configured()
        for url in disabled:
            self.stdout.write(f"{url}\n  skipped: disabled in admin")
        return urls

    def _report(self, result: aws_setup.QueueCheck) -> None:
        write = self.stdout.write
        write(result.url)
        if not result.reachable:
            write(f"  reachable: no ({result.error})")
            return
        write(f"  reachable: yes ({result.arn})")
        verdict = "OK" if result.ok else "NOT OK"
        write(f"  policy: {verdict}")
        for name, grant in result.grants.items():
            label = aws_setup.PUBLISHER_LABELS[name]
            if grant.allowed:
                conditions = f" ({'; '.join(grant.conditions)})" if grant.conditions else ""
                write(f"    {label} may send{conditions}")
            elif grant.denied_by:
                write(f"    {label} may not send (denied by {grant.denied_by})")
            else:
                write(f"    {label} may not send")
        for rule in result.rules:
            allowed = "allowed by the policy" if rule.allowed else "NOT allowed by the policy"
            write(f"    EventBridge rule {rule.name} ({rule.state}) targets it: {allowed}")
        if result.rules_error:
            write(f"    EventBridge rules targeting it: could not list ({result.rules_error})")
        for problem in result.policy_problems:
            write(f"    problem: {problem}")
        for warning in result.warnings:
            write(f"    warning: {warning}")

    def _activity(self, url: str, attrs: dict[str, str], *, minutes: int) -> None:
        write = self.stdout.write
        now = timezone.now()
        waiting = int(attrs.get("ApproximateNumberOfMessages", 0))
        write(
            f"  messages: {waiting} waiting, {attrs.get('ApproximateNumberOfMessagesNotVisible', '?')} "
            f"in flight, {attrs.get('ApproximateNumberOfMessagesDelayed', '?')} delayed "
            "(age of the oldest: CloudWatch ApproximateAgeOfOldestMessage)"
        )
        activity = queue_activity_get(url=url, since=now - timedelta(minutes=minutes))
        row = activity.source
        if row is None:
            write("  drain: no QueueSource row (workers do not drain it; drain_sqs --queue-url can)")
        else:
            polled = (
                f"last poll {row.last_poll_at:%Y-%m-%d %H:%M:%S} UTC "
                f"({int((now - row.last_poll_at).total_seconds())} s ago)"
                if row.last_poll_at
                else "never polled"
            )
            state = "" if row.enabled and row.consumers else " (disabled or 0 consumers)"
            write(f"  drain: {polled}, {row.messages_received} received in all{state}")
            if row.last_error:
                write(f"    last error {row.last_error_at:%Y-%m-%d %H:%M:%S} UTC: {row.last_error}")
        if waiting and (row is None or row.last_poll_at is None or now - row.last_poll_at > STALE_POLL):
            write(f"    warning: {waiting} messages waiting and no drain polled in the last 5 min")
        if activity.events or activity.quarantined:
            write(
                f"  flowing: yes, {activity.events} events and {activity.quarantined} quarantined "
                f"stored from it in the last {minutes} min"
            )
        else:
            write(
                f"  flowing: nothing stored from it in the last {minutes} min (normal while no meeting runs)"
            )
