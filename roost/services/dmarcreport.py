"""The daily DMARC report sender as a supervised process (DMARC_SEND_REPORTS).

Mailu sends yesterday's DMARC aggregate reports from a cron job at 02:00; Roost has no cron,
so ``roost up`` runs ``python -m roost.dmarcreport`` (roost.dmarcreport.daily), which sleeps
until then. It renders nothing of its own (Rspamd's ``dmarc.conf`` carries the reporting
settings) and reads the same settings as the runner, from its environment. It starts after
Rspamd and Postfix: it reads Rspamd's Redis and hands the reports to Postfix. It listens
nowhere, so it is ready once started.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from roost.dmarcreport.daily import state_path
from roost.services.base import Service, roost_environment
from roost.settings import Settings

__all__ = ["DmarcReportService"]


@dataclass
class DmarcReportService(Service):
    name: str = field(init=False, default="dmarc-reports")
    after: Sequence[str] = field(init=False, default=("rspamd", "postfix"))

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        return settings.DMARC_SEND_REPORTS

    def render(self) -> None:
        """The directory of the last-day record (root's: nothing else reads it)."""
        directory = state_path(self.layout).parent
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o750)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "roost.dmarcreport"]

    def environment(self) -> dict[str, str]:
        return roost_environment(self.layout.settings)
