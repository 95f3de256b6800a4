"""Reconcile's callers (issue #15, point 1): ``Meeting.reconciled_at``, when reconcile last
completed a check of the meeting. An ``unknown`` meeting is checked at most once (shared/ROSTER.md):
only while this is null. Nullable, so rows of the previous release (and a worker of it inserting
during a rolling upgrade) need no default; SQLite adds it without rebuilding the table."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("roster", "0012_reconcile_repairs"),
    ]

    operations = [
        migrations.AddField(
            model_name="meeting",
            name="reconciled_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
