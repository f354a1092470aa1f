"""Admin pages for jobs and their history: read-mostly, status changes go through the manager."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from jobtower.models import Job, JobEvent
from jobtower.statuses import Status


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    fields = ("time", "attempt", "from_status", "to_status", "source", "message")
    readonly_fields = fields

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "label", "job_type", "user", "status_display", "creation_time")
    list_filter = ("label", "job_type", "_status")
    search_fields = ("name", "description")
    list_select_related = ("user",)
    fields = (
        "name", "description", "label", "job_type", "user", "groups", "workspace",
        "extended_properties", "spec", "_status", "status_message", "attempt", "creation_time",
        "execute_time", "start_time", "completion_time", "last_status_check", "engine_data",
    )
    readonly_fields = (
        "label", "job_type", "user", "_status", "status_message", "attempt", "creation_time",
        "execute_time", "start_time", "completion_time", "last_status_check", "engine_data",
    )
    inlines = [JobEventInline]

    @admin.display(description="status", ordering="_status")
    def status_display(self, job: Job) -> str:
        return Status(job._status).display

    def has_add_permission(self, request: Any) -> bool:
        return False  # jobs are created by apps, through create_job()

    def delete_model(self, request: Any, obj: Job) -> None:
        obj.delete()  # stops an active job and removes its own folder

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for job in queryset:  # each job through Job.delete(), never a bulk DELETE
            job.delete()


@admin.register(JobEvent)
class JobEventAdmin(admin.ModelAdmin):
    list_display = ("id", "job", "attempt", "from_status", "to_status", "source", "time")
    list_filter = ("to_status", "source")
    list_select_related = ("job",)
    readonly_fields = ("job", "attempt", "from_status", "to_status", "time", "source", "message")

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False
