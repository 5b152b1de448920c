"""How many requests of each kind the gate has answered since it started.

Every round trip a daemon makes to the gate costs both sides CPU, so the count per message
is what the inbound path's cost is tuned by (docs/performance.md, "Round trips per inbound
message"); timing on a shared machine is too noisy to show one lookup more or less. The
counts are reported by ``GET /health`` and read by ``bench/gate_round_trips.py``.

Kinds are short strings, ``<protocol> <what>``: ``socketmap <map>``, ``dict <name>
connection`` / ``lookup`` / ``commit``, ``http <route>``. Counting is one dict increment on
the event loop's thread, so it needs no lock.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["RequestCounters"]


class RequestCounters:
    """A counter per request kind; :meth:`snapshot` gives them sorted by name."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def count(self, kind: str) -> None:
        self._counts[kind] += 1

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self._counts.items()))
