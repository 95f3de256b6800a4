"""Create a feed/REST token scoped by a glob; the token is printed once and stored hashed."""

from django.core.management.base import BaseCommand

from roster.read.access import feed_token_create


class Command(BaseCommand):
    help = "Create a bearer token for /ws/feed/ and the REST API; prints it once."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--meetings", default="*", help="glob on externalMeetingId (or meetingId), default '*'"
        )

    def handle(self, *args, name, meetings, **options):
        token, raw = feed_token_create(name=name, meetings=meetings)
        self.stderr.write(f"token {token.name!r} for meetings {token.meetings!r} (shown once, store it now):")
        self.stdout.write(raw)
