"""The runner of LOCAL function jobs started before function_runner existed: the same runner, by its old name."""

from __future__ import annotations

import sys

from jobtower.backends.function_runner import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main(sys.argv))
