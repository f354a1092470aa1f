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
