"""Settings, app tokens and fetched accounts of one user, under WEB_ADMIN.

Three pages, as Mailu's user settings offer them (https://mailu.io/master/webadministration.html):
forwarding, auto-reply and spam filing (each its own form); app tokens (per-client
passwords) listed, made and deleted; remote POP3/IMAP accounts to fetch mail from (the
fetcher, roost.fetcher, records each one's last check and error, shown here).

Each page serves two cases with one handler, told apart by the path (:data:`PAGES`):

* the signed-in user's own: ``/account/settings``, ``/account/tokens``,
  ``/account/fetches`` and below;
* a user given by address, at Mailu's paths: ``/user/usersettings/<email>``,
  ``/token/list/<email>``, ``/fetch/list/<email>`` and below. The page's owner is the
  user themself, a global administrator, or a domain manager whom the rank rule
  (:mod:`roost.web.admin.rights`) lets act on that user; anyone else gets 403 and nothing
  changes (an account that manages no domain gets 403 for every address but its own,
  existing or not, so it learns nothing; a manager gets 404 for an address that is no
  user).

Every change goes through the entity rules (:mod:`roost.store.entities`) and the unit of
work (:mod:`roost.store.work`). A token or fetch id is looked up with its owner's address,
so another user's id is "not found" and nothing changes. A new token's secret is shown
once, in the answer to the form that made it, and never written to a log; a fetch password
is never shown back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from roost.store import work
from roost.store.entities import fetch as fetch_entity
from roost.store.entities import token as token_entity
from roost.store.entities import user as user_entity
from roost.store.entities.names import ManageError, parse_email, require_user, show_email
from roost.store.models import Fetch, User
from roost.web.admin import rights
from roost.web.auth import Account, Forbidden, current_user, settings_of
from roost.web.client import client_info
from roost.web.csrf import html_router
from roost.web.templating import render

__all__ = ["PAGES", "Owner", "build_router", "page_owner"]

log = logging.getLogger("roost.web")

#: Each page's path under WEB_ADMIN: (the signed-in user's own, a user given by address).
PAGES: dict[str, tuple[str, str]] = {
    "settings": ("/account/settings", "/user/usersettings/{email}"),
    "save": ("/account/settings/{section}", "/user/usersettings/{email}/{section}"),
    "tokens": ("/account/tokens", "/token/list/{email}"),
    "token_create": ("/account/tokens", "/token/create/{email}"),
    "token_delete": ("/account/tokens/{token_id}/delete", "/token/delete/{email}/{token_id}"),
    "fetches": ("/account/fetches", "/fetch/list/{email}"),
    "fetch_new": ("/account/fetches/new", "/fetch/create/{email}"),
    "fetch": ("/account/fetches/{fetch_id}", "/fetch/edit/{email}/{fetch_id}"),
    "fetch_delete": ("/account/fetches/{fetch_id}/delete", "/fetch/delete/{email}/{fetch_id}"),
}

NOTICES = {
    "forward": "Forwarding saved.",
    "reply": "Auto-reply saved.",
    "spam": "Spam settings saved.",
    "deleted": "Deleted.",
    "saved": "Saved.",
    "added": "Added.",
}


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose pages these are, and who is looking at them."""

    account: Account
    email: str
    by_address: bool
    admin: str

    @property
    def shown(self) -> str:
        return show_email(self.email)

    @property
    def acting(self) -> bool:
        """Someone else's pages, opened by an administrator."""
        return self.email != self.account.email

    def url(self, page: str, **params: object) -> str:
        """The path of ``page`` for this owner, in the form this request used."""
        own, other = PAGES[page]
        if self.by_address:
            return self.admin + other.format(email=quote(self.email, safe="@+"), **params)
        return self.admin + own.format(**params)


async def page_owner(
    request: Request,
    account: Account = Depends(current_user),  # noqa: B008
) -> Owner:
    """The owner of the page asked for: the path's ``email``, if the account may act on it."""
    settings = settings_of(request)
    admin = request.app.state.paths["admin"]
    address = request.path_params.get("email")
    if address is None:
        return Owner(account, account.email, False, admin)
    try:
        email: str | None = parse_email(address)
    except ManageError:
        email = None
    if email == account.email:
        return Owner(account, email, True, admin)
    if not account.has_role("manager"):
        raise Forbidden()
    with work.read(settings) as db:
        user = db.get(User, email) if email else None
        if user is None:
            raise HTTPException(status_code=404)
        rights.require_user(account, rights.Target.of(user))
        return Owner(account, user.email, True, admin)


