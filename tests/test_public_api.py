"""The public surface: what `import jobtower` offers, and that it touches nothing heavy."""

from __future__ import annotations

import subprocess
import sys

import jobtower


def test_all_is_the_curated_public_api() -> None:
    assert sorted(jobtower.__all__) == [
        "AlreadyExecuted", "AppBase", "BasicJob", "CondorJob", "CondorWorkflow", "CondorWorkflowJobNode", "DaskJob",
        "DaskScheduler",
        "EngineUnavailable",
        "InvalidTransition", "Job", "JobError", "JobEvent", "JobManager", "JobsTable", "LocalJob", "Scheduler",
        "Status", "StopError", "SubmitError", "Workspace", "create_condor_scheduler", "create_dask_scheduler",
        "get_dask_scheduler", "get_scheduler", "job_types", "progress", "register_job_type",
    ]
    for name in jobtower.__all__:
        assert getattr(jobtower, name) is not None


def test_import_reads_no_settings_and_imports_no_engine_or_models() -> None:
    code = (
        "import sys, jobtower; "
        "bad = [m for m in ('htcondor', 'dask', 'distributed', 'jobtower.models', 'django.db.models') "
        "if m in sys.modules]; "
        "assert not bad, bad; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
