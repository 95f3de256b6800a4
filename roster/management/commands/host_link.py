"""Mint a host link: one signed URL, alone on the last line, that opens the dashboard for a meeting
(or a glob of them) without an account until it expires or is revoked in admin."""

from django.core.management.base import BaseCommand, CommandError

from roster.read.host_links import DEFAULT_HOURS, HostLinkRefused, host_link_create


class Command(BaseCommand):
    help = "Mint a host link (signed, expiring, revocable in admin); prints its URL once."

    def add_arguments(self, parser):
        parser.add_argument(
            "meetings", metavar="MEETING_ID_OR_GLOB", help="meetingId, externalMeetingId or a glob on either"
        )
        parser.add_argument(
            "--hours", type=float, default=DEFAULT_HOURS, help="lifetime, at most HOST_LINK_MAX_HOURS"
        )
        parser.add_argument("--label", default="", help="shown in admin's list of links")

    def handle(self, *args, meetings, hours, label, **options):
        try:
            link, url = host_link_create(meetings=meetings, hours=hours, label=label)
        except HostLinkRefused as refused:
            raise CommandError(str(refused)) from None
        self.stderr.write(
            f"host link for meetings {link.meetings!r}, expires {link.expires_at.isoformat()} "
            "(shown once, only its hash is stored; revoke it in admin):"
        )
        self.stdout.write(url)