def _checked(form: dict[str, str], name: str) -> bool:
    """An HTML checkbox: sent (as ``on``) when ticked, absent when not."""
    return form.get(name, "") in ("on", "1", "true", "yes")


async def _form(request: Request) -> dict[str, str]:
    data = await request.form()
    return {k: v for k, v in data.items() if isinstance(v, str) and k != "csrf_token"}


def _log(request: Request, what: str, owner: Owner) -> None:
    """One line per change, for the administrator; never a secret."""
    info = client_info(request)
    whose = f" of {owner.email}" if owner.acting else ""
    log.info(
        "Self-service %s%s by %s from: %s/%s: success",
        what,
        whose,
        owner.account.email,
        info.ip,
        info.port,
    )


def _show(
    request: Request, owner: Owner, template: str, context: dict[str, Any], status: int = 200
) -> Response:
    values = {"account": owner.account, "owner": owner, **context}
    return render(request, "self/" + template, values, status_code=status)


# -- settings: forwarding, auto-reply, spam ------------------------------------------------


def _settings_form(user: User) -> dict[str, str]:
    flags = (
        "forward_enabled",
        "forward_keep",
        "reply_enabled",
        "spam_enabled",
        "spam_mark_as_read",
    )
    form = {flag: "on" if getattr(user, flag) else "" for flag in flags}
    form.update(
        forward_destination=", ".join(show_email(a) for a in user.forward_destination or []),
        spam_threshold=str(user.spam_threshold),
        reply_subject=user.reply_subject or "",
        reply_body=user.reply_body or "",
        reply_startdate=""
        if user.reply_startdate == user_entity.REPLY_START_DEFAULT
        else user.reply_startdate.isoformat(),
        reply_enddate=""
        if user.reply_enddate == user_entity.REPLY_END_DEFAULT
        else user.reply_enddate.isoformat(),
    )
    return form


def _apply_forward(db: Any, email: str, form: dict[str, str]) -> None:
    destination = form.get("forward_destination", "").strip()
    user_entity.set_forward(
        db,
        email,
        destination or None,
        keep=_checked(form, "forward_keep"),
        enabled=_checked(form, "forward_enabled"),
    )


def _apply_reply(db: Any, email: str, form: dict[str, str]) -> None:
    user_entity.set_autoreply(
        db,
        email,
        enabled=_checked(form, "reply_enabled"),
        subject=form.get("reply_subject", "").strip(),
        body=form.get("reply_body", "").replace("\r\n", "\n"),
        start=user_entity.parse_reply_date(
            form.get("reply_startdate", ""), user_entity.REPLY_START_DEFAULT
        ),
        end=user_entity.parse_reply_date(
            form.get("reply_enddate", ""), user_entity.REPLY_END_DEFAULT
        ),
    )


def _apply_spam(db: Any, email: str, form: dict[str, str]) -> None:
    try:
        threshold = int(form.get("spam_threshold", "").strip())
    except ValueError:
        raise ManageError("spam threshold: give a whole number from 0 to 100") from None
    user_entity.set_spam(
        db,
        email,
        enabled=_checked(form, "spam_enabled"),
        mark_as_read=_checked(form, "spam_mark_as_read"),
        threshold=threshold,
    )


_APPLY = {"forward": _apply_forward, "reply": _apply_reply, "spam": _apply_spam}


