"""The code stays clean: the project's style, format and type rules are checked with the tests.

Each check runs the tool over the whole tree and fails on any finding, so a change that
drifts from the rules is caught by the suite rather than by a reviewer.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]

#: What a reader of the project can open: citations in these must lead somewhere public.
PUBLIC_TEXT = ("roost", "tests", "bench", "docs", "README.md")

#: A citation of the private design notes or the private behaviour inventory: the word,
#: then a section sign (U+00A7), possibly across a line break and a comment marker.
_PRIVATE_CITATION = re.compile(r"\b(?:reference|design)\b[\s#*/\"'>-]*\u00a7", re.IGNORECASE)

#: A section sign is public when an RFC is named just before it, as in "RFC 5321" and the
#: sign with "4.5.3.1".
_RFC_BEFORE = re.compile(r"RFC[\s-]?\d+")
_RFC_REACH = 70


def _ruff() -> str:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed; it is a test dependency (pip install -e '.[test]')")
    return ruff


def test_ruff_finds_nothing() -> None:
    result = subprocess.run(
        [_ruff(), "check", "--no-cache", "."], cwd=TOP, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_changes_nothing() -> None:
    result = subprocess.run(
        [_ruff(), "format", "--check", "--no-cache", "."], cwd=TOP, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing(tmp_path: Path) -> None:
    # The settings ([tool.mypy] in pyproject.toml) name the files: roost/.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), "roost"],
        cwd=TOP,
        capture_output=True,
        text=True,
    )
    if "No module named mypy" in result.stderr:
        pytest.fail("mypy is not installed; it is a test dependency (pip install -e '.[test]')")
    assert result.returncode == 0, result.stdout + result.stderr


def _public_texts() -> Iterator[tuple[Path, str]]:
    for name in PUBLIC_TEXT:
        top = TOP / name
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in paths:
            if "__pycache__" in path.parts:
                continue
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # binary files cite nothing


def _where(path: Path, text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    return f"{path.relative_to(TOP)}:{line}: {text[offset:].splitlines()[0][:60]!r}"


def test_no_citation_of_private_documents() -> None:
    """The design notes and behaviour inventory are not in the repository; cite the public
    source (an RFC, a manual page, Mailu's documentation or code by path) or say the fact."""
    found = [
        _where(path, text, match.start())
        for path, text in _public_texts()
        for match in _PRIVATE_CITATION.finditer(text)
    ]
    assert not found, "\n".join(found)


def test_section_signs_name_their_rfc() -> None:
    """A bare section sign and number points into the same private documents; a public one
    names its RFC."""
    found = [
        _where(path, text, match.start())
        for path, text in _public_texts()
        for match in re.finditer("\u00a7", text)
        if not _RFC_BEFORE.search(text[max(0, match.start() - _RFC_REACH) : match.start()])
        and not _PRIVATE_CITATION.search(text[max(0, match.start() - 40) : match.end()])
    ]
    assert not found, "\n".join(found)


def test_citation_checks_find_what_they_look_for() -> None:
    """The patterns above catch the shapes seen in the tree, and let public ones pass."""
    sign = "\u00a7"
    for private in (f"reference {sign}1.4", f"Reference {sign}4.5", f"DESIGN {sign}1 core"):
        assert _PRIVATE_CITATION.search(private), private
    assert _PRIVATE_CITATION.search(f"(reference\n    # {sign}7.1.3)")
    assert not _PRIVATE_CITATION.search(f"RFC 5321 {sign}4.5.3.1")
    assert _RFC_BEFORE.search("no white space before the colon (RFC 9112 ")
    assert not _RFC_BEFORE.search("kept so a Mailu database carries over (")
