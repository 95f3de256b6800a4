"""MeetingUser: every externalUserId a meeting has seen, kept by triggers on roster_attendee.

Why (docs/benchmarks.md, "Meeting list at scale"): searching attendees for 1 or 2 characters had
no index to use (a trigram holds 3) and read all 500,000 attendee rows, 300 to 450 ms when
nothing matched. The search now reads this table: a person once per meeting, upper-cased, with
on PostgreSQL a trigram index (3 characters and more) and a GIN index on every 1- and 2-character
piece (``roster_short_grams``), so any search is an index lookup. The trigram index moves here
from roster_attendee, whose rows are rewritten on every change of an attendee.

Triggers, not Python, keep it: a row when an attendee is inserted or its externalUserId changes
(to a new value: a name once seen stays findable), whoever writes the attendee. Existing
attendees are copied in.
"""

import django.db.models.deletion
from django.db import migrations, models

POSTGRESQL = [
    """
    CREATE FUNCTION roster_short_grams(t text) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        SELECT coalesce(array_agg(DISTINCT substr(t, i, n)), '{}')
        FROM generate_series(1, length(t)) AS i, generate_series(1, 2) AS n
        WHERE i + n - 1 <= length(t)
    $$
    """,
    # Inserts: once per statement, over its new rows (ingest writes a batch's attendees in one).
    """
    CREATE FUNCTION roster_meeting_users_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO roster_meetinguser (meeting_id, user_upper)
        SELECT DISTINCT meeting_id, UPPER(external_user_id) FROM inserted
        WHERE external_user_id IS NOT NULL
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER roster_attendee_user_inserted AFTER INSERT ON roster_attendee "
    "REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION roster_meeting_users_inserted()",
    # Renames: rare, so a row trigger whose WHEN spares every other update a function call.
    """
    CREATE FUNCTION roster_meeting_user_renamed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO roster_meetinguser (meeting_id, user_upper)
        VALUES (NEW.meeting_id, UPPER(NEW.external_user_id))
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER roster_attendee_user_changed AFTER UPDATE OF external_user_id ON roster_attendee "
    "FOR EACH ROW WHEN (NEW.external_user_id IS NOT NULL "
    "AND NEW.external_user_id IS DISTINCT FROM OLD.external_user_id) "
    "EXECUTE FUNCTION roster_meeting_user_renamed()",
    "INSERT INTO roster_meetinguser (meeting_id, user_upper) "
    "SELECT DISTINCT meeting_id, UPPER(external_user_id) FROM roster_attendee "
    "WHERE external_user_id IS NOT NULL ON CONFLICT DO NOTHING",
    "CREATE INDEX roster_meetinguser_trgm ON roster_meetinguser USING gin (user_upper gin_trgm_ops)",
    "CREATE INDEX roster_meetinguser_grams ON roster_meetinguser USING gin (roster_short_grams(user_upper))",
    'DROP INDEX IF EXISTS "roster_attendee_user_trgm"',
]
POSTGRESQL_BACKWARD = [
    'CREATE INDEX IF NOT EXISTS "roster_attendee_user_trgm" ON "roster_attendee" '
    'USING gin ((UPPER("external_user_id"::text)) gin_trgm_ops)',
    "DROP TRIGGER IF EXISTS roster_attendee_user_changed ON roster_attendee",
    "DROP TRIGGER IF EXISTS roster_attendee_user_inserted ON roster_attendee",
    "DROP FUNCTION IF EXISTS roster_meeting_users_inserted()",
    "DROP FUNCTION IF EXISTS roster_meeting_user_renamed()",
    "DROP INDEX IF EXISTS roster_meetinguser_grams",
    "DROP FUNCTION IF EXISTS roster_short_grams(text)",
]
SQLITE = [
    "CREATE TRIGGER roster_attendee_user_inserted AFTER INSERT ON roster_attendee "
    "WHEN NEW.external_user_id IS NOT NULL BEGIN "
    "INSERT OR IGNORE INTO roster_meetinguser (meeting_id, user_upper) "
    "VALUES (NEW.meeting_id, UPPER(NEW.external_user_id)); END",
    "CREATE TRIGGER roster_attendee_user_changed AFTER UPDATE OF external_user_id ON roster_attendee "
    "WHEN NEW.external_user_id IS NOT NULL AND NEW.external_user_id IS NOT OLD.external_user_id BEGIN "
    "INSERT OR IGNORE INTO roster_meetinguser (meeting_id, user_upper) "
    "VALUES (NEW.meeting_id, UPPER(NEW.external_user_id)); END",
    "INSERT OR IGNORE INTO roster_meetinguser (meeting_id, user_upper) "
    "SELECT DISTINCT meeting_id, UPPER(external_user_id) FROM roster_attendee "
    "WHERE external_user_id IS NOT NULL",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS roster_attendee_user_changed",
    "DROP TRIGGER IF EXISTS roster_attendee_user_inserted",
]


def _run(by_vendor):
    def run(apps, schema_editor):
        for statement in by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("roster", "0009_meeting_search")]

    operations = [
        migrations.CreateModel(
            name="MeetingUser",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("user_upper", models.CharField(max_length=256)),
                (
                    "meeting",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="roster.meeting",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("meeting", "user_upper"), name="meeting_user_unique")
                ],
            },
        ),
        migrations.RunPython(
            _run({"postgresql": POSTGRESQL, "sqlite": SQLITE}),
            _run({"postgresql": POSTGRESQL_BACKWARD, "sqlite": SQLITE_BACKWARD}),
            elidable=False,
        ),
    ]
