"""Training's view of the run directory, whose contract lives in ``nodulelearn.run_dir``.

Kept so that ``from nodulelearn.training.run_dir import RunDirectory`` goes on working; new code
imports ``nodulelearn.run_dir``.
"""

from nodulelearn.run_dir import (
    NOT_PART_OF_IDENTITY,
    RunDirectory,
    RunDirectoryError,
    atomic_export,
    atomic_save_model,
    atomic_write_json,
    describe_os_error,
)

__all__ = [
    "NOT_PART_OF_IDENTITY", "RunDirectory", "RunDirectoryError", "atomic_export",
    "atomic_save_model", "atomic_write_json", "describe_os_error",
]
