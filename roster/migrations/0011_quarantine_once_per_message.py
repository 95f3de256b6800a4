"""Quarantine: one row per message, its deliveries counted (issue #14, point 8).

Why: a poison message redelivered after a crash between the quarantine's commit and the SQS
delete got a second row (workers killed with SIGKILL: 6 rows for 4 poison messages). A row now
has a key, unique: ``id:`` + SHA-256 of (queue, MessageId) for SQS, ``body:`` + SHA-256 of
(source, whole body) for a file or the SNS endpoint (roster.ingest.service.quarantine_key). A
redelivery adds to ``deliveries`` and moves ``last_received_at``; ``received_at`` stays the first.

Rows already stored get the key ingest gives now, so a redelivery after the upgrade finds its row:

- a row with a MessageId from a queue that is not ``sns:...`` or ``file:...`` (an SQS URL): by
  queue and MessageId;
- another row: by source and body, when its whole body was kept. A truncated body cannot give the
  digest of the body that was sent, so such a row gets a key of its own, ``row:<id>``, which
  nothing ingested matches.

Rows sharing a key are deliveries of one message (the same queue and MessageId; or the same
source and body, which is what ingest counts as one message from now on), so they are folded,
not kept: the first row stored (lowest id) stays, with ``deliveries`` = the number of rows,
``received_at`` the earliest and ``last_received_at`` the latest of theirs. Its reprocessing
fields become those of a row of the group that was applied or found duplicate, if one was (that
message is done; reprocessing it again would be a no-op), else of the one reprocessed last. The
later rows are deleted: their body is the kept row's; what goes with them is only their own
reason text where it differed (an ``ingest_failed`` error), and the reason kept is the first
delivery's, as for every redelivery from now on. Giving the old duplicates keys of their own
instead would keep the rows the issue is about, and a later redelivery would count on one of
them only.

Valid on an existing database: the columns are added (the key empty, the counter 1, the latest
delivery null), filled row by row in Python (PostgreSQL could hash in SQL, SQLite cannot, and
quarantine tables are small), then the latest delivery made NOT NULL and the key unique. The
table has no foreign keys, so the data changes and the ALTERs share one transaction. Backwards:
the columns go; folded rows do not come back.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from django.db import migrations, models
from django.db.models import F

# Frozen copies of what roster.ingest.service does (a migration imports no later code).
DONE = ("applied", "duplicate")


def _key(*, pk: int, queue: str, message_id: str, truncated: bool, body: bytes) -> str:
    digest = hashlib.sha256(queue.encode("utf-8", "surrogatepass") + b"\0")
    if message_id and queue and not queue.startswith(("sns:", "file:")):
        digest.update(message_id.encode("utf-8", "surrogatepass"))
        return "id:" + digest.hexdigest()
    if truncated:
        return f"row:{pk}"
    digest.update(body)
    return "body:" + digest.hexdigest()


def _reprocessed_at(row) -> float:
    return row.reprocessed_at.timestamp() if row.reprocessed_at else 0.0


def keys_fill(apps, schema_editor) -> None:
    quarantine = apps.get_model("roster", "Quarantine")
    rows = quarantine.objects.using(schema_editor.connection.alias)
    rows.update(last_received_at=F("received_at"))
    groups: dict[str, list[int]] = defaultdict(list)
    stored = rows.order_by("pk").values_list("pk", "queue", "sqs_message_id", "truncated", "body")
    for pk, queue, message_id, truncated, body in stored.iterator(chunk_size=500):
        key = _key(pk=pk, queue=queue, message_id=message_id, truncated=truncated, body=bytes(body))
        groups[key].append(pk)

    singles = [quarantine(pk=pks[0], source_key=key) for key, pks in groups.items() if len(pks) == 1]
    rows.bulk_update(singles, ["source_key"], batch_size=500)
    for key, pks in groups.items():
        if len(pks) > 1:
            _fold(rows, key, pks)


def _fold(rows, key: str, pks: list[int]) -> None:
    group = list(rows.filter(pk__in=pks).order_by("pk"))
    kept = group[0]
    kept.source_key = key
    kept.deliveries = len(group)
    kept.received_at = min(row.received_at for row in group)
    kept.last_received_at = max(row.received_at for row in group)
    done = [row for row in group if row.reprocess_outcome in DONE]
    tried = sorted((row for row in group if row.reprocess_outcome), key=lambda r: (_reprocessed_at(r), r.pk))
    source = done[0] if done else (tried[-1] if tried else None)
    if source is not None:
        for name in ("reprocessed", "reprocessed_at", "reprocess_outcome", "reprocess_detail"):
            setattr(kept, name, getattr(source, name))
    rows.filter(pk__in=pks[1:]).delete()
    kept.save()


class Migration(migrations.Migration):
    dependencies = [
        ("roster", "0010_meeting_users"),
    ]

    operations = [
        migrations.AddField(
            model_name="quarantine",
            name="source_key",
            field=models.CharField(
                default="",
                help_text="the message: its queue and MessageId (SQS), else its source and body digest",
                max_length=80,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="quarantine",
            name="deliveries",
            field=models.PositiveIntegerField(
                default=1, help_text="times the message was received and quarantined"
            ),
        ),
        migrations.AddField(
            model_name="quarantine",
            name="last_received_at",
            field=models.DateTimeField(null=True, help_text="the latest delivery"),
        ),
        migrations.AlterField(
            model_name="quarantine",
            name="received_at",
            field=models.DateTimeField(help_text="the first delivery"),
        ),
        migrations.RunPython(keys_fill, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="quarantine",
            name="last_received_at",
            field=models.DateTimeField(help_text="the latest delivery"),
        ),
        migrations.AddConstraint(
            model_name="quarantine",
            constraint=models.UniqueConstraint(fields=("source_key",), name="quarantine_source_unique"),
        ),
    ]
