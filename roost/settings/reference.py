"""The configuration reference's tables, generated from the settings table.

docs/configuration.md is hand-written prose around one generated table per section, each
between ``<!-- settings table: SECTION -->`` and ``<!-- settings table end -->``. Running
``python -m roost.settings --write docs/configuration.md`` rewrites the tables in place;
``tests/unit/test_settings_reference.py`` fails when the file and the table disagree.
"""

from __future__ import annotations

import re
from pathlib import Path

from roost.settings.model import SECTIONS, Setting, declarations, to_text
from roost.settings.parsers import SettingsError

__all__ = ["END_MARKER", "render_document", "render_section", "start_marker"]

END_MARKER = "<!-- settings table end -->"
_BLOCK = re.compile(
    r"(<!-- settings table: (?P<section>[a-z-]+) -->\n)(?P<body>.*?)("
    + re.escape(END_MARKER)
    + ")",
    re.S,
)


def start_marker(section: str) -> str:
    return f"<!-- settings table: {section} -->"


def _cell(text: str) -> str:
    """Markdown table cells cannot hold a bar or a line break."""
    return text.replace("|", "\\|").replace("\n", " ")


def _default(row: Setting) -> str:
    shown = to_text(row.default)
    return f"`{shown}`" if shown else "empty"


def render_section(section: str) -> str:
    """The Markdown table of one section, ending with a line break."""
    rows = [row for row in declarations() if row.section == section]
    if section == "mailu-only":
        lines = ["| name | Mailu's meaning |", "|---|---|"]
        lines += [f"| `{row.name}` | {_cell(row.meaning)} |" for row in rows]
    else:
        lines = ["| name | default | meaning |", "|---|---|---|"]
        for row in rows:
            meaning = (
                row.meaning
                if row.acts
                else f"{row.meaning} (read and checked; Roost does not act on it)"
            )
            lines.append(f"| `{row.name}` | {_default(row)} | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def render_document(text: str) -> str:
    """``text`` with every section's table regenerated; each section must appear once."""
    seen: list[str] = []

    def replace(match: re.Match[str]) -> str:
        section = match["section"]
        if section not in SECTIONS:
            raise SettingsError(f"{start_marker(section)}: no such section")
        seen.append(section)
        return match[1] + render_section(section) + END_MARKER

    result = _BLOCK.sub(replace, text)
    missing = [s for s in SECTIONS if s not in seen]
    repeated = sorted({s for s in seen if seen.count(s) > 1})
    if missing or repeated:
        raise SettingsError(
            f"settings reference: sections missing {missing}, repeated {repeated}; each of "
            + ", ".join(SECTIONS)
            + " needs one table"
        )
    return result


def write_document(path: Path) -> bool:
    """Regenerate the tables in ``path``; True when the file changed."""
    text = path.read_text(encoding="utf-8")
    updated = render_document(text)
    if updated != text:
        path.write_text(updated, encoding="utf-8")
    return updated != text


def render_all() -> str:
    """Every section's table under its heading: the whole reference without prose."""
    parts = [f"## {title}\n\n{render_section(section)}" for section, title in SECTIONS.items()]
    return "\n".join(parts)
