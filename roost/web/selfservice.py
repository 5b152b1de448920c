"""Self-service pages for the signed-in user under WEB_ADMIN + ``/account``.

Three pages, as Mailu's user settings offer them (https://mailu.io/master/webadministration.html):

* ``/account/settings``: forwarding, auto-reply and spam filing, each its own form;
* ``/account/tokens``: app tokens (per-client passwords) listed, made and deleted;
* ``/account/fetches``: remote POP3/IMAP accounts to fetch mail from (kept; the fetcher
  comes later).

Every change goes through the entity rules (:mod:`roost.store.entities`) and the unit of
work (:mod:`roost.store.work`). Only the signed-in user's own rows are reachable: a token
or fetch id of someone else is "not found" and nothing changes. A new token's secret is
shown once, in the answer to the form that made it, and never written to a log; a fetch
password is never shown back.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from roost.store import work
from roost.store.entities import fetch as fetch_entity
from roost.store.entities import token as token_entity
from roost.store.entities import user as user_entity
from roost.store.entities.names import ManageError, require_user, show_email
from roost.store.models import Fetch, User
from roost.web.auth import Account, current_user, settings_of
from roost.web.client import client_info
from roost.web.csrf import html_router
from roost.web.templating import render

__all__ = ["build_router"]

log = logging.getLogger("roost.web")

SETTINGS = "/account/settings"
TOKENS = "/account/tokens"
FETCHES = "/account/fetches"

NOTICES = {
    "forward": "Forwarding saved.",
    "reply": "Auto-reply saved.",
    "spam": "Spam settings saved.",
    "deleted": "Deleted.",
    "saved": "Saved.",
    "added": "Added.",
}


#: The fetch fields a form sets, with their labels for messages.
def _checked(form: dict[str, str], name: str) -> bool:
    """An HTML checkbox: sent (as ``on``) when ticked, absent when not."""
    return form.get(name, "") in ("on", "1", "true", "yes")


async def _form(request: Request) -> dict[str, str]:
    data = await request.form()
    return {k: v for k, v in data.items() if isinstance(v, str) and k != "csrf_token"}


def _log(request: Request, what: str, account: Account) -> None:
    """One line per change, for the administrator; never a secret."""
    info = client_info(request)
    log.info("Self-service %s by %s from: %s/%s: success", what, account.email, info.ip, info.port)


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
    account: Account,
    *,
    typed: dict[str, str] | None = None,
    section: str = "",
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    with work.read(settings_of(request)) as db:
        stored = _settings_form(require_user(db, account.email))
    forms = {name: stored for name in _APPLY}
    if typed is not None:
        forms[section] = typed
    context = {
        "account": account,
        "forms": forms,
        "section": section,
        "error": error,
        "notice": notice,
    }
    return render(request, "self/settings.html", context, status_code=status)


# -- fetched accounts ---------------------------------------------------------------------


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
    )


def _fetch_form(row: Fetch) -> dict[str, str]:
    """A stored fetch as its form shows it: everything but the password."""
    return {
        "protocol": row.protocol,
        "host": row.host,
        "port": str(row.port),
        "tls": "on" if row.tls else "",
        "keep": "on" if row.keep else "",
        "username": row.username,
        "comment": row.comment or "",
    }


def _fetch_page(
    request: Request,
    account: Account,
    form: dict[str, str],
    *,
    fetch_id: int | None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    form = {k: v for k, v in form.items() if k != "password"}
    context = {"account": account, "form": form, "fetch_id": fetch_id, "error": error}
    return render(request, "self/fetch_form.html", context, status_code=status)


# -- the router ---------------------------------------------------------------------------


def build_router(admin: str) -> APIRouter:
    """The self-service pages (no prefix: the account router, at ``admin``, adds it)."""
    router = html_router()

    @router.get(SETTINGS)
    async def settings_page(
        request: Request,
        account: Account = Depends(current_user),  # noqa: B008
        msg: str = "",
    ) -> Response:
        return _settings_page(request, account, notice=NOTICES.get(msg))

    @router.post(SETTINGS + "/{section}")
    async def save_settings(
        request: Request,
        section: str,
        account: Account = Depends(current_user),  # noqa: B008
    ) -> Response:
        apply = _APPLY.get(section)
        if apply is None:
            raise HTTPException(status_code=404)
        form = await _form(request)
        try:
            with work.change(settings_of(request)) as db:
                apply(db, account.email, form)
        except ManageError as exc:
            return _settings_page(
                request, account, typed=form, section=section, error=str(exc), status=400
            )
        _log(request, f"{section} change", account)
        return RedirectResponse(f"{admin}{SETTINGS}?msg={section}#{section}", status_code=303)

    # -- tokens

    def tokens_page(
        request: Request,
        account: Account,
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
                for t in token_entity.list_tokens(db, account.email)
            ]
        context = {
            "account": account,
            "tokens": rows,
            "created": created,
            "form": typed or {},
            "error": error,
            "notice": notice,
        }
        response = render(request, "self/tokens.html", context, status_code=status)
        if created:
            # The secret is in this answer only: no cache keeps it.
            response.headers["Cache-Control"] = "no-store"
        return response

    @router.get(TOKENS)
    async def tokens(
        request: Request,
        account: Account = Depends(current_user),  # noqa: B008
        msg: str = "",
    ) -> Response:
        return tokens_page(request, account, notice=NOTICES.get(msg))

    @router.post(TOKENS)
    async def create_token(
        request: Request,
        account: Account = Depends(current_user),  # noqa: B008
    ) -> Response:
        form = await _form(request)
        try:
            comment = form.get("comment", "").strip()
            networks = [form.get("networks", "")]
            with work.change(settings_of(request)) as db:
                _token, raw = token_entity.add_token(db, account.email, comment, networks)
        except ManageError as exc:
            return tokens_page(request, account, typed=form, error=str(exc), status=400)
        _log(request, "token creation", account)
        return tokens_page(request, account, created=raw)

    @router.post(TOKENS + "/{token_id}/delete")
    async def delete_token(
        request: Request,
        token_id: int,
        account: Account = Depends(current_user),  # noqa: B008
    ) -> Response:
        try:
            with work.change(settings_of(request)) as db:
                token_entity.delete_token(db, account.email, token_id)
        except ManageError:
            # Someone else's token, or none: the same answer, and nothing changed.
            raise HTTPException(status_code=404) from None
        _log(request, f"token {token_id} deletion", account)
        return RedirectResponse(f"{admin}{TOKENS}?msg=deleted", status_code=303)

    # -- fetched accounts

    @router.get(FETCHES)
    async def fetches(
        request: Request,
        account: Account = Depends(current_user),  # noqa: B008
        msg: str = "",
    ) -> Response:
        with work.read(settings_of(request)) as db:
            rows: list[dict[str, Any]] = [
                _fetch_form(f) | {"id": str(f.id), "last_check": f.last_check, "error": f.error}
                for f in fetch_entity.list_fetches(db, account.email)
            ]
        context = {"account": account, "fetches": rows, "notice": NOTICES.get(msg)}
        return render(request, "self/fetches.html", context)

    @router.get(FETCHES + "/new")
    async def new_fetch(
        request: Request,
        account: Account = Depends(current_user),  # noqa: B008
    ) -> Response:
        form = {"protocol": "imap", "tls": "on", "port": ""}
        return _fetch_page(request, account, form, fetch_id=None)

    @router.post(FETCHES + "/new")
    async def add_fetch(
        request: Request,
        account: Account = Depends(current_user),  # noqa: B008
    ) -> Response:
        form = await _form(request)
        try:
            with work.change(settings_of(request)) as db:
                fetch_entity.add_fetch(db, account.email, _fetch_settings(form))
        except ManageError as exc:
            return _fetch_page(request, account, form, fetch_id=None, error=str(exc), status=400)
        _log(request, "fetch creation", account)
        return RedirectResponse(f"{admin}{FETCHES}?msg=added", status_code=303)

    @router.get(FETCHES + "/{fetch_id}")
    async def edit_fetch(
        request: Request,
        fetch_id: int,
        account: Account = Depends(current_user),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            form = _fetch_form(_own_fetch(db, account.email, fetch_id))
        return _fetch_page(request, account, form, fetch_id=fetch_id)

    @router.post(FETCHES + "/{fetch_id}")
    async def save_fetch(
        request: Request,
        fetch_id: int,
        account: Account = Depends(current_user),  # noqa: B008
    ) -> Response:
        form = await _form(request)
        try:
            with work.change(settings_of(request)) as db:
                _own_fetch(db, account.email, fetch_id)
                fetch_entity.change_fetch(db, account.email, fetch_id, _fetch_settings(form))
        except ManageError as exc:
            return _fetch_page(
                request, account, form, fetch_id=fetch_id, error=str(exc), status=400
            )
        _log(request, f"fetch {fetch_id} change", account)
        return RedirectResponse(f"{admin}{FETCHES}?msg=saved", status_code=303)

    @router.post(FETCHES + "/{fetch_id}/delete")
    async def delete_fetch(
        request: Request,
        fetch_id: int,
        account: Account = Depends(current_user),  # noqa: B008
    ) -> Response:
        with work.change(settings_of(request)) as db:
            _own_fetch(db, account.email, fetch_id)
            fetch_entity.delete_fetch(db, account.email, fetch_id)
        _log(request, f"fetch {fetch_id} deletion", account)
        return RedirectResponse(f"{admin}{FETCHES}?msg=deleted", status_code=303)

    return router
