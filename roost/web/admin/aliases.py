"""A domain's aliases: the list (searched and paged in SQL), creating one (a wildcard
too: the local part is then an SQL LIKE pattern, ``%`` alone catches all), editing its
destinations, comment and switch, and deleting one. Open to the domain's managers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.store import work
from roost.store.entities import alias as aliases
from roost.store.entities.fields import text
from roost.store.entities.names import ManageError, show_domain, show_email
from roost.store.models import Alias
from roost.web.admin import rights
from roost.web.admin.common import (
    Deletion,
    add_delete_pages,
    checked,
    find_alias,
    form_of,
    listing,
    managed_domain,
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


def _form_page(
    request: Request,
    account: Account,
    domain: str,
    form: dict[str, str],
    *,
    alias: str = "",
    error: str = "",
) -> Response:
    """The alias form of ``domain`` (stored name): a new alias, or the stored ``alias``;
    with an ``error`` it is the refused form again (a 400) with what was typed."""
    context: dict[str, Any] = {
        "domain": domain,
        "shown": show_domain(domain),
        "form": form,
        "new": not alias,
        "error": error,
    }
    if alias:
        context["alias"] = {"email": alias, "shown": show_email(alias)}
    return show(request, account, "alias_form.html", context, status_code=400 if error else 200)


def add_routes(router: APIRouter, prefix: str) -> None:
    """The alias pages, on ``router``."""

    @router.get("/alias/list/{domain}")
    async def alias_list(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            found = managed_domain(db, account, domain)
            name = found.name
            query = select(Alias).where(Alias.domain_name == name)
            searched = (Alias.email, Alias.destination, Alias.comment)
            pager, query = listing(db, request, query, Alias.localpart, *searched)
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
            name = managed_domain(db, account, domain).name
        return _form_page(request, account, name, {})

    @router.post("/alias/create/{domain}")
    async def alias_create(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        form = await form_of(request)
        with work.read(settings_of(request)) as db:
            found = managed_domain(db, account, domain)
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
            return _form_page(request, account, name, form, error=str(exc))
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
            name, stored, form = alias.domain_name, alias.email, _alias_form(alias)
        return _form_page(request, account, name, form, alias=stored)

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
                shown, name = show_email(alias.email), alias.domain_name
                alias.destination = aliases.parse_destinations(form.get("destination", ""))
                alias.comment = text(255)(form.get("comment", "").strip())
                alias.disabled = checked(form, "disabled")
        except (ManageError, ValueError) as exc:
            with work.read(settings_of(request)) as db:
                alias = _managed_alias(db, account, email)
                name, stored = alias.domain_name, alias.email
                # What cannot change after creation is shown as stored, not as posted.
                kept = _alias_form(alias)
            form.update(localpart=kept["localpart"], wildcard=kept["wildcard"])
            return _form_page(request, account, name, form, alias=stored, error=str(exc))
        say(request, f"Alias {shown} saved.")
        return redirect(f"{prefix}/alias/list/{name}")

    def alias_deletion(db: Session, account: Account, email: str) -> Deletion:
        alias = _managed_alias(db, account, email)
        shown, stored, name = show_email(alias.email), alias.email, alias.domain_name
        return Deletion(
            title=f"Delete {shown}",
            message=f"Delete the alias {shown}? Mail to it will be refused.",
            button="Delete the alias",
            # A wildcard's '%' must survive the path.
            action=f"{prefix}/alias/delete/{quote(stored, safe='@')}",
            back=f"{prefix}/alias/list/{name}",
            notice=f"Alias {shown} deleted.",
            delete=lambda db: aliases.delete_alias(db, stored),
        )

    add_delete_pages(router, "/alias/delete/{email}", manager_only, alias_deletion)
