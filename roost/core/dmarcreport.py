"""When DMARC aggregate reports go out and which of a day's reports are sent (no I/O).

Rspamd's ``dmarc`` module notes, for each message from outside whose policy domain asks
for aggregate reports (``rua=``, RFC 7489 section 6.3), one row in its Redis; a day's rows
are sent the next day as one report per policy domain and ``rua`` (RFC 7489 section 7.2:
reports cover whole days, "once per day" being the default interval, ``ri``). Roost sends
yesterday's reports at :data:`REPORT_HOUR` local time, as Mailu's cron does, and catches up
a day it missed while it was not running, as long as Rspamd still holds its data
(:data:`KEPT_DAYS`).

Rspamd's layout in its Redis (``/usr/share/rspamd/plugins/dmarc.lua``):

* ``dmarc_idx;YYYYMMDD``: a set, the day's index, naming each report key of that day;
* ``dmarc_rpt;<policy domain>;<rua>;YYYYMMDD``: a sorted set of rows, each row's score
  the number of messages it stands for.

The day is the one of the message's arrival in the server's local time, both here and in
Rspamd, so both must run in the same time zone (they do: one host, one environment).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

__all__ = [
    "INDEX_PREFIX",
    "JOIN",
    "KEPT_DAYS",
    "REPORT_HOUR",
    "REPORT_PREFIX",
    "Choice",
    "ReportKey",
    "choose_reports",
    "day_text",
    "days_due",
    "index_key",
    "latest_due",
    "next_run",
    "parse_day",
    "parse_report_key",
]

#: Local hour at which yesterday's reports go out (Mailu's cron: 02:00).
REPORT_HOUR = 2
#: Rspamd's keys expire 2 days after a day's last message (``keys_expire``): a day older
#: than this many days before the latest one due has no data left to send.
KEPT_DAYS = 2
INDEX_PREFIX = "dmarc_idx"
REPORT_PREFIX = "dmarc_rpt"
JOIN = ";"


def day_text(day: date) -> str:
    """``YYYYMMDD``, the day as Rspamd names it in its keys and rspamadm takes it."""
    return day.strftime("%Y%m%d")


def parse_day(text: str) -> date:
    """``YYYYMMDD`` as a date; ValueError says what was expected."""
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"{text!r} is not a day as YYYYMMDD")
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"{text!r} is not a day as YYYYMMDD") from None


def index_key(day: date) -> str:
    return f"{INDEX_PREFIX}{JOIN}{day_text(day)}"


def latest_due(now: datetime, hour: int = REPORT_HOUR) -> date:
    """The last whole day whose reports are due at ``now``: yesterday once the day's
    sending hour has come, else the day before yesterday."""
    yesterday = now.date() - timedelta(days=1)
    return yesterday if now.time() >= time(hour) else yesterday - timedelta(days=1)


def next_run(now: datetime, hour: int = REPORT_HOUR) -> datetime:
    """The next sending time after ``now`` (local, naive): today's or tomorrow's ``hour``."""
    today = datetime.combine(now.date(), time(hour))
    return today if now < today else today + timedelta(days=1)


def days_due(last_sent: date | None, now: datetime, hour: int = REPORT_HOUR) -> list[date]:
    """The days to send at ``now``, oldest first, after ``last_sent`` was the last sent.

    Days older than Rspamd keeps are left out (nothing to send); without a record of a
    last day (a first start) only the latest day due is sent.
    """
    latest = latest_due(now, hour)
    if last_sent is None:
        return [latest]
    oldest = max(last_sent + timedelta(days=1), latest - timedelta(days=KEPT_DAYS - 1))
    days = []
    day = oldest
    while day <= latest:
        days.append(day)
        day += timedelta(days=1)
    return days


@dataclass(frozen=True)
class ReportKey:
    """One report key of a day's index: the policy domain, its ``rua`` and the day."""

    key: str
    domain: str
    rua: str
    day: str


def parse_report_key(key: str) -> ReportKey | None:
    """The parts of ``dmarc_rpt;<domain>;<rua>;<YYYYMMDD>``, or None for anything else.

    The ``rua`` holds no ``;`` (it is one tag of the record, whose tags ``;`` separates).
    """
    parts = key.split(JOIN)
    if len(parts) != 4 or parts[0] != REPORT_PREFIX or not parts[1]:
        return None
    return ReportKey(key, parts[1], parts[2], parts[3])


@dataclass(frozen=True)
class Choice:
    """Which of a day's reports are sent under the cap, and which are dropped."""

    kept: tuple[str, ...]
    dropped: tuple[str, ...]


def choose_reports(messages: Mapping[str, int], cap: int) -> Choice:
    """At most ``cap`` of the reports (key → messages it covers), those with the most
    messages first; equal counts by key, so the choice does not depend on Redis's order.

    The domains that send the most mail are the ones whose owners most need to see how it
    fares; a day with many small senders (a spam run forging random domains with ``rua``
    tags) cannot make the server send thousands of reports.
    """
    ranked = sorted(messages, key=lambda key: (-messages[key], key))
    return Choice(tuple(ranked[:cap]), tuple(ranked[cap:]))
