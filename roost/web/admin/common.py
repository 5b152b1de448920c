"""What the administration pages share: forms, searched and paged lists, lookups with the
rank rule, the confirmation page, notices, redirects."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from roost.settings import Settings
from roost.store import work
from roost.store.entities.names import ManageError, domain_name, parse_email
from roost.store.models import Alias, Alternative, Domain, Relay, User
from roost.web.admin import rights
from roost.web.auth import Account
from roost.web.sessions import get_session
from roost.web.templating import render

__all__ = [
    "PER_PAGE",
    "Deletion",
    "Pager",
    "add_delete_pages",
    "checked",
    "confirm",
    "find_alias",
    "find_alternative",
    "find_domain",
    "find_relay",
    "find_user",
    "form_of",
    "listing",
    "managed_domain",
    "matching",
    "page",
    "parse_count",
    "parse_size",
    "redirect",
    "say",
    "settings_of",
    "show",
    "show_size",
]

#: Rows per list page: a screenful on a desktop, a short scroll on a phone.
PER_PAGE = 50
#: Longest search text taken from a query string.
SEARCH_MAX = 100

_Row = TypeVar("_Row", Domain, Alternative, Relay, User, Alias)
_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


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


def _stored_alias(text: str) -> str:
    # A wildcard alias's local part is a LIKE pattern ('%'), which the address parser refuses.
    try:
        return parse_email(text)
    except ManageError:
        return text.strip().lower()


def _found(session: Session, model: type[_Row], stored: Callable[[str], str], text: str) -> _Row:
    """The row of ``model`` whose key is ``stored(text)``; a 404 when the text names nothing
    (unreadable or absent alike: a path that names nothing is not a form error)."""
    try:
        found = session.get(model, stored(text))
    except ManageError:
        found = None
    if found is None:
        raise HTTPException(status_code=404)
    return found


def find_domain(session: Session, name: str) -> Domain:
    return _found(session, Domain, domain_name, name)


def find_alternative(session: Session, name: str) -> Alternative:
    return _found(session, Alternative, domain_name, name)


def find_relay(session: Session, name: str) -> Relay:
    return _found(session, Relay, domain_name, name)


def find_user(session: Session, email: str) -> User:
    return _found(session, User, parse_email, email)


def find_alias(session: Session, email: str) -> Alias:
    return _found(session, Alias, _stored_alias, email)


def managed_domain(session: Session, account: Account, name: str) -> Domain:
    """The domain ``name`` if ``account`` manages it: 404 when absent, 403 when not theirs.

    Every page under a domain starts here, so none can forget the rank rule."""
    found = find_domain(session, name)
    rights.require_domain(account, found.name)
    return found


def listing(
    session: Session,
    request: Request,
    query: _Query,
    order: InstrumentedAttribute[Any],
    *searched: InstrumentedAttribute[Any],
) -> tuple[Pager, _Query]:
    """``query`` narrowed to this request's search over ``searched`` and cut to its page.

    The list pages share it so that searching, counting and paging happen in SQL the same
    way everywhere: a domain with 10,000 users reads 50 rows, not 10,000. Returns the pager
    (for the links) and the query for the page's rows, in ``order``.
    """
    condition = matching(search_text(request), *searched)
    if condition is not None:
        query = query.where(condition)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pager = page(request, total)
    return pager, query.order_by(order).limit(pager.per_page).offset(pager.offset)


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


@dataclass(frozen=True, slots=True)
class Deletion:
    """One object to delete, as both its confirmation page and its POST need it: the question,
    where each answer leads, and the entity operation that deletes it (in the POST's unit of
    work)."""

    title: str
    message: str
    button: str
    #: The stored form of the path the POST goes to (the page may have been reached by
    #: another spelling of the name).
    action: str
    back: str
    notice: str
    delete: Callable[[Session], object]
    #: Where the browser goes once it is done ("": back where it came from).
    after: str = ""
    #: A user whose web sessions end with the deletion ("" for none).
    signs_out: str = ""


def add_delete_pages(
    router: APIRouter,
    path: str,
    guard: Callable[..., Any],
    prepare: Callable[..., Deletion],
) -> None:
    """The two routes that delete one kind of object: GET ``path`` asks, POST ``path`` does it.

    A link never deletes: only the confirmation page's POST (with its CSRF token) does. Both
    routes call ``prepare(db, account, **path_parameters)``, which finds the object and
    applies the rights check (404 or 403 from there), so the POST checks exactly what the
    page it came from checked, and every kind of object asks and answers the same way.
    """

    @router.get(path, name=f"ask {path}")
    async def ask(
        request: Request,
        account: Account = Depends(guard),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            deletion = prepare(db, account, **request.path_params)
        return confirm(
            request,
            account,
            title=deletion.title,
            message=deletion.message,
            action=deletion.action,
            back=deletion.back,
            button=deletion.button,
        )

    @router.post(path, name=f"delete {path}")
    async def delete(
        request: Request,
        account: Account = Depends(guard),  # noqa: B008
    ) -> Response:
        with work.change(settings_of(request)) as db:
            deletion = prepare(db, account, **request.path_params)
            deletion.delete(db)
        if deletion.signs_out:
            await request.app.state.sessions.delete_user(deletion.signs_out)
        say(request, deletion.notice)
        return redirect(deletion.after or deletion.back)


def confirm(
    request: Request,
    account: Account,
    *,
    title: str,
    message: str,
    action: str,
    back: str,
    button: str,
) -> Response:
    """A confirmation page that is not a deletion (revoking a right): ``action`` is where its
    POST goes, ``back`` where Cancel leads."""
    context = {"title": title, "message": message, "action": action, "back": back}
    return show(request, account, "confirm.html", {**context, "button": button})
