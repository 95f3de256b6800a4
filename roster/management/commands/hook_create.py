"""Register an outbound hook (docs/hooks.md); its signing secret is printed once, alone on the last
line of stdout."""

from django.core.management.base import BaseCommand, CommandError

from roster.hooks.services import HookRefused, hook_create


class Command(BaseCommand):
    help = "Register an outbound hook (https:// URL, loopback http:// if allowed, sns:ARN or sqs:URL)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--url", required=True, help="https://..., sns:arn:aws:sns:... or sqs:https://..."
        )
        parser.add_argument("--events", default="", help="comma separated event types; default every type")
        parser.add_argument("--meetings", default="*", help="glob on externalMeetingId (or meetingId)")

    def handle(self, *args, name, url, events, meetings, **options):
        try:
            hook, secret = hook_create(name=name, target=url, events=events, meetings=meetings)
        except HookRefused as refused:
            raise CommandError(str(refused)) from refused
        types = ", ".join(hook.events) or "every type"
        self.stderr.write(f"hook {hook.name!r} -> {hook.target} ({types}; meetings {hook.meetings!r})")
        self.stderr.write("signing secret (shown once, store it now):")
        self.stdout.write(secret)
