"""When a login's submitted mail is mostly spam, hold it (Roost's own rule; Mailu has none).

A stolen password is used to send as much spam as the server lets through, and a few
hours of it put the domain on block lists. Rspamd scores every message a login submits;
the gate hears each verdict (``roost/gate/holds.py``) and asks this rule whether the
login should now be held. A held login's further messages wait in Postfix's hold queue
(access(5) ``HOLD``) until the postmaster releases or deletes them.

The rule, SPAM_HOLD_RATE and SPAM_HOLD_RATIO: within the rate's moving period, at least
its amount of the login's messages got a spam verdict, and those are at least the ratio
(per cent) of all its messages that got a verdict then. The amount keeps a single odd
message from holding anyone; the ratio keeps a busy sender whose few newsletters look
spammy from being held, while a stolen login, whose mail is nearly all spam, is held
after the first few.

Pure: the caller passes the time, so the rule is tested without waiting.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from roost.core.ratelimit import parse_rate

__all__ = ["HoldRule", "Tally", "VerdictWindows", "is_spam_action"]

#: Rspamd's actions (https://rspamd.com/doc/configuration/metrics.html) that say "spam".
#: A reject counts as well: the message did not leave, but its sender tried.
SPAM_ACTIONS = frozenset({"reject", "rewrite subject", "add header"})
#: Actions that say "not spam". ``soft reject`` says neither (a scanner was away, a
#: rate limit): such a verdict is not counted at all.
HAM_ACTIONS = frozenset({"no action", "greylist"})


def is_spam_action(action: str) -> bool | None:
    """True for a spam verdict, False for a clean one, None when the action judged nothing."""
    if action in SPAM_ACTIONS:
        return True
    if action in HAM_ACTIONS:
        return False
    return None


@dataclass(frozen=True, slots=True)
class HoldRule:
    """``spam`` spam verdicts within ``seconds``, making at least ``ratio`` per cent."""

    spam: int
    seconds: int
    ratio: int

    @classmethod
    def parse(cls, rate: str, ratio: int) -> HoldRule:
        """From SPAM_HOLD_RATE (``10/hour``) and SPAM_HOLD_RATIO (per cent)."""
        parsed = parse_rate(rate)
        return cls(parsed.amount, parsed.seconds, ratio)

    @property
    def enabled(self) -> bool:
        """An amount of 0 (``0/hour``) turns holding off."""
        return self.spam > 0

    def holds(self, spam: int, total: int) -> bool:
        return self.enabled and spam >= self.spam and spam * 100 >= self.ratio * total


@dataclass(frozen=True, slots=True)
class Tally:
    """A login's verdicts within the period, when the rule was asked."""

    spam: int
    total: int


class _Window:
    __slots__ = ("spam", "verdicts")

    def __init__(self) -> None:
        self.verdicts: deque[tuple[float, bool]] = deque()
        self.spam = 0

    def trim(self, since: float) -> None:
        verdicts = self.verdicts
        while verdicts and verdicts[0][0] <= since:
            _, was_spam = verdicts.popleft()
            self.spam -= was_spam


class VerdictWindows:
    """Each login's verdicts over the rule's period, in memory.

    Bounded: a login keeps at most :attr:`PER_LOGIN` verdicts (the oldest go first, which
    only makes the ratio follow the newest mail), and logins whose windows have emptied
    are swept out once more than :attr:`SWEEP_AT` are tracked.
    """

    PER_LOGIN = 10_000
    SWEEP_AT = 50_000

    def __init__(self, rule: HoldRule) -> None:
        self.rule = rule
        self._windows: dict[str, _Window] = {}

    def record(self, login: str, spam: bool, now: float) -> Tally | None:
        """Count one verdict; the tally when the login now meets the rule, else None."""
        if not self.rule.enabled:
            return None
        window = self._windows.get(login)
        if window is None:
            if len(self._windows) >= self.SWEEP_AT:
                self._sweep(now)
            window = self._windows[login] = _Window()
        window.trim(now - self.rule.seconds)
        if len(window.verdicts) >= self.PER_LOGIN:
            window.spam -= window.verdicts.popleft()[1]
        window.verdicts.append((now, spam))
        window.spam += spam
        if self.rule.holds(window.spam, len(window.verdicts)):
            return Tally(window.spam, len(window.verdicts))
        return None

    def forget(self, login: str) -> None:
        """Start the login's count over (it was released: old verdicts must not hold it
        again at its next message)."""
        self._windows.pop(login, None)

    def _sweep(self, now: float) -> None:
        since = now - self.rule.seconds
        for login, window in list(self._windows.items()):
            window.trim(since)
            if not window.verdicts:
                del self._windows[login]

    def __len__(self) -> int:
        return len(self._windows)
