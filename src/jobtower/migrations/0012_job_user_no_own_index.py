"""Drop the job's user_id index: the (user, id) index of 0004 serves every lookup by user."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobtower', '0011_slurmcluster_rest_help'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='job',
            name='user',
            field=models.ForeignKey(db_index=False, on_delete=models.deletion.CASCADE,
                                    related_name='jobtower_jobs', to=settings.AUTH_USER_MODEL),
        ),
    ]
