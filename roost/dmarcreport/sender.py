"""Send one day's DMARC aggregate reports: cap the day's index, then ``rspamadm dmarc_report``.

Rspamd's own tool builds the reports (RFC 7489 section 7.2: gzip'd XML, one per policy
domain and ``rua``) from what Rspamd noted in its Redis, checks each policy's ``rua=``
in DNS again, sends a report to an address outside the policy domain only when that
address's domain publishes ``<policy domain>._report._dmarc.<its domain> TXT "v=DMARC1"``
(RFC 7489 section 7.1), hands the messages to Postfix and removes what it sent. Roost
writes its settings (rspamd's ``dmarc.conf``) and runs it with the stack's configuration.

Before that, DMARC_REPORTS_PER_DAY is enforced here: rspamadm sends every report in the
day's index, so the index is cut to the reports that cover the most messages
(:func:`roost.core.dmarcreport.choose_reports`) and the others are deleted, named in the
log. rspamadm says little and only in its log lines; :func:`send_day` turns them into one
result per day (sent, failed, skipped, what went wrong).
"""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass, field
from datetime import date

import redis
from redis.exceptions import RedisError

from roost.core.dmarcreport import (
    ReportKey,
    choose_reports,
    day_text,
    index_key,
    parse_report_key,
)
from roost.layout import Layout
from roost.services.base import ServiceConfigError
from roost.services.rspamd import RspamdService

__all__ = ["DayResult", "DmarcReportError", "Report", "send_day"]

log = logging.getLogger("roost.dmarcreport")

#: rspamadm builds and sends every report of a day in one run; a day's mail to thousands of
#: domains still takes far less than this.
RSPAMADM_TIMEOUT = 1800
_REDIS_TIMEOUT = 10.0
_FINISHED = re.compile(
    r"Reporting collection has finished (\d+) dates processed, (\d+) reports: "
    r"(\d+) completed, (\d+) failed"
)
#: rspamadm's lines that are no problem: what it did, and the resolver's start-up chatter.
_QUIET = re.compile(
    r"Reporting collection has finished|No reports for \d{8}|Skip sending mails|"
    r"address resolution for .* failed|cannot read servers definition"
)
#: rspamadm says "invalid dmarc record" also when the record is fine but none of its rua
#: addresses may be used; this says what it means.
_NOT_SENT = re.compile(r"Cannot process reports for domain (\S+); invalid dmarc record")


class DmarcReportError(RuntimeError):
    """The reports cannot be sent at all (reporting off, the stack not running)."""


@dataclass(frozen=True)
class Report:
    """One report of the day: its key, and how many messages and rows it covers."""

    key: ReportKey
    messages: int
    rows: int


@dataclass
class DayResult:
    """What one day's run did, for the log line and ``roost dmarc-report``."""

    day: date
    dry_run: bool
    cap: int
    kept: list[Report] = field(default_factory=list)
    dropped: list[Report] = field(default_factory=list)
    #: reports rspamadm handed to Postfix, and those Postfix did not take
    sent: int = 0
    failed: int = 0
    #: rspamadm's own complaints: no valid DMARC record, a rua not authorised, ...
    problems: list[str] = field(default_factory=list)
    returncode: int = 0

    @property
    def domains(self) -> int:
        return len({report.key.domain for report in self.kept})

    @property
    def skipped(self) -> int:
        """Reports rspamadm did not build: the policy is gone or names no rua it may use."""
        return max(0, len(self.kept) - self.sent - self.failed) if not self.dry_run else 0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0

    def lines(self) -> list[str]:
        """The day's summary first, then the detail (dropped reports, problems)."""
        day = day_text(self.day)
        if not self.kept and not self.dropped:
            return [f"DMARC reports for {day}: none (no mail from a domain that asks for them)"]
        if self.dry_run:
            head = (
                f"DMARC reports for {day} (dry run): {len(self.kept)} would be sent, for "
                f"{_count(self.domains, 'domain')}"
            )
        else:
            head = (
                f"DMARC reports for {day}: {self.sent} sent, {self.failed} failed, "
                f"{self.skipped} skipped, for {_count(self.domains, 'domain')}"
            )
        if self.dropped:
            head += f"; {len(self.dropped)} over DMARC_REPORTS_PER_DAY={self.cap} not sent"
        if self.problems:
            head += f"; {_count(len(self.problems), 'problem')}"
        lines = [head]
        if self.dry_run:
            lines.extend(f"  would send: {_describe(report)}" for report in self.kept)
        verb = "would drop" if self.dry_run else "dropped"
        lines.extend(f"  {verb}: {_describe(report)}" for report in self.dropped)
        lines.extend(f"  problem: {problem}" for problem in self.problems)
        return lines


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}" if number == 1 else f"{number} {thing}s"


def _describe(report: Report) -> str:
    return (
        f"{report.key.domain} (rua {report.key.rua}): {_count(report.messages, 'message')}, "
        f"{_count(report.rows, 'row')}"
    )


