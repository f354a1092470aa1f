"""process_results_function targets for the tests (module level, so they can be stored by path)."""

from __future__ import annotations

CALLS: list[int] = []


def record(job) -> None:  # noqa: ANN001
    """Record that results were processed, and leave a file in the job's folder."""
    CALLS.append(job.pk)
    job.ensure_folder().joinpath("processed.txt").write_text(f"{job.pk}\n")


def explode(job) -> None:  # noqa: ANN001
    """Fail like a broken results script does."""
    raise RuntimeError("the output file was empty")


def _count_run(job) -> int:  # noqa: ANN001
    """Append this process's pid to the job's results_runs file; return how many runs there were."""
    import os

    runs = job.ensure_folder() / "results_runs"
    with runs.open("a") as handle:
        handle.write(f"{os.getpid()}\n")
    return len(runs.read_text().splitlines())


def hang_first_time(job) -> None:  # noqa: ANN001
    """Hang on the first run (the test kills the process running it); finish on the next one."""
    import time

    if _count_run(job) == 1:
        time.sleep(600)
    job.ensure_folder().joinpath("processed.txt").write_text(f"{job.pk}\n")


def interrupted(job) -> None:  # noqa: ANN001
    """Be interrupted like a process told to stop (not an Exception)."""
    _count_run(job)
    raise KeyboardInterrupt


def record_value(result):  # noqa: ANN001, ANN201
    """Tethys's form (DASK jobs): record the result, return what is stored instead."""
    CALLS.append(result)
    return {"processed": result}


def stopped_meanwhile(job) -> None:  # noqa: ANN001
    """Be stopped by a user while the results step runs (the step then ends without moving the job)."""
    from jobtower import manager

    manager.stop(job)


def stopped_then_explode(job) -> None:  # noqa: ANN001
    """Be stopped by a user, then fail: the failure cannot move a job that ended meanwhile."""
    stopped_meanwhile(job)
    raise RuntimeError("the output file was empty")
