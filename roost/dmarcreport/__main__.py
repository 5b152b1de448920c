"""``python -m roost.dmarcreport``: the daily DMARC report sender, started by ``roost up``
(roost.services.dmarcreport) with every setting in its environment."""

from __future__ import annotations

import sys

from roost.dmarcreport.daily import run
from roost.layout import Layout
from roost.process import settings_or_exit


def main() -> int:
    run(Layout(settings_or_exit("dmarc-reports")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
