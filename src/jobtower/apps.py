"""The Django app configuration of jobtower."""

from django.apps import AppConfig


class JobtowerConfig(AppConfig):
    """jobtower as a reusable Django app: INSTALLED_APPS += ["jobtower"]."""

    name = "jobtower"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobtower import webhooks
        from jobtower.signals import job_status_changed

        job_status_changed.connect(webhooks.on_status_changed, dispatch_uid="jobtower.webhooks")