def _settings_page(
    request: Request,
    owner: Owner,
    *,
    typed: dict[str, str] | None = None,
    section: str = "",
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    with work.read(settings_of(request)) as db:
        stored = _settings_form(require_user(db, owner.email))
    forms = {name: stored for name in _APPLY}
    if typed is not None:
        forms[section] = typed
    context = {"forms": forms, "section": section, "error": error, "notice": notice}
    return _show(request, owner, "settings.html", context, status)


# -- app tokens -----------------------------------------------------------------------------


def _tokens_page(
    request: Request,
    owner: Owner,
    *,
    created: str | None = None,
    typed: dict[str, str] | None = None,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    with work.read(settings_of(request)) as db:
        rows = [
            {
                "id": t.id,
                "comment": t.comment or "",
                "networks": list(t.ip or []),
                "created": t.created_at,
            }
            for t in token_entity.list_tokens(db, owner.email)
        ]
    context = {
        "tokens": rows,
        "created": created,
        "form": typed or {},
        "error": error,
        "notice": notice,
    }
    response = _show(request, owner, "tokens.html", context, status)
    if created:
        # The secret is in this answer only: no cache keeps it (render sets no-store too).
        response.headers["Cache-Control"] = "no-store"
    return response


# -- fetched accounts ---------------------------------------------------------------------


def _fetching(request: Request) -> None:
    """No fetched-account pages while nothing fetches them (FETCHMAIL_ENABLED false)."""
    if not settings_of(request).FETCHMAIL_ENABLED:
        raise HTTPException(status_code=404)


def _own_fetch(db: Any, email: str, fetch_id: int) -> Fetch:
    """The user's fetch ``fetch_id``; anyone else's is "not found"."""
    try:
        return fetch_entity.user_fetch(db, email, fetch_id)
    except ManageError:
        raise HTTPException(status_code=404) from None


def _fetch_settings(form: dict[str, str]) -> fetch_entity.FetchSettings:
    """The form's values; the fetch entity checks them."""
    port_text = form.get("port", "").strip()
    try:
        port = int(port_text) if port_text else None
    except ValueError:
        raise ManageError("port: give a whole number from 1 to 65535") from None
    return fetch_entity.FetchSettings(
        protocol=form.get("protocol", "").strip(),
        host=form.get("host", ""),
        username=form.get("username", ""),
        tls=_checked(form, "tls"),
        port=port,
        password=form.get("password", "") or None,
        keep=_checked(form, "keep"),
        comment=form.get("comment", ""),
        scan=_checked(form, "scan"),
        invisible=_checked(form, "invisible"),
        folders=tuple(form.get("folders", "").split(",")),
    )


def _fetch_form(row: Fetch) -> dict[str, str]:
    """A stored fetch as its form shows it: everything but the password."""
    return {
        "protocol": row.protocol,
        "host": row.host,
        "port": str(row.port),
        "tls": "on" if row.tls else "",
        "keep": "on" if row.keep else "",
        "scan": "on" if row.scan else "",
        "invisible": "on" if row.invisible else "",
        "folders": ", ".join(row.folders or ()),
        "username": row.username,
        "comment": row.comment or "",
    }


def _fetch_page(
    request: Request,
    owner: Owner,
    form: dict[str, str],
    *,
    fetch_id: int | None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    form = {k: v for k, v in form.items() if k != "password"}
    context = {"form": form, "fetch_id": fetch_id, "error": error}
    return _show(request, owner, "fetch_form.html", context, status)


# -- the router ---------------------------------------------------------------------------

Handler = Callable[..., Any]


def build_router(admin: str) -> APIRouter:
    """The pages (no prefix: the account router, at ``admin``, adds it; the links they
    make take it from the application's paths, in :class:`Owner`)."""
    router = html_router()
    owner_of = Depends(page_owner)

    def route(method: str, page: str) -> Callable[[Handler], Handler]:
        """Serve ``page`` at both its paths with the one handler."""

        def register(handler: Handler) -> Handler:
            # The fetched-account pages answer 404 unless FETCHMAIL_ENABLED, as Mailu's.
            extra = [Depends(_fetching)] if page.startswith("fetch") else []
            for path in PAGES[page]:
                router.add_api_route(path, handler, methods=[method], dependencies=extra)
            return handler

        return register

    def done(owner: Owner, page: str, msg: str, anchor: str = "") -> Response:
        return RedirectResponse(f"{owner.url(page)}?msg={msg}{anchor}", status_code=303)

    # -- settings

    @route("GET", "settings")
    async def settings_page(request: Request, owner: Owner = owner_of, msg: str = "") -> Response:
        return _settings_page(request, owner, notice=NOTICES.get(msg))

    @route("POST", "save")
    async def save_settings(request: Request, section: str, owner: Owner = owner_of) -> Response:
        apply = _APPLY.get(section)
        if apply is None:
            raise HTTPException(status_code=404)
        form = await _form(request)
        try:
            with work.change(settings_of(request)) as db:
                apply(db, owner.email, form)
        except ManageError as exc:
            return _settings_page(
                request, owner, typed=form, section=section, error=str(exc), status=400
            )
        _log(request, f"{section} change", owner)
        return done(owner, "settings", section, f"#{section}")

    # -- tokens

    @route("GET", "tokens")
    async def tokens(request: Request, owner: Owner = owner_of, msg: str = "") -> Response:
        return _tokens_page(request, owner, notice=NOTICES.get(msg))

    @route("POST", "token_create")
    async def create_token(request: Request, owner: Owner = owner_of) -> Response:
        form = await _form(request)
        try:
            comment = form.get("comment", "").strip()
            networks = [form.get("networks", "")]
            with work.change(settings_of(request)) as db:
                _token, raw = token_entity.add_token(db, owner.email, comment, networks)
        except ManageError as exc:
            return _tokens_page(request, owner, typed=form, error=str(exc), status=400)
        _log(request, "token creation", owner)
        return _tokens_page(request, owner, created=raw)

    @route("POST", "token_delete")
    async def delete_token(request: Request, token_id: int, owner: Owner = owner_of) -> Response:
        try:
            with work.change(settings_of(request)) as db:
                token_entity.delete_token(db, owner.email, token_id)
        except ManageError:
            # Someone else's token, or none: the same answer, and nothing changed.
            raise HTTPException(status_code=404) from None
        _log(request, f"token {token_id} deletion", owner)
        return done(owner, "tokens", "deleted")

    # -- fetched accounts

    @route("GET", "fetches")
    async def fetches(request: Request, owner: Owner = owner_of, msg: str = "") -> Response:
        with work.read(settings_of(request)) as db:
            rows: list[dict[str, Any]] = [
                _fetch_form(f) | {"id": str(f.id), "last_check": f.last_check, "error": f.error}
                for f in fetch_entity.list_fetches(db, owner.email)
            ]
        return _show(request, owner, "fetches.html", {"fetches": rows, "notice": NOTICES.get(msg)})

    @route("GET", "fetch_new")
    async def new_fetch(request: Request, owner: Owner = owner_of) -> Response:
        form = {"protocol": "imap", "tls": "on", "port": ""}
        return _fetch_page(request, owner, form, fetch_id=None)

    @route("GET", "fetch")
    async def edit_fetch(request: Request, fetch_id: int, owner: Owner = owner_of) -> Response:
        with work.read(settings_of(request)) as db:
            form = _fetch_form(_own_fetch(db, owner.email, fetch_id))
        return _fetch_page(request, owner, form, fetch_id=fetch_id)

    async def save_fetch(request: Request, owner: Owner, fetch_id: int | None) -> Response:
        """Add (``fetch_id`` None) or change a fetched account from the posted form."""
        form = await _form(request)
        try:
            with work.change(settings_of(request)) as db:
                if fetch_id is None:
                    fetch_entity.add_fetch(db, owner.email, _fetch_settings(form))
                else:
                    _own_fetch(db, owner.email, fetch_id)
                    fetch_entity.change_fetch(db, owner.email, fetch_id, _fetch_settings(form))
        except ManageError as exc:
            return _fetch_page(request, owner, form, fetch_id=fetch_id, error=str(exc), status=400)
        what = "fetch creation" if fetch_id is None else f"fetch {fetch_id} change"
        _log(request, what, owner)
        return done(owner, "fetches", "added" if fetch_id is None else "saved")

    @route("POST", "fetch_new")
    async def add_fetch(request: Request, owner: Owner = owner_of) -> Response:
        return await save_fetch(request, owner, None)

    @route("POST", "fetch")
    async def change_fetch(request: Request, fetch_id: int, owner: Owner = owner_of) -> Response:
        return await save_fetch(request, owner, fetch_id)

    @route("POST", "fetch_delete")
    async def delete_fetch(request: Request, fetch_id: int, owner: Owner = owner_of) -> Response:
        with work.change(settings_of(request)) as db:
            _own_fetch(db, owner.email, fetch_id)
            fetch_entity.delete_fetch(db, owner.email, fetch_id)
        _log(request, f"fetch {fetch_id} deletion", owner)
        return done(owner, "fetches", "deleted")

    @router.get("/user/reply/{email}")
    async def reply_page(owner: Owner = owner_of) -> Response:
        """Mailu's auto-reply page of a user: here, a section of the settings page."""
        return RedirectResponse(owner.url("settings") + "#reply", status_code=303)

    return router
