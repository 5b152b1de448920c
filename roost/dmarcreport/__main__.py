"""``python -m roost.dmarcreport``: the daily DMARC report sender, started by ``roost up``
(roost.services.dmarcreport) with every setting in its environment."""

from __future__ import annotations

import logging
import sys

from roost.dmarcreport.daily import run
from roost.layout import Layout
from roost.settings import load_settings
from roost.settings.parsers import SettingsError


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"roost dmarc-reports: {exc}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(settings.LOG_LEVEL)
    run(Layout(settings))


if __name__ == "__main__":
    sys.exit(main())
