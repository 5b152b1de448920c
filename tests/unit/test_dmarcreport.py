"""DMARC aggregate reports: Rspamd's reporting settings on and off (judged by rspamadm),
when the daily sender runs and which days it catches up, which reports the daily cap
keeps, and the record of the last day sent. The sending itself is end to end
(tests/e2e/test_dmarc_reports.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
from test_services_postfix_support import make_settings, roost_root

from roost.core.dmarcreport import (
    choose_reports,
    day_text,
    days_due,
    index_key,
    latest_due,
    next_run,
    parse_day,
    parse_report_key,
)
from roost.dmarcreport import daily, sender
from roost.dmarcreport.sender import DayResult, Report
from roost.layout import POSTFIX_FRONT_PORT, Layout
from roost.runner.stack import enabled_services
from roost.services.rspamd import RspamdService

ADDRESS = "127.0.5.41"


@pytest.fixture()
def root() -> Iterator[Path]:
    with roost_root() as path:
        yield path


# -- Rspamd's dmarc.conf -------------------------------------------------------------------


def rendered_dmarc(root: Path, **values: object) -> str:
    service = RspamdService(Layout(make_settings(root, ADDRESS, **values)))
    service.render()  # ends with rspamadm configtest
    return (service.local_d / "dmarc.conf").read_text()


def test_reporting_is_off_by_default_and_rspamd_keeps_no_data(root: Path) -> None:
    conf = rendered_dmarc(root)
    assert "enabled = false;" in conf
    assert "email =" not in conf


def test_reporting_sends_as_postmaster_through_postfix_front_listener(root: Path) -> None:
    conf = rendered_dmarc(
        root, DMARC_SEND_REPORTS=True, SITENAME='Mail "of" Example', POSTMASTER="hostmaster"
    )
    assert "enabled = true;" in conf
    assert 'email = "hostmaster@example.test";' in conf
    assert 'domain = "example.test";' in conf
    assert 'org_name = "Mail of Example";' in conf  # quotes cannot break the file
    assert 'helo = "mail.example.test";' in conf  # the first of HOSTNAMES
    assert f'smtp = "{ADDRESS}";' in conf  # a loopback stack's internal address
    assert f"smtp_port = {POSTFIX_FRONT_PORT};" in conf
    assert "max_entries = 1000;" in conf and "keys_expire = 172800;" in conf
    assert "overrides/rspamd/dmarc.conf" in conf


def test_the_daily_sender_runs_only_with_reports_on_after_rspamd_and_postfix(root: Path) -> None:
    def names(**values: object) -> list[str]:
        layout = Layout(make_settings(root, ADDRESS, **values))
        return [service.name for service in enabled_services(layout)]

    assert "dmarc-reports" not in names()
    order = names(DMARC_SEND_REPORTS=True)
    assert order.index("dmarc-reports") > order.index("rspamd")
    assert order.index("dmarc-reports") > order.index("postfix")


def test_reports_are_refused_when_off_or_before_rspamd_runs_with_them(root: Path) -> None:
    off = Layout(make_settings(root, ADDRESS))
    with pytest.raises(sender.DmarcReportError, match="DMARC_SEND_REPORTS is false"):
        sender.send_day(off, date(2026, 12, 4))
    on = Layout(make_settings(root, ADDRESS, DMARC_SEND_REPORTS=True))
    with pytest.raises(sender.DmarcReportError, match=r"start the stack \(roost up\)"):
        sender.send_day(on, date(2026, 12, 4))
    # Rspamd's configuration was written while reports were off: its Redis has no data.
    RspamdService(off).render()
    with pytest.raises(sender.DmarcReportError, match="restart the stack"):
        sender.send_day(on, date(2026, 12, 4))


# -- when: the next run and the days due ----------------------------------------------------


def test_the_next_run_is_the_next_two_o_clock() -> None:
    assert next_run(datetime(2026, 12, 5, 1, 59)) == datetime(2026, 12, 5, 2, 0)
    assert next_run(datetime(2026, 12, 5, 2, 0)) == datetime(2026, 12, 6, 2, 0)
    assert next_run(datetime(2026, 12, 31, 23, 0)) == datetime(2027, 1, 1, 2, 0)


def test_yesterday_is_due_only_from_two_o_clock() -> None:
    assert latest_due(datetime(2026, 12, 5, 2, 0)) == date(2026, 12, 4)
    assert latest_due(datetime(2026, 12, 5, 1, 59)) == date(2026, 12, 3)
    assert latest_due(datetime(2027, 1, 1, 3, 0)) == date(2026, 12, 31)


def test_days_due_catch_up_a_missed_day_but_not_data_rspamd_has_dropped() -> None:
    now = datetime(2026, 12, 5, 9, 0)
    # Sent yesterday's already (a restart later in the day): nothing.
    assert days_due(date(2026, 12, 4), now) == []
    # Down over last night's 02:00: the missed day now.
    assert days_due(date(2026, 12, 3), now) == [date(2026, 12, 4)]
    # Down for two nights: both days, oldest first (Rspamd keeps two days).
    assert days_due(date(2026, 12, 2), now) == [date(2026, 12, 3), date(2026, 12, 4)]
    # Down for a week: older days have expired in Rspamd's Redis.
    assert days_due(date(2026, 11, 28), now) == [date(2026, 12, 3), date(2026, 12, 4)]
    # A first start: the latest day due only.
    assert days_due(None, now) == [date(2026, 12, 4)]
    # Before 02:00 the day before yesterday is the latest due.
    assert days_due(date(2026, 12, 3), datetime(2026, 12, 5, 1, 0)) == []


def test_days_are_rspamds_yyyymmdd() -> None:
    assert day_text(date(2026, 1, 2)) == "20260102"
    assert parse_day("20260102") == date(2026, 1, 2)
    assert index_key(date(2026, 1, 2)) == "dmarc_idx;20260102"
    for bad in ("2026-01-02", "20261302", "2026010", "yesterday", ""):
        with pytest.raises(ValueError, match="YYYYMMDD"):
            parse_day(bad)


# -- which: the cap --------------------------------------------------------------------------


def test_report_keys_name_domain_rua_and_day() -> None:
    key = parse_report_key("dmarc_rpt;example.org;mailto:dmarc@example.net;20261204")
    assert key is not None
    assert (key.domain, key.rua, key.day) == ("example.org", "mailto:dmarc@example.net", "20261204")
    for other in ("dmarc_idx;20261204", "dmarc_rpt;;x;20261204", "dmarc_rpt;a;b", "junk"):
        assert parse_report_key(other) is None


def test_the_cap_keeps_the_reports_with_the_most_messages() -> None:
    messages = {"small": 1, "big": 30, "middle": 7, "middle-too": 7}
    choice = choose_reports(messages, 2)
    assert choice.kept == ("big", "middle")  # equal counts: by key, whatever Redis's order
    assert choice.dropped == ("middle-too", "small")
    everything = choose_reports(messages, 1000)
    assert len(everything.kept) == 4 and everything.dropped == ()


def test_the_day_line_says_what_was_sent_dropped_and_wrong() -> None:
    def report(domain: str, messages: int) -> Report:
        key = parse_report_key(f"dmarc_rpt;{domain};mailto:r@{domain};20261204")
        assert key is not None
        return Report(key, messages, 1)

    result = DayResult(date(2026, 12, 4), dry_run=False, cap=2)
    result.kept = [report("a.example", 5), report("b.example", 3)]
    result.dropped = [report("c.example", 1)]
    result.sent, result.problems = 1, ["cannot resolve b.example._report._dmarc.b.example"]
    head, *detail = result.lines()
    assert head == (
        "DMARC reports for 20261204: 1 sent, 0 failed, 1 skipped, for 2 domains; "
        "1 over DMARC_REPORTS_PER_DAY=2 not sent; 1 problem"
    )
    assert "  dropped: c.example (rua mailto:r@c.example): 1 message, 1 row" in detail
    assert result.ok
    empty = DayResult(date(2026, 12, 4), dry_run=False, cap=2).lines()
    assert empty == ["DMARC reports for 20261204: none (no mail from a domain that asks for them)"]


# -- the record of the last day sent ----------------------------------------------------------


def test_the_last_day_sent_is_recorded_and_a_bad_record_means_a_first_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dmarc-reports" / "last-sent"
    assert daily.read_last_sent(path) is None
    daily.write_last_sent(path, date(2026, 12, 4))
    assert path.read_text() == "20261204\n"
    assert daily.read_last_sent(path) == date(2026, 12, 4)
    path.write_text("not a day\n")
    assert daily.read_last_sent(path) is None


def test_send_due_sends_each_missed_day_and_records_it(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = Layout(make_settings(root, ADDRESS, DMARC_SEND_REPORTS=True))
    daily.write_last_sent(daily.state_path(layout), date(2026, 12, 2))
    asked: list[date] = []

    def send(_layout: Layout, day: date, dry_run: bool = False) -> DayResult:
        asked.append(day)
        if day == date(2026, 12, 4):
            raise sender.DmarcReportError("Rspamd's Redis does not answer")
        return DayResult(day, dry_run, 1000)

    monkeypatch.setattr(daily, "send_day", send)
    # The second day fails (Redis away): the first is recorded, the second tried again.
    assert not daily.send_due(layout, datetime(2026, 12, 5, 2, 0))
    assert asked == [date(2026, 12, 3), date(2026, 12, 4)]
    assert daily.read_last_sent(daily.state_path(layout)) == date(2026, 12, 3)
    monkeypatch.setattr(
        daily, "send_day", lambda _l, day, dry_run=False: DayResult(day, dry_run, 1)
    )
    assert daily.send_due(layout, datetime(2026, 12, 5, 2, 10))
    assert daily.read_last_sent(daily.state_path(layout)) == date(2026, 12, 4)


class _Stop(Exception):
    pass


def test_the_daily_loop_sleeps_until_two_o_clock_then_sends_yesterday(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = Layout(make_settings(root, ADDRESS, DMARC_SEND_REPORTS=True))
    daily.write_last_sent(daily.state_path(layout), date(2026, 12, 4))
    now = [datetime(2026, 12, 5, 10, 0)]
    sent_at: list[tuple[date, datetime]] = []

    def send(_layout: Layout, day: date, dry_run: bool = False) -> DayResult:
        sent_at.append((day, now[0]))
        raise _Stop

    def sleep(seconds: float) -> None:
        assert 0 < seconds <= 300  # the clock is looked at again at least every 5 minutes
        now[0] = datetime.fromtimestamp(now[0].timestamp() + seconds)

    monkeypatch.setattr(daily, "send_day", send)
    with pytest.raises(_Stop):
        daily.run(layout, clock=lambda: now[0], sleep=sleep)
    # Nothing was due at 10:00 (yesterday's already sent); the next run is at 02:00.
    assert sent_at == [(date(2026, 12, 5), datetime(2026, 12, 6, 2, 0))]
