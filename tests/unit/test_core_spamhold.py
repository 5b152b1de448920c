"""The held-sender rule: enough spam within the period, and mostly spam."""

from __future__ import annotations

import pytest

from roost.core.ratelimit import RateError
from roost.core.spamhold import HoldRule, Tally, VerdictWindows, is_spam_action

RULE = HoldRule.parse("3/hour", 50)


@pytest.mark.parametrize(
    ("action", "spam"),
    [
        ("reject", True),
        ("add header", True),
        ("rewrite subject", True),
        ("no action", False),
        ("greylist", False),
        ("soft reject", None),
        ("something new", None),
    ],
)
def test_actions_are_read_as_spam_clean_or_no_verdict(action: str, spam: bool | None) -> None:
    assert is_spam_action(action) is spam


def test_the_rule_reads_the_settings_notation() -> None:
    assert HoldRule.parse("10/hour", 50) == HoldRule(10, 3600, 50)
    assert HoldRule.parse("5 per 2 days", 80) == HoldRule(5, 172800, 80)
    assert not HoldRule.parse("0/hour", 50).enabled
    with pytest.raises(RateError):
        HoldRule.parse("ten", 50)


def test_a_login_is_held_at_the_spam_count_when_its_mail_is_mostly_spam() -> None:
    windows = VerdictWindows(RULE)
    assert windows.record("a@x.test", True, 0.0) is None
    assert windows.record("a@x.test", False, 1.0) is None
    assert windows.record("a@x.test", True, 2.0) is None
    assert windows.record("a@x.test", True, 3.0) == Tally(3, 4)


def test_a_busy_sender_with_a_few_spammy_messages_is_not_held() -> None:
    windows = VerdictWindows(RULE)
    for second in range(10):
        assert windows.record("busy@x.test", False, float(second)) is None
    for second in range(10, 19):
        # 9 spam of 19: over the count, under half.
        assert windows.record("busy@x.test", True, float(second)) is None
    assert windows.record("busy@x.test", True, 19.0) == Tally(10, 20)


def test_old_verdicts_leave_the_window() -> None:
    windows = VerdictWindows(RULE)
    windows.record("a@x.test", True, 0.0)
    windows.record("a@x.test", True, 10.0)
    # The first is an hour old by now: two spam within the hour, not three.
    assert windows.record("a@x.test", True, 3600.0) is None
    assert windows.record("a@x.test", True, 3601.0) == Tally(3, 3)


def test_logins_are_counted_apart_and_forgetting_starts_over() -> None:
    windows = VerdictWindows(RULE)
    for second in range(2):
        windows.record("a@x.test", True, float(second))
        windows.record("b@x.test", True, float(second))
    windows.forget("a@x.test")
    assert windows.record("a@x.test", True, 5.0) is None
    assert windows.record("b@x.test", True, 5.0) == Tally(3, 3)


def test_holding_off_counts_nothing() -> None:
    windows = VerdictWindows(HoldRule.parse("0/hour", 50))
    for second in range(20):
        assert windows.record("a@x.test", True, float(second)) is None
    assert len(windows) == 0


def test_memory_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(VerdictWindows, "PER_LOGIN", 4)
    monkeypatch.setattr(VerdictWindows, "SWEEP_AT", 3)
    windows = VerdictWindows(RULE)
    for second in range(6):
        windows.record("a@x.test", second >= 4, float(second))
    # Only the newest four count: two spam of four.
    assert windows.record("a@x.test", True, 6.0) == Tally(3, 4)
    windows.record("b@x.test", False, 7.0)
    windows.record("c@x.test", False, 8.0)
    # A fourth login an hour later: the emptied windows are swept out first.
    windows.record("d@x.test", False, 4000.0)
    assert len(windows) == 1
