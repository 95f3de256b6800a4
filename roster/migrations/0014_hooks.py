"""Outbound hooks (issue #16): ``Hook`` (target, filters, secret and its rotation window, circuit
breaker), ``HookDelivery`` (the transactional outbox, written in the ingest transaction) and
``FeedToken.can_manage_hooks`` (a database default too: a worker of the previous release inserts
tokens without it)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("roster", "0013_meeting_reconciled_at"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="feedtoken",
            name="can_manage_hooks",
            field=models.BooleanField(
                db_default=False,
                default=False,
                help_text="may create, list, pause, rotate and delete its own outbound hooks (/api/hooks)",
            ),
        ),
        migrations.CreateModel(
            name="Hook",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=256, unique=True)),
                (
                    "target",
                    models.CharField(
                        help_text="https:// URL (or loopback http://), sns:<topic ARN> or sqs:<queue URL>",
                        max_length=2048,
                    ),
                ),
                (
                    "events",
                    models.JSONField(blank=True, default=list, help_text="event types; empty = every type"),
                ),
                (
                    "meetings",
                    models.CharField(
                        default="*", help_text="glob on externalMeetingId or meetingId", max_length=256
                    ),
                ),
                (
                    "enabled",
                    models.BooleanField(
                        default=True, help_text="off = paused by an operator: changes queue up"
                    ),
                ),
                ("secret", models.CharField(max_length=128)),
                ("previous_secret", models.CharField(blank=True, default="", max_length=128)),
                (
                    "previous_secret_until",
                    models.DateTimeField(blank=True, help_text="the old secret signs until then", null=True),
                ),
                ("consecutive_failures", models.PositiveIntegerField(default=0)),
                ("broken_at", models.DateTimeField(blank=True, null=True)),
                ("broken_reason", models.TextField(blank=True, default="")),
                (
                    "probe_at",
                    models.DateTimeField(blank=True, help_text="when a broken hook may try again", null=True),
                ),
                ("last_success_at", models.DateTimeField(blank=True, null=True)),
                ("last_failure_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "created_by_token",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="hooks",
                        to="roster.feedtoken",
                    ),
                ),
                (
                    "created_by_user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="HookDelivery",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("meeting_id", models.CharField(max_length=128)),
                ("seq", models.BigIntegerField()),
                ("part", models.PositiveSmallIntegerField(default=1)),
                ("parts", models.PositiveSmallIntegerField(default=1)),
                ("delivery_id", models.CharField(max_length=64)),
                ("events", models.JSONField(default=list)),
                ("body", models.TextField()),
                (
                    "status",
                    models.CharField(
                        choices=[("pending", "Pending"), ("delivered", "Delivered"), ("dead", "Dead")],
                        default="pending",
                        max_length=16,
                    ),
                ),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("next_attempt_at", models.DateTimeField()),
                ("last_attempt_at", models.DateTimeField(blank=True, null=True)),
                ("last_status_code", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("last_error", models.TextField(blank=True, default="")),
                (
                    "latency_ms",
                    models.PositiveIntegerField(blank=True, help_text="of the last attempt", null=True),
                ),
                ("locked_until", models.DateTimeField(blank=True, null=True)),
                ("lock_token", models.CharField(blank=True, default="", max_length=32)),
                ("created_at", models.DateTimeField()),
                ("delivered_at", models.DateTimeField(blank=True, null=True)),
                (
                    "hook",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to="roster.hook",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "hook deliveries",
                "indexes": [
                    models.Index(
                        condition=models.Q(("status", "pending")),
                        fields=["next_attempt_at"],
                        name="hook_delivery_due_idx",
                    ),
                    models.Index(fields=["status", "-created_at"], name="hook_delivery_status_idx"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("hook", "meeting_id", "seq", "part"), name="hook_delivery_order"
                    ),
                    models.UniqueConstraint(fields=("delivery_id",), name="hook_delivery_id_unique"),
                ],
            },
        ),
    ]
