"""A domain's users: the list (searched and paged in SQL, so 10,000 users page fast),
creating one, editing one (account, forwarding and spam, auto-reply, password) and
deleting one.

Every route checks the rank rule (:mod:`roost.web.admin.rights`) on the user it acts
on, so a crafted request for another domain's user, or for a global administrator, is a
403 and changes nothing. Only global administrators can make or unmake one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from roost.store import work
from roost.store.entities import user as users
from roost.store.entities.names import ManageError, show_domain, show_email
from roost.store.models import User
from roost.web.admin import rights
from roost.web.admin.common import (
    checked,
    find_domain,
    find_user,
    form_of,
    matching,
    page,
    parse_size,
    redirect,
    say,
    settings_of,
    show,
    show_size,
)
from roost.web.auth import Account, require_role

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
            found = find_domain(db, domain)
            rights.require_domain(account, found.name)
            name = found.name
            where = [User.domain_name == name]
            q = request.query_params.get("q", "").strip()[:100]
            condition = matching(q, User.email, User.displayed_name, User.comment)
            if condition is not None:
                where.append(condition)
            total = db.scalar(select(func.count()).select_from(User).where(*where)) or 0
            pager = page(request, total)
            query = (
                select(*_LIST_COLUMNS)
                .where(*where)
                .order_by(User.localpart)
                .limit(pager.per_page)
                .offset(pager.offset)
            )
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
            found = find_domain(db, domain)
            rights.require_domain(account, found.name)
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
            found = find_domain(db, domain)
            rights.require_domain(account, found.name)
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
        say(request, f"User {show_email(email)} created.")
        return redirect(f"{prefix}/user/list/{name}")

    @router.get("/user/edit/{email}")
    async def user_edit_form(
        request: Request,
        email: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        return edit_page(request, account, email)

    @router.post("/user/edit/{email}")
    async def user_edit(
        request: Request,
        email: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        return await _save(request, account, email, "account", _apply_account)

    @router.post("/user/settings/{email}")
    async def user_settings(
        request: Request,
        email: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        return await _save(request, account, email, "settings", _apply_settings)

    @router.post("/user/reply/{email}")
    async def user_reply(
        request: Request,
        email: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        return await _save(request, account, email, "reply", _apply_reply)

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
        request: Request, account: Account, email: str, section: str, apply: Any
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

    @router.get("/user/delete/{email}")
    async def user_delete_form(
        request: Request,
        email: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            user = _editable(db, account, email)
            shown, stored = show_email(user.email), user.email
        return show(
            request,
            account,
            "confirm.html",
            {
                "title": f"Delete {shown}",
                "message": f"Delete the user {shown} with their app tokens and fetched "
                "accounts? Their address can then be given to someone else; to keep it, "
                "disable the user instead.",
                "action": f"{prefix}/user/delete/{stored}",
                "back": f"{prefix}/user/edit/{stored}",
                "button": "Delete the user",
            },
        )

    @router.post("/user/delete/{email}")
    async def user_delete(
        request: Request,
        email: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        with work.change(settings_of(request)) as db:
            user = _editable(db, account, email)
            shown, domain, stored = show_email(user.email), user.domain_name, user.email
            users.delete_user(db, user.email, really=True)
        await request.app.state.sessions.delete_user(stored)
        say(request, f"User {shown} deleted.")
        return redirect(f"{prefix}/user/list/{domain}")


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
