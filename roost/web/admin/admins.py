"""Global administrators: the list, granting the right to an existing user, revoking it.

Only a global administrator reaches these pages (anyone else gets a 403 and nothing
changes). The right is the user entity's ``global_admin`` field, written in one unit of
work, as the user edit page writes it.

Two revocations are refused:

- revoking yourself: a slip of the mouse would lock you out at once, and the pages you
  stand on would turn into 403s; another administrator has to do it, so the change always
  has a witness;
- revoking the last enabled global administrator: nobody could then grant the right
  again from the web, only from a root shell. The count is taken in the same transaction
  as the change, so two administrators revoking each other at the same moment cannot
  leave none.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from roost.store import work
from roost.store.entities import user as users
from roost.store.entities.names import ManageError, show_email
from roost.store.models import User
from roost.web.admin.common import confirm, find_user, form_of, redirect, say, settings_of, show
from roost.web.auth import Account, require_role

__all__ = ["add_routes", "remaining_admins"]

admin_only = require_role("admin")


def remaining_admins(db: object, leaving: str) -> int:
    """Enabled global administrators other than ``leaving`` (a stored address)."""
    query = (
        select(func.count())
        .select_from(User)
        .where(User.global_admin.is_(True), User.enabled.is_(True), User.email != leaving)
    )
    return int(db.execute(query).scalar_one())  # type: ignore[attr-defined]


def add_routes(router: APIRouter, prefix: str) -> None:
    @router.get("/admin/list")
    async def admin_list(
        request: Request,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            rows = db.execute(
                select(User.email, User.displayed_name, User.enabled)
                .where(User.global_admin.is_(True))
                .order_by(User.domain_name, User.localpart)
            ).all()
        admins = [
            {
                "email": row.email,
                "shown": show_email(row.email),
                "displayed_name": row.displayed_name or "",
                "enabled": row.enabled,
                "self": row.email == account.email,
            }
            for row in rows
        ]
        return show(request, account, "admins.html", {"admins": admins})

    @router.get("/admin/create")
    async def admin_create_form(
        request: Request,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        return show(request, account, "admin_create.html", {"form": {}})

    @router.post("/admin/create")
    async def admin_create(
        request: Request,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        form = await form_of(request)
        address = form.get("email", "").strip()
        error = None
        try:
            with work.change(settings_of(request)) as db:
                try:
                    user = find_user(db, address)
                except HTTPException:  # unknown: say so on the form, not as a 404 page
                    raise ManageError(f"no user {address!r}: create the user first") from None
                shown = show_email(user.email)
                if user.global_admin:
                    notice = f"{shown} is a global administrator already."
                else:
                    users.set_fields(db, user.email, {"global_admin": True})
                    notice = f"{shown} is now a global administrator."
        except ManageError as exc:
            error = str(exc)
        if error is not None:
            context = {"form": {"email": address}, "error": error}
            return show(request, account, "admin_create.html", context, status_code=400)
        say(request, notice)
        return redirect(f"{prefix}/admin/list")

    @router.get("/admin/delete/{email}")
    async def admin_delete_form(
        request: Request,
        email: str,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            user = find_user(db, email)
            shown, stored, is_admin = show_email(user.email), user.email, user.global_admin
        if not is_admin:
            say(request, f"{shown} is not a global administrator.")
            return redirect(f"{prefix}/admin/list")
        return confirm(
            request,
            account,
            title=f"Revoke {shown}",
            message=f"Take global administration away from {shown}? They keep their "
            "mailbox and any domains they manage.",
            action=f"{prefix}/admin/delete/{stored}",
            back=f"{prefix}/admin/list",
            button="Revoke global administration",
        )

    @router.post("/admin/delete/{email}")
    async def admin_delete(
        request: Request,
        email: str,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        problem, status = None, 409
        with work.change(settings_of(request)) as db:
            user = find_user(db, email)
            shown = show_email(user.email)
            if not user.global_admin:
                problem, status = f"{shown} is not a global administrator.", 400
            elif user.email == account.email:
                problem = (
                    "You cannot revoke your own global administration: ask another "
                    "administrator to do it."
                )
            elif remaining_admins(db, user.email) == 0:
                problem = f"{shown} is the last global administrator; grant someone else first."
            else:
                users.set_fields(db, user.email, {"global_admin": False})
        if problem is not None:
            return show(
                request,
                account,
                "admins_refused.html",
                {"problem": problem},
                status_code=status,
            )
        say(request, f"{shown} is no longer a global administrator.")
        return redirect(f"{prefix}/admin/list")
