"""``HookDelivery.retry_until``: when retries stop; null (every row the outbox writes) means
created_at + HOOKS_RETRY_HOURS, a redelivery sets its own fresh window."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('roster', '0014_hooks'),
    ]

    operations = [
        migrations.AddField(
            model_name='hookdelivery',
            name='retry_until',
            field=models.DateTimeField(blank=True, help_text='retries stop then (empty: created_at + HOOKS_RETRY_HOURS)', null=True),
        ),
    ]
