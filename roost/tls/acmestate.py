"""Where the ACME client (roost.tls.acme) leaves what its last run did, for ``roost status``."""

from __future__ import annotations

import json
from pathlib import Path

from roost.core.acme import AcmeState
from roost.layout import Layout
from roost.tls.sources import write_new

__all__ = ["read_state", "state_file", "write_state"]


def state_file(layout: Layout) -> Path:
    return layout.acme / "status.json"


def read_state(layout: Layout) -> AcmeState | None:
    """The last run's state, or None when there was none (or it cannot be read)."""
    try:
        data = json.loads(state_file(layout).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return AcmeState.from_json(data) if isinstance(data, dict) else None


def write_state(layout: Layout, state: AcmeState) -> None:
    data = json.dumps(state.to_json(), indent=1) + "\n"
    write_new(state_file(layout), data.encode(), 0o644)
