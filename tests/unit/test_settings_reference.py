"""The settings table: one row per setting, from which the loader and the docs both follow."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from roost.settings import MAILU_ONLY, Settings, SettingsError, declarations, load_settings
from roost.settings.model import SECTIONS, to_text
from roost.settings.reference import END_MARKER, render_document, render_section, start_marker

TOP = Path(__file__).resolve().parents[2]
REFERENCE = TOP / "docs" / "configuration.md"


def test_docs_configuration_md_is_what_the_table_generates() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    assert render_document(text) == text, (
        "docs/configuration.md disagrees with roost/settings/model.py: run "
        "python -m roost.settings --write docs/configuration.md"
    )


def test_a_stale_reference_is_noticed() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    stale = text.replace("| `DOMAIN` | `mailu.io` |", "| `DOMAIN` | `example.com` |")
    assert stale != text
    assert render_document(stale) == text
    dropped = text.replace("| `RELAYHOST` |", "| `RELAYHOSTS` |")
    assert render_document(dropped) != dropped


def test_every_section_needs_its_table_once() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    without = text.replace(start_marker("database"), "<!-- no table -->")
    with pytest.raises(SettingsError, match=r"missing \['database'\]"):
        render_document(without)
    twice = text + f"\n{start_marker('mail')}\n{END_MARKER}\n"
    with pytest.raises(SettingsError, match=r"repeated \['mail'\]"):
        render_document(twice)
    unknown = text + f"\n{start_marker('nonsense')}\n{END_MARKER}\n"
    with pytest.raises(SettingsError, match="no such section"):
        render_document(unknown)


def test_every_name_is_declared_once_with_a_known_section_and_a_meaning() -> None:
    rows = declarations()
    names = [row.name for row in rows]
    assert len(names) == len(set(names)), "a name is both a field and in MAILU_ONLY"
    for row in rows:
        assert row.section in SECTIONS, row
        assert row.meaning.strip() and "\n" not in row.meaning, row
        assert (row.parse is None) == (row.section == "mailu-only"), row
    assert {f.name for f in fields(Settings)} | {row.name for row in MAILU_ONLY} == set(names)


def test_every_name_appears_in_its_sections_table() -> None:
    for section in SECTIONS:
        table = render_section(section)
        for row in declarations():
            assert (f"| `{row.name}` |" in table) == (row.section == section), (section, row)


def test_each_default_is_a_value_its_parser_accepts_and_returns() -> None:
    for row in declarations():
        if row.parse is not None:
            assert row.parse(row.name, to_text(row.default)) == row.default, row.name


def test_a_mailu_only_name_loads_and_changes_nothing(tmp_path: Path) -> None:
    env_file = tmp_path / "mailu.env"
    env_file.write_text("".join(f"{row.name}=x\n" for row in MAILU_ONLY))
    assert load_settings(env_file=env_file, environ={}) == Settings()


def test_the_module_prints_every_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "roost.settings", "--markdown"],
        cwd=TOP,
        capture_output=True,
        text=True,
        check=True,
    )
    for title in SECTIONS.values():
        assert f"## {title}\n" in result.stdout
    assert "| `SECRET_KEY` | `changeMe` |" in result.stdout


def test_the_module_rewrites_a_file_in_place(tmp_path: Path) -> None:
    copy = tmp_path / "configuration.md"
    text = REFERENCE.read_text(encoding="utf-8")
    copy.write_text(text.replace("| `POSTMASTER` | `postmaster` |", "| `POSTMASTER` | `pm` |"))
    from roost.settings.__main__ import main

    assert main(["--write", str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == text
