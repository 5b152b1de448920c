"""A domain's users: the list (searched and paged in SQL, so 10,000 users page fast),
creating one, editing one (account, forwarding and spam, auto-reply, password) and
deleting one.

Every route checks the rank rule (:mod:`roost.web.admin.rights`) on the user it acts
on, so a crafted request for another domain's user, or for a global administrator, is a
403 and changes nothing. Only global administrators can make or unmake one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.store import work
from roost.store.entities import user as users
from roost.store.entities.names import ManageError, show_domain, show_email
from roost.store.models import User
from roost.web.admin import rights
from roost.web.admin.common import (
    Deletion,
    add_delete_pages,
    checked,
    find_user,
    form_of,
    listing,
    managed_domain,
    parse_size,
    redirect,
    say,
    settings_of,
    show,
    show_size,
)
from roost.web.auth import Account, require_role
from roost.web.welcome import send_welcome

__all__ = ["add_routes"]

manager_only = require_role("manager")

#: Mailu's minimum for a password set in its admin forms.
PASSWORD_MIN = 8
_LIST_COLUMNS = (
    User.email,
    User.displayed_name,
    User.quota_bytes,
    User.quota_bytes_used,
    User.enabled,
    User.enable_imap,
    User.enable_pop,
    User.allow_spoofing,
    User.global_admin,
    User.forward_enabled,
    User.reply_enabled,
    User.comment,
)


#: How an edit form's fields reach the user: ``apply(db, actor, user, form)``.
Apply = Callable[[Any, Account, User, dict[str, str]], None]


def _password_problem(password: str, again: str) -> str | None:
    if password != again:
        return "The two passwords differ."
    if len(password) < PASSWORD_MIN:
        return f"A password has at least {PASSWORD_MIN} characters."
    if password != password.strip():
        return "A password does not begin or end with a space."
    return None


def _user_form(user: User) -> dict[str, str]:
    flags = (
        "enabled",
        "enable_imap",
        "enable_pop",
        "allow_spoofing",
        "global_admin",
        "change_pw_next_login",
        "forward_enabled",
        "forward_keep",
        "reply_enabled",
        "spam_enabled",
        "spam_mark_as_read",
    )
    form = {flag: "on" if getattr(user, flag) else "" for flag in flags}
    form.update(
        displayed_name=user.displayed_name or "",
        quota_bytes=show_size(user.quota_bytes),
        comment=user.comment or "",
        forward_destination=", ".join(show_email(a) for a in user.forward_destination or []),
        spam_threshold=str(user.spam_threshold),
        reply_subject=user.reply_subject or "",
        reply_body=user.reply_body or "",
        reply_startdate=""
        if user.reply_startdate == users.REPLY_START_DEFAULT
        else user.reply_startdate.isoformat(),
        reply_enddate=""
        if user.reply_enddate == users.REPLY_END_DEFAULT
        else user.reply_enddate.isoformat(),
    )
    return form


def _editable(db: Any, account: Account, email: str) -> User:
    """The user ``email``, if the rank rule lets ``account`` act on them (else 403)."""
    user = find_user(db, email)
    rights.require_user(account, rights.Target.of(user))
    return user


def add_routes(router: APIRouter, prefix: str) -> None:
    """The user pages, on ``router``."""

    def edit_page(
        request: Request,
        account: Account,
        email: str,
        *,
        section: str = "",
        form: dict[str, str] | None = None,
        error: str = "",
        status_code: int = 200,
    ) -> Response:
        with work.read(settings_of(request)) as db:
            user = _editable(db, account, email)
            stored = _user_form(user)
            info = {
                "email": user.email,
                "shown": show_email(user.email),
                "domain": user.domain_name,
                "shown_domain": show_domain(user.domain_name),
                "quota_bytes": user.quota_bytes,
                "quota_bytes_used": user.quota_bytes_used,
                "global_admin": user.global_admin,
                "max_quota_bytes": user.domain.max_quota_bytes,
            }
        forms = {name: dict(stored) for name in ("account", "settings", "reply", "password")}
        if section and form is not None:
            forms[section] = form
        return show(
            request,
            account,
            "user_edit.html",
            {"user": info, "forms": forms, "section": section, "error": error},
            status_code=status_code,
        )

    @router.get("/user/list/{domain}")
    async def user_list(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            found = managed_domain(db, account, domain)
            name = found.name
            query = select(*_LIST_COLUMNS).where(User.domain_name == name)
            searched = (User.email, User.displayed_name, User.comment)
            pager, query = listing(db, request, query, User.localpart, *searched)
            rows = [dict(row._mapping) for row in db.execute(query)]
            limit = found.max_users
        for row in rows:
            row["shown"] = show_email(row["email"])
        return show(
            request,
            account,
            "users.html",
            {
                "domain": name,
                "shown": show_domain(name),
                "users": rows,
                "pager": pager,
                "max_users": limit,
            },
        )

    @router.get("/user/create/{domain}")
    async def user_create_form(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        settings = settings_of(request)
        with work.read(settings) as db:
            found = managed_domain(db, account, domain)
            quota = users.default_quota(settings, found)
            name = found.name
        form = {
            "quota_bytes": show_size(quota),
            "enabled": "on",
            "enable_imap": "on",
            "enable_pop": "on",
            "change_pw_next_login": "on",
        }
        context = {"domain": name, "shown": show_domain(name), "form": form}
        return show(request, account, "user_create.html", context)

    @router.post("/user/create/{domain}")
    async def user_create(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        settings = settings_of(request)
        form = await form_of(request)
        with work.read(settings) as db:
            found = managed_domain(db, account, domain)
            name = found.name
        error = _password_problem(form.get("password", ""), form.get("password2", ""))
        if error is None:
            try:
                with work.change(settings) as db:
                    user = users.create_user(
                        db,
                        settings,
                        form.get("localpart", "").strip(),
                        name,
                        form.get("password", ""),
                        change_pw_next_login=checked(form, "change_pw_next_login"),
                    )
                    _apply_account(db, account, user, form)
                    email = user.email
            except (ManageError, ValueError) as exc:
                error = str(exc)
        if error is not None:
            form.pop("password", None)
            form.pop("password2", None)
            context = {"domain": name, "shown": show_domain(name), "form": form, "error": error}
            return show(request, account, "user_create.html", context, status_code=400)
        await send_welcome(settings, email)
        say(request, f"User {show_email(email)} created.")
        return redirect(f"{prefix}/user/list/{name}")

    @router.get("/user/edit/{email}")
    async def user_edit_form(
        request: Request,
        email: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        return edit_page(request, account, email)

    def add_save_route(path: str, section: str, apply: Apply) -> None:
        """One form of the edit page: POST ``path`` saves its ``section`` through ``apply``."""

        @router.post(path, name=f"save {section}")
        async def save(
            request: Request,
            email: str,
            account: Account = Depends(manager_only),  # noqa: B008
        ) -> Response:
            return await _save(request, account, email, section, apply)

    add_save_route("/user/edit/{email}", "account", _apply_account)
    add_save_route("/user/settings/{email}", "settings", _apply_settings)
    add_save_route("/user/reply/{email}", "reply", _apply_reply)

    @router.post("/user/password/{email}")
    async def user_password(
        request: Request,
        email: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        form = await form_of(request)
        problem = _password_problem(form.get("password", ""), form.get("password2", ""))
        if problem is not None:
            return edit_page(
                request,
                account,
                email,
                section="password",
                form={},
                error=problem,
                status_code=400,
            )
        return await _save(request, account, email, "password", _apply_password)

    async def _save(
        request: Request, account: Account, email: str, section: str, apply: Apply
    ) -> Response:
        form = await form_of(request)
        try:
            with work.change(settings_of(request)) as db:
                user = _editable(db, account, email)
                apply(db, account, user, form)
                stored, shown = user.email, show_email(user.email)
                ended = section == "password" or not user.enabled
        except (ManageError, ValueError) as exc:
            kept = {k: v for k, v in form.items() if not k.startswith("password")}
            return edit_page(
                request,
                account,
                email,
                section=section,
                form=kept,
                error=str(exc),
                status_code=400,
            )
        if ended:
            # A reset password or a disabled account: the sessions it had are over.
            await request.app.state.sessions.delete_user(stored)
        notes = {
            "account": "saved",
            "settings": "forwarding and spam settings saved",
            "reply": "auto-reply saved",
            "password": "password reset; it must be changed at the next sign-in",
        }
        say(request, f"{shown}: {notes[section]}.")
        return redirect(f"{prefix}/user/edit/{stored}")

    def user_deletion(db: Session, account: Account, email: str) -> Deletion:
        user = _editable(db, account, email)
        shown, stored, domain = show_email(user.email), user.email, user.domain_name
        return Deletion(
            title=f"Delete {shown}",
            message=f"Delete the user {shown} with their app tokens and fetched accounts? "
            "Their address can then be given to someone else; to keep it, disable the user "
            "instead.",
            button="Delete the user",
            action=f"{prefix}/user/delete/{stored}",
            back=f"{prefix}/user/edit/{stored}",
            notice=f"User {shown} deleted.",
            after=f"{prefix}/user/list/{domain}",
            delete=lambda db: users.delete_user(db, stored, really=True),
            signs_out=stored,
        )

    add_delete_pages(router, "/user/delete/{email}", manager_only, user_deletion)


def _apply_account(db: Any, account: Account, user: User, form: dict[str, str]) -> None:
    """Name, quota, switches and comment; only a global administrator grants or revokes
    global administration (a manager's form has no such field, nor does a crafted one
    count)."""
    values: dict[str, Any] = {
        "displayed_name": form.get("displayed_name", "").strip(),
        "comment": form.get("comment", "").strip(),
        "change_pw_next_login": checked(form, "change_pw_next_login"),
    }
    for flag in ("enabled", "enable_imap", "enable_pop", "allow_spoofing"):
        values[flag] = checked(form, flag)
    if account.global_admin and user.email != account.email:
        values["global_admin"] = checked(form, "global_admin")
    users.set_fields(db, user.email, values)
    if "quota_bytes" in form:
        users.set_quota(db, user.email, parse_size(form["quota_bytes"] or "0", "quota"))


def _apply_settings(db: Any, account: Account, user: User, form: dict[str, str]) -> None:
    """Forwarding and spam filtering (Mailu's user settings form)."""
    destination = form.get("forward_destination", "").strip()
    users.set_forward(
        db,
        user.email,
        destination or None,
        keep=checked(form, "forward_keep"),
        enabled=checked(form, "forward_enabled"),
    )
    try:
        threshold = int(form.get("spam_threshold", "80").strip())
    except ValueError:
        raise ManageError("spam threshold: give a whole number from 0 to 100") from None
    users.set_spam(
        db,
        user.email,
        enabled=checked(form, "spam_enabled"),
        mark_as_read=checked(form, "spam_mark_as_read"),
        threshold=threshold,
    )


def _apply_reply(db: Any, account: Account, user: User, form: dict[str, str]) -> None:
    users.set_autoreply(
        db,
        user.email,
        enabled=checked(form, "reply_enabled"),
        subject=form.get("reply_subject", "").strip(),
        body=form.get("reply_body", "").replace("\r\n", "\n"),
        start=users.parse_reply_date(form.get("reply_startdate", ""), users.REPLY_START_DEFAULT),
        end=users.parse_reply_date(form.get("reply_enddate", ""), users.REPLY_END_DEFAULT),
    )


def _apply_password(db: Any, account: Account, user: User, form: dict[str, str]) -> None:
    """A reset by a manager: the user must choose their own at the next sign-in."""
    users.set_password(db, user.email, form.get("password", ""))
