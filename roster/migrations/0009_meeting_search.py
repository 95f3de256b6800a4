"""Indexes for the meeting list at scale (issue #13), on PostgreSQL only; model state unchanged.

- ``roster_attendee_user_trgm``: a trigram GIN index on ``UPPER("external_user_id"::text)``,
  exactly the expression Django's ``icontains`` writes on PostgreSQL, so a search of 3 or more
  characters finds its attendees through the index instead of reading every attendee row.
- ``roster_meeting_active_order``: the default ("active") sort's keys as roster.read.selectors
  writes them (status rank, COALESCE(started_at, -1) descending, meeting_id), so a page is read
  in order and the scan stops at the page's end: the first page, a cursor page, a host's page and
  a short search that matches all stop early instead of sorting every meeting. The expressions
  must stay those of ``MEETING_SORTS["active"]`` (tests/read/test_selectors.py checks the plan).

pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it. Reversing
drops the indexes and leaves the extension, which other objects may use.
"""

from django.db import migrations

FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    'CREATE INDEX IF NOT EXISTS "roster_attendee_user_trgm" ON "roster_attendee" '
    'USING gin ((UPPER("external_user_id"::text)) gin_trgm_ops)',
    'CREATE INDEX IF NOT EXISTS "roster_meeting_active_order" ON "roster_meeting" ('
    "(CASE WHEN \"status\" = 'active' THEN 0 WHEN \"status\" = 'unknown' THEN 1 ELSE 2 END), "
    '(COALESCE("started_at", -1)) DESC, "meeting_id")',
]
BACKWARD = [
    'DROP INDEX IF EXISTS "roster_meeting_active_order"',
    'DROP INDEX IF EXISTS "roster_attendee_user_trgm"',
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("roster", "0008_host_links")]

    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD), elidable=False)]
