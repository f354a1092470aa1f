"""The Django app configuration of jobtower."""

from django.apps import AppConfig


class JobtowerConfig(AppConfig):
    """jobtower as a reusable Django app: INSTALLED_APPS += ["jobtower"]."""

    name = "jobtower"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks
        from django.db.models.signals import post_delete, pre_delete

        from jobtower import manager
        from jobtower.checks import check_settings, check_slurm_clusters

        checks.register(check_settings, checks.Tags.compatibility)
        checks.register(check_slurm_clusters, checks.Tags.database)

        # Every way of deleting jobs (a user's cascade included) stops them and removes their folders.
        pre_delete.connect(manager.stop_before_delete, dispatch_uid="jobtower.stop_before_delete")
        post_delete.connect(manager.remove_folder_after_delete, dispatch_uid="jobtower.remove_folder")
