"""The outbox stores a change's body once (``HookPayload``), not once per hook: each delivery points
at it and puts its own id in when it is sent. Existing deliveries get a payload each, their body
with ``"id": ""``. The columns a new delivery starts with get database defaults: the outbox's
COPY leaves them out. The status index becomes a partial one, of dead deliveries only, and the
order constraint one of pending deliveries only (the claim's question "is an earlier one still
pending" was a walk through the meeting's delivered past)."""

from django.db import migrations, models
import django.db.models.deletion


def payloads_from_bodies(apps, schema_editor):
    import uuid

    HookDelivery = apps.get_model("roster", "HookDelivery")
    HookPayload = apps.get_model("roster", "HookPayload")
    for delivery in HookDelivery.objects.iterator(chunk_size=500):
        text = delivery.body.replace(f'"id": "{delivery.delivery_id}"', '"id": ""', 1)
        payload = HookPayload.objects.create(
            id=uuid.uuid4(), parts=delivery.parts, events=delivery.events, body=text, created_at=delivery.created_at
        )
        HookDelivery.objects.filter(pk=delivery.pk).update(payload=payload)


class Migration(migrations.Migration):

    dependencies = [
        ('roster', '0015_hook_delivery_retry_until'),
    ]

    operations = [
        migrations.CreateModel(
            name='HookPayload',
            fields=[
                ('id', models.UUIDField(primary_key=True, serialize=False)),
                ('parts', models.PositiveSmallIntegerField(default=1)),
                ('events', models.JSONField(default=list)),
                ('body', models.TextField()),
                ('created_at', models.DateTimeField()),
            ],
        ),
        migrations.AddField(
            model_name='hookdelivery',
            name='payload',
            field=models.ForeignKey(db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='roster.hookpayload'),
        ),
        migrations.RunPython(payloads_from_bodies, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='hookdelivery',
            name='payload',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='roster.hookpayload'),
        ),
        migrations.RemoveField(model_name='hookdelivery', name='body'),
        migrations.RemoveField(model_name='hookdelivery', name='events'),
        migrations.RemoveField(model_name='hookdelivery', name='parts'),
        migrations.RemoveConstraint(model_name='hookdelivery', name='hook_delivery_order'),
        migrations.AddConstraint(
            model_name='hookdelivery',
            constraint=models.UniqueConstraint(condition=models.Q(('status', 'pending')), fields=('hook', 'meeting_id', 'seq', 'part'), name='hook_delivery_pending_order'),
        ),
        migrations.AlterField(
            model_name='hookdelivery',
            name='attempts',
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name='hookdelivery',
            name='last_error',
            field=models.TextField(blank=True, db_default='', default=''),
        ),
        migrations.AlterField(
            model_name='hookdelivery',
            name='lock_token',
            field=models.CharField(blank=True, db_default='', default='', max_length=32),
        ),
        migrations.AlterField(
            model_name='hookdelivery',
            name='status',
            field=models.CharField(choices=[('pending', 'Pending'), ('delivered', 'Delivered'), ('dead', 'Dead')], db_default='pending', default='pending', max_length=16),
        ),
        migrations.RemoveIndex(model_name='hookdelivery', name='hook_delivery_status_idx'),
        migrations.AddIndex(
            model_name='hookdelivery',
            index=models.Index(condition=models.Q(('status', 'dead')), fields=['-id'], name='hook_delivery_dead_idx'),
        ),
    ]
