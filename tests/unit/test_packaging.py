"""What setup.sh installs is a wheel, not the checkout: every file the code reads at run
time (templates, stylesheets, migrations, word lists) must be in it. Missing ones were
once found only when a page of the admin UI failed on a fresh machine."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_every_file_of_the_package(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(PROJECT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("roost-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        ["git", "-C", str(PROJECT), "ls-files", "roost"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked
    missing = sorted(path for path in tracked if path not in packaged)
    assert not missing, f"not in the wheel (pyproject.toml package-data): {missing}"
