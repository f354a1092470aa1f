"""The Django app configuration of jobtower."""

from django.apps import AppConfig


class JobtowerConfig(AppConfig):
    """jobtower as a reusable Django app: INSTALLED_APPS += ["jobtower"]."""

    name = "jobtower"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"
