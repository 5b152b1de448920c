"""What each of Roost's own Python processes that ``roost up`` starts (the gate, the web
application, the DMARC report sender) does first: read the settings from its environment
and log one line a record to stderr, which the runner prefixes with the process's name
and merges into its own log."""

from __future__ import annotations

import logging
import sys

from roost.settings import Settings, load_settings
from roost.settings.parsers import SettingsError

__all__ = ["log_to_stderr", "settings_or_exit"]


def log_to_stderr(level: str, names: bool = True) -> None:
    """Send every record of ``level`` and above to stderr; ``names``: with the logger's."""
    handler = logging.StreamHandler(sys.stderr)
    layout = "%(levelname)s %(name)s: %(message)s" if names else "%(levelname)s %(message)s"
    handler.setFormatter(logging.Formatter(layout))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def settings_or_exit(program: str) -> Settings:
    """The settings, with logging set up by LOG_LEVEL; a bad setting ends the process
    with one line that names it (exit status 2, as the CLI's refusals)."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"roost {program}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    log_to_stderr(settings.LOG_LEVEL)
    return settings
