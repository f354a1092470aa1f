"""Admin pages for jobs and their history: read-mostly, status changes go through the manager."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property

from jobtower import conf
from jobtower.db import estimated_count
from jobtower.dotted import function_path
from jobtower.models import Delivery, Job, JobEvent, Scheduler, SlurmCluster
from jobtower.registry import registered_classes
from jobtower.statuses import Status
from jobtower.web.permissions import RUN_PERMISSION

if TYPE_CHECKING:
    # The stubs make these generic in their model; Django's classes cannot be subscripted at run time.
    _JobEventInline = admin.TabularInline[JobEvent, Job]
    _JobAdmin = admin.ModelAdmin[Job]
    _JobEventAdmin = admin.ModelAdmin[JobEvent]
    _SchedulerForm = forms.ModelForm[Scheduler]
    _JobForm = forms.ModelForm[Job]
    _SchedulerAdmin = admin.ModelAdmin[Scheduler]
    _DeliveryAdmin = admin.ModelAdmin[Delivery]
else:
    _JobEventInline = admin.TabularInline
    _JobAdmin = _JobEventAdmin = _SchedulerAdmin = _DeliveryAdmin = admin.ModelAdmin
    _SchedulerForm = _JobForm = forms.ModelForm


class EstimatedCountPaginator(Paginator):  # type: ignore[type-arg]
    """Count an unfiltered changelist from the planner's estimate on PostgreSQL (no scan of the table).

    COUNT(*) reads the whole table: about a second for a million jobs. An unfiltered list shows
    "about N" pages instead; a filtered one, or a small table, is counted exactly (jobtower.db.estimated_count).
    """

    @cached_property
    def count(self) -> int:
        estimate = estimated_count(self.object_list)
        return super().count if estimate is None else estimate


class AppLabelFilter(admin.SimpleListFilter):
    """The jobs of one app; its choices come from the (label, id) index, never from a scan of the table."""

    title = "app"
    parameter_name = "label"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        table = connection.ops.quote_name(Job._meta.db_table)
        # A skip scan written out: each step is one index probe for the next label, however many jobs.
        sql = (f"WITH RECURSIVE labels(label) AS (SELECT MIN(label) FROM {table} UNION ALL "
               f"SELECT (SELECT MIN(label) FROM {table} WHERE label > labels.label) FROM labels "
               "WHERE labels.label IS NOT NULL) SELECT label FROM labels WHERE label IS NOT NULL")
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return [(label, label) for (label,) in cursor.fetchall()]

    def queryset(self, request: Any, queryset: Any) -> Any:
        return queryset.filter(label=self.value()) if self.value() else queryset


class JobTypeFilter(admin.SimpleListFilter):
    """The jobs of one type; its choices are the registered job types (no query)."""

    title = "job type"
    parameter_name = "job_type"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name, _ in registered_classes()]

    def queryset(self, request: Any, queryset: Any) -> Any:
        return queryset.filter(job_type=self.value()) if self.value() else queryset


class JobEventInline(_JobEventInline):
    model = JobEvent
    extra = 0
    can_delete = False
    fields = ("time", "attempt", "from_status", "to_status", "source", "message")
    readonly_fields = fields

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False


#: Job settings that decide what runs and where: editing them is running code, so it needs the
#: permission that creating jobs needs (web/permissions.py RUN_PERMISSION), not just "Can change job".
RUN_SETTINGS = ("spec", "workspace", "_process_results_function")


class JobForm(_JobForm):
    """Checks the run settings an administrator edits: a workspace inside the workspaces root only."""

    class Meta:
        model = Job
        fields = "__all__"
        labels = {"_process_results_function": "process results function"}

    def clean_workspace(self) -> str:
        value: str = self.cleaned_data.get("workspace", "")
        if value and value != self.instance.workspace:
            root = conf.workspaces_root().resolve()
            path = Path(value)
            # resolve(): neither ".." nor a symlink inside the root may lead out of it.
            if not path.is_absolute() or not path.resolve().is_relative_to(root):
                raise forms.ValidationError(f"the workspace must be a folder inside {root}")
        return value

    def clean__process_results_function(self) -> str:
        value = self.cleaned_data.get("_process_results_function", "")
        try:
            return function_path(value) if value else ""
        except (ValueError, TypeError) as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(Job)
class JobAdmin(_JobAdmin):
    form = JobForm
    list_display = ("id", "name", "label", "job_type", "user", "status_display", "creation_time")
    list_filter = (AppLabelFilter, JobTypeFilter, "_status")
    # A million jobs: no COUNT(*) of the whole table for "N total", an estimate when unfiltered.
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    search_fields = ("name", "description")
    list_select_related = ("user",)
    fields = (
        "name", "description", "label", "job_type", "user", "groups", "workspace",
        "extended_properties", "spec", "_process_results_function", "_status", "status_message", "attempt",
        "creation_time", "execute_time", "start_time", "completion_time", "last_status_check", "engine_data",
    )
    readonly_fields = (
        "label", "job_type", "user", "_status", "status_message", "attempt", "creation_time",
        "execute_time", "start_time", "completion_time", "last_status_check", "engine_data",
    )
    inlines = [JobEventInline]

    @admin.display(description="status", ordering="_status")
    def status_display(self, job: Job) -> str:
        return Status(job._status).display

    def get_readonly_fields(self, request: Any, obj: Any = None) -> tuple[str, ...]:
        """Make the run settings read-only for users who may not create jobs."""
        if request.user.has_perm(RUN_PERMISSION):
            return tuple(self.readonly_fields)
        return (*self.readonly_fields, *RUN_SETTINGS)

    def has_add_permission(self, request: Any) -> bool:
        return False  # jobs are created by apps, through create_job()

    def save_model(self, request: Any, obj: Job, form: Any, change: bool) -> None:
        """Save the job; an edit of its run settings goes into its history, naming who made it."""
        # Compared with the stored row, not form.changed_data: that trusts the "initial-" values the
        # browser sends back for JSON fields, so an edit could hide itself.
        stored = Job.objects.filter(pk=obj.pk).values(*RUN_SETTINGS, "_status", "attempt").first() if change else None
        super().save_model(request, obj, form, change)
        if stored is None:
            return
        edited = [name.lstrip("_") for name in RUN_SETTINGS if getattr(obj, name) != stored[name]]
        if edited:
            JobEvent.objects.create(
                job_id=obj.pk, attempt=stored["attempt"], from_status=stored["_status"],
                to_status=stored["_status"], source="admin",
                message=f"{request.user.get_username()} changed {', '.join(edited)} in the admin",
            )

    def delete_model(self, request: Any, obj: Job) -> None:
        obj.delete()  # stops an active job and removes its own folder

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for job in queryset:  # each job through Job.delete(), never a bulk DELETE
            job.delete()


@admin.register(JobEvent)
class JobEventAdmin(_JobEventAdmin):
    list_display = ("id", "job", "attempt", "from_status", "to_status", "source", "time")
    list_filter = ("to_status", "source")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_select_related = ("job",)
    readonly_fields = ("job", "attempt", "from_status", "to_status", "time", "source", "message")

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(_DeliveryAdmin):
    """The outbox, for inspection: what was sent, what is retried, what failed and why."""

    list_display = ("id", "job_id", "kind", "target", "state", "attempts", "next_attempt_at", "sent_at")
    list_filter = ("state", "kind")
    search_fields = ("target",)
    readonly_fields = (
        "key", "job_id", "kind", "target", "payload", "state", "attempts", "created", "next_attempt_at",
        "claimed_until", "sent_at", "last_error",
    )
    exclude = ("endpoint",)

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class SchedulerForm(_SchedulerForm):
    """The token is write-only: never shown, replaced only when a new one is typed."""

    new_token = forms.CharField(
        label="IDTOKEN", required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="paste a token from condor_token_create to set or replace it; leave empty to keep "
        "the current one",
    )
    clear_token = forms.BooleanField(label="remove the token", required=False)

    class Meta:
        model = Scheduler
        fields = ("name", "host", "schedd_name", "description")

    def save(self, commit: bool = True) -> Scheduler:
        scheduler = super().save(commit=False)
        _set_token(scheduler, self.cleaned_data)
        if commit:
            scheduler.save()
        return scheduler


def _set_token(record: Scheduler | SlurmCluster, cleaned: dict[str, Any]) -> None:
    """Apply a write-only token field: removed when asked, replaced when a new one was typed."""
    if cleaned.get("clear_token"):
        record.token = ""
    elif cleaned.get("new_token"):
        record.token = cleaned["new_token"]


@admin.register(Scheduler)
class SchedulerAdmin(_SchedulerAdmin):
    form = SchedulerForm
    list_display = ("name", "host", "schedd_name", "has_token")
    search_fields = ("name", "host", "schedd_name")

    @admin.display(boolean=True, description="token")
    def has_token(self, scheduler: Scheduler) -> bool:
        return scheduler.has_token


# -- Slurm clusters: the JWT is write-only, as a scheduler's IDTOKEN --------------------------------

if TYPE_CHECKING:
    _SlurmClusterForm = forms.ModelForm[SlurmCluster]
    _SlurmClusterAdmin = admin.ModelAdmin[SlurmCluster]
else:
    _SlurmClusterForm = forms.ModelForm
    _SlurmClusterAdmin = admin.ModelAdmin


class SlurmClusterForm(_SlurmClusterForm):
    """The token is write-only: never shown, replaced only when a new one is typed."""

    new_token = forms.CharField(
        label="JWT", required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="paste a slurmrestd JWT (scontrol token) to set or replace it; leave empty to keep the current one",
    )
    clear_token = forms.BooleanField(label="remove the token", required=False)

    class Meta:
        model = SlurmCluster
        fields = ("name", "slurm_conf", "rest_url", "description")

    def save(self, commit: bool = True) -> SlurmCluster:
        cluster = super().save(commit=False)
        _set_token(cluster, self.cleaned_data)
        if commit:
            cluster.save()
        return cluster


@admin.register(SlurmCluster)
class SlurmClusterAdmin(_SlurmClusterAdmin):
    form = SlurmClusterForm
    list_display = ("name", "slurm_conf", "rest_url", "has_token")
    search_fields = ("name", "slurm_conf", "rest_url")

    @admin.display(boolean=True, description="token")
    def has_token(self, cluster: SlurmCluster) -> bool:
        return cluster.has_token
