"""The worker's Python against the job's snapshot (daemon/versions.py): a cluster's Python is the user's own."""

from __future__ import annotations

import sys

from daemon.versions import LIBRARIES, check_stack, library_versions
from daemon.worker.__main__ import _failure_message


def test_the_same_python_as_the_snapshot_has_nothing_to_say() -> None:
    check = check_stack(library_versions())
    assert check.failure() is None and check.warning() is None
    assert set(LIBRARIES) <= set(check.here) and check.here["torch"]


def test_a_different_version_is_a_warning_naming_both() -> None:
    recorded = {**library_versions(), "transformers": "5.99.0", "peft": None}  # peft: not recorded at creation
    check = check_stack(recorded)
    assert check.failure() is None
    warning = check.warning()
    assert warning is not None and f"transformers {check.here['transformers']} here, 5.99.0 in the snapshot" in warning
    assert "peft" not in warning and "the job runs" in warning


def test_a_missing_library_fails_with_the_pins_to_install() -> None:
    here = {**library_versions(), "trl": None, "accelerate": None}
    check = check_stack({**library_versions(), "trl": "1.16.0", "accelerate": "1.15.0"}, here=here)
    failure = check.failure()
    assert failure is not None and sys.executable in failure
    assert "lacks trl (the job was created with 1.16.0), accelerate (the job was created with 1.15.0)" in failure
    assert "pip install trl==1.16.0 accelerate==1.15.0" in failure


def test_a_library_missing_at_import_is_named_with_the_python_that_lacks_it() -> None:
    message = _failure_message(ModuleNotFoundError("No module named 'trl'", name="trl"))
    assert f"the worker's Python ({sys.executable} on " in message and "has no trl" in message
    other = _failure_message(ModuleNotFoundError("No module named 'yaml'", name="yaml"))
    assert other == "ModuleNotFoundError: No module named 'yaml'"  # not ours to explain: said as it is
