"""roster_attendee, the table nearly every event updates, keeps only the indexes its reads need, and
room in its pages, so that an update is HOT (no index entry written):

- ``attendee_changes_idx`` (meeting, seq) goes: ``seq`` moves with most updates, so it made every
  one of them write all of the table's index entries; the feed's catch-up (``seq > since``) reads
  the meeting's rows through the unique (meeting, attendee) index and filters, a few hundred rows
  at most;
- the foreign key's own indexes go (``meeting_id`` and, on PostgreSQL, its
  ``varchar_pattern_ops`` twin): the unique constraint leads with ``meeting_id``;
- fillfactor 80 on PostgreSQL: a fifth of each page free for the updated row (pages written
  before keep what room they have; pruning makes more).

The indexes are dropped by name rather than by AlterField: SQLite would rebuild the table for it,
and the rebuild drops migration 0010's triggers on it (the meeting search's users).

Measured in turns, whole runs (docs/benchmarks.md): interleaved/100 +5 %, per-meeting/10 +6 %.
"""

import django.db.models.deletion
from django.db import migrations, models

_FOREIGN_KEY_INDEXES = ("roster_attendee_meeting_id_c6088b0f", "roster_attendee_meeting_id_c6088b0f_like")


def _drop(apps, schema_editor):
    for name in _FOREIGN_KEY_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE roster_attendee SET (fillfactor = 80)")


def _restore(apps, schema_editor):
    schema_editor.execute('CREATE INDEX "roster_attendee_meeting_id_c6088b0f" ON "roster_attendee" ("meeting_id")')
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            'CREATE INDEX "roster_attendee_meeting_id_c6088b0f_like" '
            'ON "roster_attendee" ("meeting_id" varchar_pattern_ops)'
        )
        schema_editor.execute("ALTER TABLE roster_attendee SET (fillfactor = 100)")


class Migration(migrations.Migration):

    dependencies = [
        ('roster', '0017_hook_outbox_fan_out'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='attendee',
            name='attendee_changes_idx',
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='attendee',
                    name='meeting',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='attendees', to='roster.meeting'),
                ),
            ],
            database_operations=[migrations.RunPython(_drop, _restore)],
        ),
    ]
