"""Fetches: remote POP3/IMAP accounts fetched into a user's mailbox (Mailu's ``fetch``).

Roost has no fetcher yet; fetches are kept so that an export from Mailu survives an
import and an export back. ``last_check`` and ``error`` are run-time state, exported only
with ``--full``; the password is a secret, hidden unless ``--secrets``.
"""

from __future__ import annotations

from typing import Any

from roost.store.entities.fields import (
    Field,
    boolean,
    choice,
    integer,
    moment,
    optional,
    text,
)

__all__ = ["FIELDS", "MATCH", "NEEDED"]


def _folders(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(i, str) and "," not in i for i in value):
        raise ValueError("expected a list of folder names without commas")
    return value


FIELDS: tuple[Field, ...] = (
    Field("id"),
    Field("comment", text(255), "", read=lambda f: f.comment or ""),
    Field("error", optional(text(1023)), None, full_only=True),
    Field("folders", _folders, (), read=lambda f: list(f.folders or [])),
    # Mailu's template shows hash_password on fetches too; fetchmail needs the plaintext,
    # so the flag is accepted and the password kept as given.
    Field("hash_password", default=False, exported=False),
    Field("host", text(255, required=True)),
    Field("invisible", boolean, False),
    Field("keep", boolean, False),
    Field("last_check", optional(moment), None, full_only=True),
    Field("password"),
    Field("port", integer(1, 65535)),
    Field("protocol", choice("imap", "pop3")),
    Field("scan", boolean, False),
    Field("tls", boolean, False),
    Field("username", text(255, required=True)),
)

#: What identifies a fetch without an id when merging (``--update``).
MATCH = ("host", "port", "protocol", "username")
#: What a new fetch must be given (with its password).
NEEDED = MATCH
