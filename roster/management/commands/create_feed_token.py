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
        parser.add_argument(
            "--can-mint-host-links",
            action="store_true",
            help="may mint host links (POST /api/host-links) within its meetings",
        )
        parser.add_argument(
            "--can-manage-hooks",
            action="store_true",
            help="may create and manage its own outbound hooks (/api/hooks), within its meetings",
        )

    def handle(self, *args, name, meetings, can_mint_host_links, can_manage_hooks, **options):
        token, raw = feed_token_create(
            name=name,
            meetings=meetings,
            can_mint_host_links=can_mint_host_links,
            can_manage_hooks=can_manage_hooks,
        )
        self.stderr.write(f"token {token.name!r} for meetings {token.meetings!r} (shown once, store it now):")
        self.stdout.write(raw)
