"""A custom Jobs Table action for the tests."""


def touch(job) -> None:  # noqa: ANN001
    """Mark the job's description."""
    job.description = "touched"
    job.save()
