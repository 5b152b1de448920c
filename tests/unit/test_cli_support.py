"""Shared harness for the CLI, entity and configio tests: a temp ROOT with an SQLite store.

Imported by the CLI, entity, rule-book and configio tests (no tests of its own).
The store is migrated with ``Store.upgrade`` directly, as ``roost init`` does, so these
tests need neither the daemons nor the system users ``init`` sets owners for.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy.orm import Session

from roost.cli import cli
from roost.settings import Settings, load_settings
from roost.store.db import Store

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    """One temp ROOT: its settings file, settings and (migrated) store."""

    root: Path
    env_file: Path
    settings: Settings

    @contextmanager
    def session(self) -> Iterator[Session]:
        store = Store.from_settings(self.settings)
        try:
            with store.session() as session:
                yield session
        finally:
            store.dispose()

    def roost(self, *args: str, input: str | None = None) -> Result:
        """Run the CLI in-process, as ``roost --env FILE ARGS``."""
        return CliRunner().invoke(cli, ["--env", str(self.env_file), *args], input=input)

    def roost_process(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """Run ``python -m roost --env FILE ARGS`` as a real process."""
        environ = {k: v for k, v in os.environ.items() if k != "ROOST_ENV"}
        environ["PYTHONPATH"] = str(REPO)
        return subprocess.run(
            [sys.executable, "-m", "roost", "--env", str(self.env_file), *args],
            input=input,
            capture_output=True,
            text=True,
            env=environ,
            cwd=REPO,
            timeout=120,
            check=False,
        )


def make_stack(tmp_path: Path, extra: str = "", migrate: bool = True) -> Stack:
    tmp_path.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "root"
    env_file = tmp_path / "mailu.env"
    env_file.write_text(
        f"ROOT={root}\nDOMAIN=example.com\nHOSTNAMES=mail.example.com\n"
        # `roost init` refuses the default SECRET_KEY (roost/settings/secret.py).
        f"SECRET_KEY=cli-test-secret-0123456789abcdef\n{extra}",
        encoding="utf-8",
    )
    settings = load_settings(env_file=env_file, environ={})
    if migrate:
        store = Store.from_settings(settings)
        try:
            store.upgrade()
        finally:
            store.dispose()
    return Stack(root=root, env_file=env_file, settings=settings)


def error_line(result: Result) -> str:
    """The one stderr line of a refused command, after checking it is the only output."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    return lines[0]
