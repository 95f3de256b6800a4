"""Repairs from the Chime API (issue #15, point 1): synthesized events and what reconcile keeps.

- ``Event.source``: ``chime`` (every row stored so far) or ``reconcile`` (synthesized);
- ``Attendee.repaired``: a synthesized event is folded into the row (a later real AttendeeAdded /
  AttendeeDeleted re-derives it). False for every stored row: none holds a repair yet;
- ``Meeting.primary_meeting_id`` (indexed: a family is looked up by its primary),
  ``Meeting.control_region`` (where reconcile asks) and ``Meeting.reconcile_missed`` (the
  two-miss rule's state).

Valid on an existing database: every column is added with a default, kept in the database
(``db_default``: a worker of the previous release, during a rolling upgrade, inserts rows that
leave the new columns out); the control region of the meetings already stored is filled from
their logged envelopes (the smallest non-blank region of their events; a meeting has one), in one
portable statement. Backwards: the columns go.

On SQLite, adding a NOT NULL column rebuilds ``roster_attendee`` (Django's table remake), which
drops its triggers (0010, MeetingUser): they are created again after the rebuild, both ways.
"""

from django.db import migrations, models

# Frozen copies of 0010's SQLite triggers (a migration imports no later code).
SQLITE_TRIGGERS = [
    "CREATE TRIGGER IF NOT EXISTS roster_attendee_user_inserted AFTER INSERT ON roster_attendee "
    "WHEN NEW.external_user_id IS NOT NULL BEGIN "
    "INSERT OR IGNORE INTO roster_meetinguser (meeting_id, user_upper) "
    "VALUES (NEW.meeting_id, UPPER(NEW.external_user_id)); END",
    "CREATE TRIGGER IF NOT EXISTS roster_attendee_user_changed AFTER UPDATE OF external_user_id "
    "ON roster_attendee "
    "WHEN NEW.external_user_id IS NOT NULL AND NEW.external_user_id IS NOT OLD.external_user_id BEGIN "
    "INSERT OR IGNORE INTO roster_meetinguser (meeting_id, user_upper) "
    "VALUES (NEW.meeting_id, UPPER(NEW.external_user_id)); END",
]


def sqlite_triggers(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_TRIGGERS:
            schema_editor.execute(statement)


CONTROL_REGION_FILL = """
UPDATE roster_meeting SET control_region = COALESCE(
    (SELECT MIN(e.region) FROM roster_event e
     WHERE e.meeting_id = roster_meeting.meeting_id AND e.region <> ''),
    ''
)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("roster", "0011_quarantine_once_per_message"),
    ]

    operations = [
        # Backwards, the field's removal rebuilds the table again: this runs after it.
        migrations.RunPython(migrations.RunPython.noop, sqlite_triggers, elidable=False),
        migrations.AddField(
            model_name="attendee",
            name="repaired",
            field=models.BooleanField(
                default=False, db_default=False, help_text="a synthesized (reconcile) event is folded in"
            ),
        ),
        migrations.RunPython(sqlite_triggers, migrations.RunPython.noop, elidable=False),
        migrations.AddField(
            model_name="event",
            name="source",
            field=models.CharField(
                default="chime",
                db_default="chime",
                help_text="chime, or reconcile: synthesized from the Chime API",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="meeting",
            name="control_region",
            field=models.CharField(blank=True, default="", db_default="", max_length=256),
        ),
        migrations.AddField(
            model_name="meeting",
            name="primary_meeting_id",
            field=models.CharField(blank=True, max_length=128, null=True),
        ),
        migrations.AddField(
            model_name="meeting",
            name="reconcile_missed",
            field=models.JSONField(blank=True, default=list, db_default=[]),
        ),
        migrations.AddIndex(
            model_name="meeting",
            index=models.Index(fields=["primary_meeting_id"], name="meeting_primary_idx"),
        ),
        migrations.RunSQL(CONTROL_REGION_FILL, migrations.RunSQL.noop, elidable=False),
    ]
