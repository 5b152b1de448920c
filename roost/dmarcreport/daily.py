"""The daily sender: a supervised process that sends yesterday's reports at 02:00.

Roost runs no cron: ``roost up`` supervises this process (roost.services.dmarcreport)
when DMARC_SEND_REPORTS is on. It sleeps until the next :data:`REPORT_HOUR` local time,
then sends the day before (:func:`roost.dmarcreport.sender.send_day`). The last day it
sent is kept in ``ROOT/dmarc-reports/last-sent``, so that after a stop over 02:00 (an
upgrade, a reboot) the missed day is sent at the next start, while Rspamd still has its
data (:func:`roost.core.dmarcreport.days_due`). A day that cannot be sent at all (Rspamd's
Redis away) is tried again every :data:`RETRY` seconds until the next sending time.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import NoReturn

from roost.core.dmarcreport import REPORT_HOUR, day_text, days_due, next_run, parse_day
from roost.dmarcreport.sender import DmarcReportError, send_day
from roost.layout import Layout

__all__ = ["RETRY", "read_last_sent", "run", "send_due", "state_path", "write_last_sent"]

log = logging.getLogger("roost.dmarcreport")

#: Seconds before a day that could not be sent is tried again.
RETRY = 600.0
#: Longest single sleep: the clock is looked at again at least this often, so a clock
#: that jumps (a suspended machine, a daylight saving change) delays a run by no more.
_NAP = 300.0


def state_path(layout: Layout) -> Path:
    return layout.root / "dmarc-reports" / "last-sent"


def read_last_sent(path: Path) -> date | None:
    """The last day sent, or None when none is recorded (a first start) or it is unreadable."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("%s cannot be read (%s): sending only the latest day due", path, exc)
        return None
    try:
        return parse_day(text)
    except ValueError as exc:
        log.warning("%s: %s; sending only the latest day due", path, exc)
        return None


def write_last_sent(path: Path, day: date) -> None:
    """Record ``day``, replacing the file whole so a crash never leaves half a date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(day_text(day) + "\n", encoding="ascii")
    os.replace(tmp, path)


def send_due(layout: Layout, now: datetime) -> bool:
    """Send every day due at ``now`` that was not sent yet; False if one must be retried."""
    path = state_path(layout)
    for day in days_due(read_last_sent(path), now):
        try:
            result = send_day(layout, day)
        except DmarcReportError as exc:
            log.error("DMARC reports for %s not sent: %s; trying again later", day_text(day), exc)
            return False
        head, *detail = result.lines()
        quiet = result.ok and not result.problems and not result.dropped
        log.log(logging.INFO if quiet else logging.WARNING, head)
        for line in detail:
            log.info(line.strip())
        # rspamadm removes what it handed on, whatever Postfix answered: the day is done.
        write_last_sent(path, day)
    return True


def run(
    layout: Layout,
    clock: Callable[[], datetime] = datetime.now,
    sleep: Callable[[float], None] = time.sleep,
) -> NoReturn:
    """Send what is due now, then at each next sending time, forever."""
    log.info("DMARC reports: yesterday's are sent every day at %02d:00", REPORT_HOUR)
    while True:
        done = send_due(layout, clock())
        target = next_run(clock())
        if not done:
            retry = clock().timestamp() + RETRY
            target = min(target, datetime.fromtimestamp(retry))
        log.debug("DMARC reports: next run at %s", target.isoformat(timespec="minutes"))
        while (now := clock()) < target:
            sleep(min(_NAP, max(1.0, (target - now).total_seconds())))
