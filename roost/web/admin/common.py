"""What the administration pages share: forms, paging, lookups, notices, redirects."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import ColumnElement, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from roost.settings import Settings
from roost.store.entities.names import ManageError, domain_name, parse_email
from roost.store.models import Alias, Domain, User
from roost.web.auth import Account
from roost.web.sessions import get_session
from roost.web.templating import render

__all__ = [
    "PER_PAGE",
    "Pager",
    "checked",
    "find_alias",
    "find_domain",
    "find_user",
    "form_of",
    "matching",
    "page",
    "parse_count",
    "parse_size",
    "redirect",
    "say",
    "settings_of",
    "show_size",
]

#: Rows per list page: a screenful on a desktop, a short scroll on a phone.
PER_PAGE = 50
#: Longest search text taken from a query string.
SEARCH_MAX = 100


def settings_of(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


@dataclass(frozen=True, slots=True)
class Pager:
    """One page of a list: which rows to read (LIMIT/OFFSET) and the links around it."""

    q: str
    number: int
    total: int
    per_page: int = PER_PAGE

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.per_page

    @property
    def previous(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def next(self) -> int | None:
        return self.number + 1 if self.number < self.pages else None


def page_number(text: str | None) -> int:
    try:
        return max(1, min(int(text or "1"), 10**6))
    except ValueError:
        return 1


def search_text(request: Request) -> str:
    return (request.query_params.get("q") or "").strip()[:SEARCH_MAX]


def page(request: Request, total: int) -> Pager:
    """The pager for this request's ``q`` and ``page``; a page past the end shows the last."""
    pager = Pager(search_text(request), page_number(request.query_params.get("page")), total)
    if pager.number > pager.pages:
        pager = Pager(pager.q, pager.pages, total)
    return pager


def matching(q: str, *columns: InstrumentedAttribute[Any]) -> ColumnElement[bool] | None:
    """``q`` as a substring of any of ``columns`` (LIKE with its wildcards escaped)."""
    if not q:
        return None
    escaped = re.sub(r"([\\%_])", r"\\\1", q.lower())
    return or_(*(column.like(f"%{escaped}%", escape="\\") for column in columns))


async def form_of(request: Request) -> dict[str, str]:
    """The posted form as text fields (the CSRF check has parsed it already)."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def checked(form: dict[str, str], name: str) -> bool:
    """An HTML checkbox: sent (as ``on``) when ticked, absent when not."""
    return form.get(name, "") in ("on", "1", "true", "yes")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str, what: str) -> int:
    """Bytes from ``1000000``, ``500M``, ``1.5 GB`` (decimal units, as the pages show them)."""
    match = _SIZE.match(text)
    if not match:
        raise ManageError(f"{what} {text!r}: give bytes or a size such as 500M or 2G")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def show_size(value: int) -> str:
    """Bytes as the shortest exact form :func:`parse_size` reads back (2000000000 -> 2G)."""
    for unit in ("T", "G", "M", "K"):
        if value and value % _UNITS[unit.lower()] == 0:
            return f"{value // _UNITS[unit.lower()]}{unit}"
    return str(value)


def parse_count(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ManageError(f"{what} {text!r}: give a whole number (-1: unlimited)") from None


def _not_found() -> HTTPException:
    return HTTPException(status_code=404)


def find_domain(session: Session, name: str) -> Domain:
    try:
        found = session.get(Domain, domain_name(name))
    except ManageError:
        found = None
    if found is None:
        raise _not_found()
    return found


def find_user(session: Session, email: str) -> User:
    try:
        found = session.get(User, parse_email(email))
    except ManageError:
        found = None
    if found is None:
        raise _not_found()
    return found


def find_alias(session: Session, email: str) -> Alias:
    try:
        found = session.get(Alias, parse_email(email))
    except ManageError:
        found = session.get(Alias, email.strip().lower())
    if found is None:
        raise _not_found()
    return found


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def say(request: Request, notice: str) -> None:
    """A one-line notice for the next page (after the redirect of a done change)."""
    get_session(request)["notice"] = notice


def show(
    request: Request,
    account: Account,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    """Render an administration page with the account and any pending notice."""
    values: dict[str, Any] = {
        "account": account,
        "notice": get_session(request).pop("notice"),
    }
    values.update(context or {})
    return render(request, "admin/" + template, values, status_code=status_code)
