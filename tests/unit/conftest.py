"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

#: CI runs as root on a machine with every Debian package installed (test.sh), where no unit
#: test has a reason to skip: there, a skip means a check silently did not run.
ON_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def base() -> Iterator[Path]:
    """A 0755 directory: Roost refuses a ROOT that its daemons' users could not traverse."""
    path = Path(tempfile.mkdtemp(prefix="roost-unit-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Under ``CI=true``, a unit test that skips fails instead, with the skip's reason."""
    outcome = yield
    report = outcome.get_result()
    if ON_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every unit test must run: {reason}"
