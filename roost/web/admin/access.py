"""A domain's anonymous-alias grants: the users who may create anonymous aliases in it
(besides its managers, global administrators and, when the domain has anonymous aliases
switched on, its own users). Open to the domain's managers and global administrators
(:func:`roost.web.admin.rights.require_domain`).

Creating a grant takes the HTML form (a user of the domain, or any existing address) or,
as Mailu's page does, a JSON body ``{"user": "<email>"}`` (with the session's CSRF token in
``X-CSRF-Token``): 201 ``{"id": ..., "user_email": ...}``, 400 without a user, 404 for an
unknown user, 409 when the user holds the grant already.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.store import work
from roost.store.entities import access as grants
from roost.store.entities.names import ManageError, show_domain, show_email
from roost.store.models import DomainAccess, User
from roost.web.admin.common import (
    Deletion,
    add_delete_pages,
    form_of,
    managed_domain,
    redirect,
    say,
    settings_of,
    show,
)
from roost.web.auth import Account, require_role

__all__ = ["add_routes"]

manager_only = require_role("manager")


def _candidates(db: Session, domain: str) -> list[dict[str, str]]:
    rows = db.scalars(select(User.email).where(User.domain_name == domain).order_by(User.email))
    return [{"email": e, "shown": show_email(e)} for e in rows]


def _create_page(
    request: Request,
    account: Account,
    domain: str,
    candidates: list[dict[str, str]],
    form: dict[str, str],
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    context = {
        "domain": domain,
        "shown": show_domain(domain),
        "candidates": candidates,
        "form": form,
        "error": error,
    }
    return show(request, account, "access_create.html", context, status_code=status_code)


def _json(status: int, body: dict[str, Any]) -> Response:
    return JSONResponse(body, status_code=status)


async def _json_user(request: Request) -> str | None:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return None
    user = body.get("user") if isinstance(body, dict) else None
    return user.strip() if isinstance(user, str) and user.strip() else None


def add_routes(router: APIRouter, prefix: str) -> None:
    @router.get("/domain/access/list/{domain}")
    async def access_list(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            found = managed_domain(db, account, domain)
            name = found.name
            rows = [
                {
                    "id": a.id,
                    "email": a.user_email or "",
                    "shown": show_email(a.user_email or ""),
                    "created": a.created_at.isoformat() if a.created_at else "",
                }
                for a in grants.list_access(db, name)
            ]
            anonmail_enabled = bool(found.anonmail_enabled)
        context = {
            "domain": name,
            "shown": show_domain(name),
            "grants": rows,
            "anonmail_enabled": anonmail_enabled,
        }
        return show(request, account, "access.html", context)

    @router.get("/domain/access/create/{domain}")
    async def access_create_form(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            name = managed_domain(db, account, domain).name
            candidates = _candidates(db, name)
        return _create_page(request, account, name, candidates, {})

    @router.post("/domain/access/create/{domain}")
    async def access_create(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        wants_json = request.headers.get("content-type", "").startswith("application/json")
        if wants_json:
            user = await _json_user(request)
            form: dict[str, str] = {}
        else:
            form = await form_of(request)
            user = form.get("user", "").strip() or None
        settings = settings_of(request)
        error: str | None = None
        status = 400
        created: dict[str, Any] = {}
        candidates: list[dict[str, str]] = []
        with work.change(settings) as db:
            name = managed_domain(db, account, domain).name
            candidates = _candidates(db, name)
            if user is None:
                error = "Choose the user to grant"
            else:
                try:
                    grant: DomainAccess = grants.grant_access(db, name, user)
                    created = {"id": grant.id, "user_email": grant.user_email}
                except grants.UnknownUser as exc:
                    error, status = str(exc), 404
                except grants.AccessExists as exc:
                    error, status = str(exc), 409
                except ManageError as exc:
                    error = str(exc)
        if wants_json:
            if error is not None:
                return _json(status, {"code": status, "message": error})
            return _json(201, created)
        if error is not None:
            form = {"user": user or ""}
            return _create_page(request, account, name, candidates, form, error, status)
        say(
            request,
            f"{show_email(str(created['user_email']))} may now create anonymous aliases in "
            f"{show_domain(name)}.",
        )
        return redirect(f"{prefix}/domain/access/list/{name}")

    def revocation(db: Session, account: Account, domain: str, access_id: int) -> Deletion:
        name = managed_domain(db, account, domain).name
        grant = db.get(DomainAccess, access_id)
        if grant is None or grant.domain_name != name:
            raise HTTPException(status_code=404)
        who = show_email(grant.user_email or "")
        return Deletion(
            title=f"Revoke {who}'s grant",
            message=f"{who} may then no longer create anonymous aliases in "
            f"{show_domain(name)} (unless they manage it or it lets all its users). "
            "The aliases already made stay.",
            button="Revoke the grant",
            action=f"{prefix}/domain/access/delete/{name}/{access_id}",
            back=f"{prefix}/domain/access/list/{name}",
            notice=f"{who} may no longer create anonymous aliases in {show_domain(name)}.",
            delete=lambda db: grants.revoke_access(db, name, access_id),
        )

    add_delete_pages(
        router, "/domain/access/delete/{domain}/{access_id:int}", manager_only, revocation
    )