def send_day(layout: Layout, day: date, dry_run: bool = False) -> DayResult:
    """Send ``day``'s reports now (with ``dry_run``: say what would be sent, change nothing).

    Raises DmarcReportError when reporting is off or the stack is not there to do it.
    """
    settings = layout.settings
    if not settings.DMARC_SEND_REPORTS:
        raise DmarcReportError(
            "DMARC_SEND_REPORTS is false: Rspamd keeps no report data and sends no reports"
        )
    rspamd = RspamdService(layout)
    if not rspamd.conf.is_file():
        raise DmarcReportError(
            f"{rspamd.conf} is not there: start the stack (roost up) before sending reports"
        )
    if not _reporting_on(rspamd):
        raise DmarcReportError(
            "Rspamd runs with DMARC reporting off (it was started before DMARC_SEND_REPORTS "
            "was set): restart the stack"
        )
    result = DayResult(day, dry_run, settings.DMARC_REPORTS_PER_DAY)
    client = redis.Redis(
        unix_socket_path=str(layout.rspamd_redis_socket),
        socket_timeout=_REDIS_TIMEOUT,
        socket_connect_timeout=_REDIS_TIMEOUT,
        decode_responses=True,
    )
    try:
        reports = _day_reports(client, day)
        choice = choose_reports({key: r.messages for key, r in reports.items()}, result.cap)
        result.kept = [reports[key] for key in choice.kept]
        result.dropped = [reports[key] for key in choice.dropped]
        if result.dropped and not dry_run:
            _drop(client, day, result.dropped)
    except RedisError as exc:
        raise DmarcReportError(
            f"Rspamd's Redis ({layout.rspamd_redis_socket}) does not answer ({exc}): "
            "is the stack running?"
        ) from None
    finally:
        client.close()
    if not reports:
        return result
    _run_rspamadm(rspamd, layout, result)
    return result


def _reporting_on(rspamd: RspamdService) -> bool:
    """Whether the running Rspamd's dmarc.conf (written at its start) keeps report data."""
    try:
        conf = (rspamd.local_d / "dmarc.conf").read_text(encoding="utf-8")
    except OSError:
        return False
    return "enabled = true;" in conf


def _day_reports(client: redis.Redis, day: date) -> dict[str, Report]:
    """Every report of the day's index, with the messages and rows it covers."""
    members = sorted(str(key) for key in client.smembers(index_key(day)))
    parsed = [(member, parse_report_key(member)) for member in members]
    usable = [(member, key) for member, key in parsed if key is not None]
    for member, key in parsed:
        if key is None:
            log.warning("DMARC report index of %s: %r is no report key, left alone", day, member)
    pipeline = client.pipeline(transaction=False)
    for member, _ in usable:
        pipeline.zrange(member, 0, -1, withscores=True)
    rows = pipeline.execute()
    reports: dict[str, Report] = {}
    for (member, key), entries in zip(usable, rows, strict=True):
        if not entries:
            continue  # expired, or sent by another run meanwhile
        messages = sum(int(score) for _, score in entries)
        reports[member] = Report(key, messages, len(entries))
    return reports


def _drop(client: redis.Redis, day: date, dropped: list[Report]) -> None:
    """Take the reports over the cap out of the day's index and delete their rows."""
    pipeline = client.pipeline(transaction=True)
    pipeline.srem(index_key(day), *(report.key.key for report in dropped))
    pipeline.delete(*(report.key.key for report in dropped))
    pipeline.execute()


def _run_rspamadm(rspamd: RspamdService, layout: Layout, result: DayResult) -> None:
    """``rspamadm dmarc_report [-n] YYYYMMDD`` with the stack's configuration."""
    arguments = ["dmarc_report", "-c", str(rspamd.conf)]
    if result.dry_run:
        arguments.append("-n")
    arguments.append(day_text(result.day))
    try:
        argv = rspamd.rspamadm_argv(*arguments)
    except ServiceConfigError as exc:
        raise DmarcReportError(str(exc)) from None
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=RSPAMADM_TIMEOUT,
            check=False,
            cwd=layout.rspamd_data,
        )
    except subprocess.TimeoutExpired:
        result.returncode = -1
        result.problems.append(f"rspamadm dmarc_report did not finish in {RSPAMADM_TIMEOUT} s")
        return
    result.returncode = done.returncode
    output = done.stdout + done.stderr
    for line in output.splitlines():
        text = line.strip()
        not_sent = _NOT_SENT.search(text)
        if not_sent:
            text = (
                f"{not_sent.group(1)}: no report sent (no DMARC record now, or none of its "
                "rua addresses may receive it)"
            )
        finished = _FINISHED.search(text)
        if finished:
            result.sent, result.failed = int(finished.group(3)), int(finished.group(4))
        elif text and not _QUIET.search(text):
            result.problems.append(text)
    if done.returncode != 0 and not result.problems:
        result.problems.append(f"rspamadm dmarc_report exited with {done.returncode}")
