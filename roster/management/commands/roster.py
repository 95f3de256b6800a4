"""Print one meeting's roster, as the REST endpoint returns it."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from roster.read.selectors import roster_get


class Command(BaseCommand):
    help = "Print the roster of MEETING_ID (meetingId or externalMeetingId)."

    def add_arguments(self, parser):
        parser.add_argument("meeting_id")
        parser.add_argument("--json", action="store_true", help="print JSON (the REST shape)")

    def handle(self, *args, meeting_id, **options):
        roster = roster_get(meeting_id=meeting_id)
        if roster is None:
            raise CommandError(f"no meeting {meeting_id!r}")
        if options["json"]:
            self.stdout.write(json.dumps(roster, indent=2, sort_keys=True))
            return
        meeting = roster["meeting"]
        self.stdout.write(
            f"{meeting['external_meeting_id'] or meeting['meeting_id']}  status={meeting['status']} "
            f"joined={meeting['joined_count']} peak={meeting['peak_joined']} seq={meeting['seq']}"
        )
        for attendee in roster["attendees"]:
            flags = [
                name for name in ("video", "screen_share", "content_share", "content_video") if attendee[name]
            ]
            name = attendee["external_user_id"] or attendee["attendee_id"]
            self.stdout.write(
                f"  {name:<40} {attendee['presence'] or '-':<10} {attendee['network_type'] or '':<6} "
                f"drops={attendee['drop_count']} {' '.join(flags)}"
            )
