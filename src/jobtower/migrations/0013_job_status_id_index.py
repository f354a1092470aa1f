"""The job's status index becomes (status, id): a LOCAL worker claims the oldest Submitted jobs in id order.

With (status) alone PostgreSQL claimed by walking the primary key from the lowest id, past every job that
ended since the oldest queued one; (status, id) reads only the rows claimed and still serves every query
by status (the monitor's active jobs).
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobtower', '0012_job_user_no_own_index'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='job',
            name='jobtower_status',
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(fields=['_status', 'id'], name='jobtower_status_id'),
        ),
    ]
