"""What config-export and config-import share: Mailu's sections, keys and defaults."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.settings import Settings
from roost.store.models import Alias, Domain, Relay, User

HIDDEN = "<hidden>"
SECTIONS = ("domain", "user", "alias", "relay")
#: Object kinds in the order the counters list them.
KINDS = ("domain", "alternative", "user", "token", "fetch", "alias", "relay")
PRUNE = "-prune-"

REQUIRED = object()  # a field with no default: always exported, needed to create


class ConfigValidationError(Exception):
    """The document cannot be imported; ``errors`` holds ``(path, message)`` pairs."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} errors occurred during input validation")

    def lines(self) -> list[str]:
        """Mailu's report: one headline, then ``- <path> : <message>`` per problem."""
        return [f"[ValidationError] {self}"] + [f"- {p} : {m}" for p, m in self.errors]


KEYS = {"domain": "name", "user": "email", "alias": "email", "relay": "name"}


def default_values(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each field's default; ``REQUIRED`` fields have none. Import fills in the same."""
    return {
        "domain": {
            "name": REQUIRED,
            "alternatives": [],
            "anonmail_enabled": False,
            "comment": "",
            "dkim_key": "",
            "max_aliases": -1,
            "max_quota_bytes": 0,
            "max_users": -1,
            "signup_enabled": False,
        },
        "user": {
            "email": REQUIRED,
            "allow_spoofing": False,
            "change_pw_next_login": False,
            "comment": "",
            "displayed_name": "",
            "enable_imap": True,
            "enable_pop": True,
            "enabled": True,
            "fetches": [],
            "forward_destination": [],
            "forward_enabled": False,
            "forward_keep": True,
            "global_admin": False,
            "manager_of": [],
            "password": REQUIRED,
            "quota_bytes": settings.DEFAULT_QUOTA,
            "reply_body": None,
            "reply_enabled": False,
            "reply_enddate": "2999-12-31",
            "reply_startdate": "1900-01-01",
            "reply_subject": None,
            "spam_enabled": True,
            "spam_mark_as_read": True,
            "spam_threshold": settings.DEFAULT_SPAM_THRESHOLD,
            "tokens": [],
        },
        "token": {"id": REQUIRED, "comment": "", "ip": [], "password": REQUIRED},
        "fetch": {
            "id": REQUIRED,
            "comment": "",
            "error": None,
            "folders": [],
            "host": REQUIRED,
            "invisible": False,
            "keep": False,
            "last_check": None,
            "password": REQUIRED,
            "port": REQUIRED,
            "protocol": REQUIRED,
            "scan": False,
            "tls": False,
            "username": REQUIRED,
        },
        "alias": {
            "email": REQUIRED,
            "comment": "",
            "destination": REQUIRED,
            "disabled": False,
            "hostname": None,
            "owner_email": None,
            "wildcard": False,
        },
        "relay": {"name": REQUIRED, "comment": "", "smtp": ""},
    }


#: Exported only with ``full``: run-time state of a fetch, not configuration.


def all_rows(session: Session, section: str) -> list[Any]:
    model = {"domain": Domain, "user": User, "alias": Alias, "relay": Relay}[section]
    key = Domain.name if model is Domain else Relay.name if model is Relay else model.email
    return list(session.scalars(select(model).order_by(key)))
