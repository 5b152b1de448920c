"""A domain's aliases: the list (searched and paged in SQL), creating one (a wildcard
too: the local part is then an SQL LIKE pattern, ``%`` alone catches all), editing its
destinations, comment and switch, and deleting one. Open to the domain's managers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from roost.store import work
from roost.store.entities import alias as aliases
from roost.store.entities.fields import text
from roost.store.entities.names import ManageError, show_domain, show_email
from roost.store.models import Alias
from roost.web.admin import rights
from roost.web.admin.common import (
    checked,
    find_alias,
    find_domain,
    form_of,
    matching,
    page,
    redirect,
    say,
    settings_of,
    show,
)
from roost.web.auth import Account, require_role

__all__ = ["add_routes"]

manager_only = require_role("manager")


def _alias_form(alias: Alias) -> dict[str, str]:
    return {
        "localpart": alias.localpart,
        "wildcard": "on" if alias.wildcard else "",
        "destination": ", ".join(show_email(d) for d in alias.destination or []),
        "comment": alias.comment or "",
        "disabled": "on" if alias.disabled else "",
    }


def _managed_alias(db: Any, account: Account, email: str) -> Alias:
    alias = find_alias(db, email)
    rights.require_domain(account, alias.domain_name)
    return alias


def add_routes(router: APIRouter, prefix: str) -> None:
    """The alias pages, on ``router``."""

    @router.get("/alias/list/{domain}")
    async def alias_list(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            found = find_domain(db, domain)
            rights.require_domain(account, found.name)
            name = found.name
            where = [Alias.domain_name == name]
            q = request.query_params.get("q", "").strip()[:100]
            condition = matching(q, Alias.email, Alias.destination, Alias.comment)
            if condition is not None:
                where.append(condition)
            total = db.scalar(select(func.count()).select_from(Alias).where(*where)) or 0
            pager = page(request, total)
            query = (
                select(Alias)
                .where(*where)
                .order_by(Alias.localpart)
                .limit(pager.per_page)
                .offset(pager.offset)
            )
            rows = [
                {
                    "email": a.email,
                    "shown": show_email(a.email),
                    "wildcard": a.wildcard,
                    "disabled": a.disabled,
                    "destination": [show_email(d) for d in a.destination or []],
                    "comment": a.comment or "",
                    "owner": a.owner_email,
                }
                for a in db.scalars(query)
            ]
        return show(
            request,
            account,
            "aliases.html",
            {"domain": name, "shown": show_domain(name), "aliases": rows, "pager": pager},
        )

    @router.get("/alias/create/{domain}")
    async def alias_create_form(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            found = find_domain(db, domain)
            rights.require_domain(account, found.name)
            name = found.name
        context = {"domain": name, "shown": show_domain(name), "form": {}, "new": True}
        return show(request, account, "alias_form.html", context)

    @router.post("/alias/create/{domain}")
    async def alias_create(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        form = await form_of(request)
        with work.read(settings_of(request)) as db:
            found = find_domain(db, domain)
            rights.require_domain(account, found.name)
            name = found.name
        try:
            with work.change(settings_of(request)) as db:
                alias = aliases.create_alias(
                    db,
                    form.get("localpart", "").strip(),
                    name,
                    form.get("destination", ""),
                    wildcard=checked(form, "wildcard"),
                )
                alias.comment = text(255)(form.get("comment", "").strip())
                alias.disabled = checked(form, "disabled")
                shown = show_email(alias.email)
        except (ManageError, ValueError) as exc:
            context = {
                "domain": name,
                "shown": show_domain(name),
                "form": form,
                "new": True,
                "error": str(exc),
            }
            return show(request, account, "alias_form.html", context, status_code=400)
        say(request, f"Alias {shown} created.")
        return redirect(f"{prefix}/alias/list/{name}")

    @router.get("/alias/edit/{email}")
    async def alias_edit_form(
        request: Request,
        email: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            alias = _managed_alias(db, account, email)
            context = {
                "domain": alias.domain_name,
                "shown": show_domain(alias.domain_name),
                "alias": {"email": alias.email, "shown": show_email(alias.email)},
                "form": _alias_form(alias),
                "new": False,
            }
        return show(request, account, "alias_form.html", context)

    @router.post("/alias/edit/{email}")
    async def alias_edit(
        request: Request,
        email: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        form = await form_of(request)
        try:
            with work.change(settings_of(request)) as db:
                alias = _managed_alias(db, account, email)
                info = {"email": alias.email, "shown": show_email(alias.email)}
                name = alias.domain_name
                alias.destination = aliases.parse_destinations(form.get("destination", ""))
                alias.comment = text(255)(form.get("comment", "").strip())
                alias.disabled = checked(form, "disabled")
        except (ManageError, ValueError) as exc:
            with work.read(settings_of(request)) as db:
                alias = _managed_alias(db, account, email)
                info = {"email": alias.email, "shown": show_email(alias.email)}
                name = alias.domain_name
                form.update(localpart=alias.localpart, wildcard="on" if alias.wildcard else "")
            context = {
                "domain": name,
                "shown": show_domain(name),
                "alias": info,
                "form": form,
                "new": False,
                "error": str(exc),
            }
            return show(request, account, "alias_form.html", context, status_code=400)
        say(request, f"Alias {info['shown']} saved.")
        return redirect(f"{prefix}/alias/list/{name}")

    @router.get("/alias/delete/{email}")
    async def alias_delete_form(
        request: Request,
        email: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            alias = _managed_alias(db, account, email)
            shown, stored, name = show_email(alias.email), alias.email, alias.domain_name
        return show(
            request,
            account,
            "confirm.html",
            {
                "title": f"Delete {shown}",
                "message": f"Delete the alias {shown}? Mail to it will be refused.",
                "action": f"{prefix}/alias/delete/{quote(stored, safe='@')}",
                "back": f"{prefix}/alias/list/{name}",
                "button": "Delete the alias",
            },
        )

    @router.post("/alias/delete/{email}")
    async def alias_delete(
        request: Request,
        email: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        with work.change(settings_of(request)) as db:
            alias = _managed_alias(db, account, email)
            shown, name = show_email(alias.email), alias.domain_name
            aliases.delete_alias(db, alias.email)
        say(request, f"Alias {shown} deleted.")
        return redirect(f"{prefix}/alias/list/{name}")
