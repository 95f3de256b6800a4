"""The ingest writes one outbox row per change naming the hooks it matched; workers fan it out into
deliveries. Payloads written before this already have their deliveries: they come in fanned (the
column's database default is true while it is added, false after), and their meeting, seq and part
stay blank (only the fan-out reads them; each delivery has its own)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('roster', '0016_hook_payload'),
    ]

    operations = [
        migrations.AddField(
            model_name='hookpayload',
            name='fanned',
            field=models.BooleanField(db_default=True, default=True, help_text='its deliveries are written'),
        ),
        migrations.AlterField(
            model_name='hookpayload',
            name='fanned',
            field=models.BooleanField(db_default=False, default=False, help_text='its deliveries are written'),
        ),
        migrations.AddField(
            model_name='hookpayload',
            name='hooks',
            field=models.JSONField(db_default=[], default=list, help_text='ids of the hooks it matched'),
        ),
        migrations.AddField(
            model_name='hookpayload',
            name='meeting_id',
            field=models.CharField(blank=True, db_default='', default='', max_length=128),
        ),
        migrations.AddField(
            model_name='hookpayload',
            name='part',
            field=models.PositiveSmallIntegerField(db_default=1, default=1),
        ),
        migrations.AddField(
            model_name='hookpayload',
            name='seq',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddIndex(
            model_name='hookpayload',
            index=models.Index(condition=models.Q(('fanned', False)), fields=['meeting_id', 'seq', 'part'], name='hook_payload_unfanned_idx'),
        ),
    ]
