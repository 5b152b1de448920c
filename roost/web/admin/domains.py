"""Domains, their DNS records, alternatives, managers, and relayed domains.

Global administrators create, edit and delete domains, alternatives and relays; a domain
manager sees the domains they manage, their details and DNS records, and adds or removes
their managers (within the rank rule, :mod:`roost.web.admin.rights`). Every change goes
through the entity operations in one unit of work (:func:`roost.store.work.change`);
what an operation refuses is shown on the form, with the values typed kept.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from roost import dnscheck, tls
from roost.core import dnsrecords
from roost.core.address import AddressError
from roost.core.dane import ServedKey
from roost.layout import Layout
from roost.store import work
from roost.store.dkimkeys import DkimKeyError, DkimKeys
from roost.store.entities import alternative as alternatives
from roost.store.entities import domain as domains
from roost.store.entities import relay as relays
from roost.store.entities.fields import text
from roost.store.entities.manager import add_manager, remove_manager
from roost.store.entities.names import (
    ManageError,
    count,
    parse_email,
    show_domain,
    show_email,
    user_email,
)
from roost.store.models import Alias, Domain, User
from roost.web.admin import rights
from roost.web.admin.common import (
    Deletion,
    add_delete_pages,
    checked,
    confirm,
    find_alternative,
    find_domain,
    find_relay,
    find_user,
    form_of,
    listing,
    managed_domain,
    parse_count,
    parse_size,
    redirect,
    say,
    settings_of,
    show,
    show_size,
)
from roost.web.auth import Account, require_role

__all__ = ["add_routes"]

log = logging.getLogger("roost.web.admin")

manager_only = require_role("manager")
admin_only = require_role("admin")

#: Up to this many candidates, the manager form is a list to choose from; above, a text field.
MANAGER_CHOICES_MAX = 200

#: Mailu's admin form defaults for a new domain.
NEW_DOMAIN = {"name": "", "max_users": "10", "max_aliases": "10", "max_quota_bytes": "0"}


def _counts(db: Any, model: type[User] | type[Alias], names: list[str]) -> dict[str, int]:
    """How many ``model`` rows each of the domains ``names`` has (absent: none)."""
    query = (
        select(model.domain_name, func.count())
        .where(model.domain_name.in_(names))
        .group_by(model.domain_name)
    )
    return {name: count for name, count in db.execute(query).all()}


def _domain_form(domain: Domain) -> dict[str, str]:
    return {
        "name": show_domain(domain.name),
        "max_users": str(domain.max_users),
        "max_aliases": str(domain.max_aliases),
        "max_quota_bytes": show_size(domain.max_quota_bytes),
        "comment": domain.comment or "",
        "totp_required": "on" if domain.totp_required else "",
        "anonmail_enabled": "on" if domain.anonmail_enabled else "",
    }


def _limits(form: dict[str, str]) -> tuple[int, int, int]:
    return (
        parse_count(form.get("max_users", "-1"), "max users"),
        parse_count(form.get("max_aliases", "-1"), "max aliases"),
        parse_size(form.get("max_quota_bytes", "0") or "0", "max quota"),
    )


def _apply_switches(db: Session, name: str, form: dict[str, str]) -> None:
    """The form's checkboxes, each through its entity operation (an unticked box: off)."""
    domains.set_totp_required(db, name, checked(form, "totp_required"))
    domains.set_anonmail_enabled(db, name, checked(form, "anonmail_enabled"))


def _dkim_keys(request: Request, name: str) -> list[tuple[str, str]]:
    """(selector, public key) of the domain's DKIM keys (none without one, or with an
    unreadable one, which the log names); two while a rotation runs."""
    try:
        return DkimKeys(settings_of(request)).published(name)
    except DkimKeyError as exc:
        log.error("DKIM key of %s: %s", name, exc)
        return []


def _served(request: Request) -> ServedKey | None:
    """Port 25's certificate, for the TLSA record under TLS_FLAVOR cert and mail."""
    return tls.served_key(Layout(settings_of(request)))


def _records(request: Request, domain: Domain) -> list[dnsrecords.Record]:
    names = [a.name for a in domain.alternatives]
    try:
        return dnsrecords.records(
            settings_of(request),
            domain.name,
            names,
            dkim_keys=_dkim_keys(request, domain.name),
            served=_served(request),
        )
    except AddressError:
        return []


def add_routes(router: APIRouter, prefix: str) -> None:
    """The domain, alternative, manager and relay pages, on ``router``."""

    # -- domains -------------------------------------------------------------------------

    @router.get("/domain")
    async def domain_list(
        request: Request,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            query = select(Domain)
            if not account.global_admin:
                query = query.where(Domain.name.in_(account.managed_domains))
            pager, rows = listing(db, request, query, Domain.name, Domain.name, Domain.comment)
            found = list(db.scalars(rows))
            names = [d.name for d in found]
            users, aliases = _counts(db, User, names), _counts(db, Alias, names)
            listed = [
                {
                    "name": d.name,
                    "shown": show_domain(d.name),
                    "users": users.get(d.name, 0),
                    "aliases": aliases.get(d.name, 0),
                    "max_users": d.max_users,
                    "max_aliases": d.max_aliases,
                    "max_quota_bytes": d.max_quota_bytes,
                    "comment": d.comment or "",
                    "anonmail_enabled": d.anonmail_enabled,
                }
                for d in found
            ]
        return show(request, account, "domains.html", {"domains": listed, "pager": pager})

    @router.get("/domain/create")
    async def domain_create_form(
        request: Request,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        return show(request, account, "domain_form.html", {"form": NEW_DOMAIN, "new": True})

    @router.post("/domain/create")
    async def domain_create(
        request: Request,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        form = await form_of(request)
        try:
            with work.change(settings_of(request)) as db:
                created = domains.create_domain(db, form.get("name", ""), *_limits(form))
                created.comment = text(255)(form.get("comment", "").strip())
                name = created.name
                _apply_switches(db, name, form)
        except (ManageError, ValueError) as exc:
            context = {"form": form, "new": True, "error": str(exc)}
            return show(request, account, "domain_form.html", context, status_code=400)
        say(request, f"Domain {show_domain(name)} created.")
        return redirect(f"{prefix}/domain/details/{name}")

    @router.get("/domain/edit/{domain}")
    async def domain_edit_form(
        request: Request,
        domain: str,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            form = _domain_form(find_domain(db, domain))
        return show(request, account, "domain_form.html", {"form": form, "new": False})

    @router.post("/domain/edit/{domain}")
    async def domain_edit(
        request: Request,
        domain: str,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        form = await form_of(request)
        try:
            with work.change(settings_of(request)) as db:
                found = find_domain(db, domain)
                form["name"] = show_domain(found.name)
                domains.set_limits(db, found.name, *_limits(form))
                found.comment = text(255)(form.get("comment", "").strip())
                name = found.name
                _apply_switches(db, name, form)
        except (ManageError, ValueError) as exc:
            context = {"form": form, "new": False, "error": str(exc)}
            return show(request, account, "domain_form.html", context, status_code=400)
        say(request, f"Domain {show_domain(name)} saved.")
        return redirect(f"{prefix}/domain/details/{name}")

    def domain_deletion(db: Session, account: Account, domain: str) -> Deletion:
        found = find_domain(db, domain)
        shown, name = show_domain(found.name), found.name
        users, aliases = count(db, User, name), count(db, Alias, name)
        return Deletion(
            title=f"Delete {shown}",
            message=f"Delete the domain {shown} with its {users} users, {aliases} aliases and "
            "its alternatives? Their mail stays on disk but nobody can reach it.",
            button="Delete the domain",
            action=f"{prefix}/domain/delete/{name}",
            back=f"{prefix}/domain/details/{name}",
            notice=f"Domain {shown} deleted.",
            after=f"{prefix}/domain",
            delete=lambda db: domains.delete_domain(db, name, really=True),
        )

    add_delete_pages(router, "/domain/delete/{domain}", admin_only, domain_deletion)

    @router.get("/domain/genkeys/{domain}")
    async def ask_genkeys(
        request: Request,
        domain: str,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        """Mailu's "Generate keys": a new DKIM key, after a confirmation page."""
        with work.read(settings_of(request)) as db:
            found = find_domain(db, domain)
            name, shown = found.name, show_domain(found.name)
        return confirm(
            request,
            account,
            title=f"Generate DKIM keys for {shown}",
            message=(
                f"Mail from {shown} and its alternative domains is signed with the new key "
                "at once, and receivers fail the signature until they find its record: "
                "publish the new DKIM record straight away."
            ),
            action=f"{prefix}/domain/genkeys/{name}",
            back=f"{prefix}/domain/details/{name}",
            button="Generate keys",
        )

    @router.post("/domain/genkeys/{domain}")
    async def genkeys(
        request: Request,
        domain: str,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        settings = settings_of(request)
        with work.change(settings) as db:
            found = find_domain(db, domain)
            name = domains.generate_dkim_key(db, settings, found.name).name
        say(request, f"DKIM/DMARC keys have been generated for domain {show_domain(name)}")
        return redirect(f"{prefix}/domain/details/{name}")

    @router.get("/domain/details/{domain}")
    async def domain_details(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        return _details_page(request, account, domain, {})

    @router.get("/domain/details/{domain}/zonefile")
    async def zone_file(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            found = managed_domain(db, account, domain)
            names = [a.name for a in found.alternatives]
            name = found.name
        body = dnsrecords.zone_file(
            settings_of(request),
            name,
            names,
            dkim_keys=_dkim_keys(request, name),
            served=_served(request),
        )
        return Response(
            body,
            media_type="text/plain; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{name}-zonefile.txt"',
                "Cache-Control": "no-store",
            },
        )

    @router.get("/domain/details/{domain}/check")
    async def dns_check(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        with work.read(settings_of(request)) as db:
            found = managed_domain(db, account, domain)
            records = _records(request, found)
            shown, name = show_domain(found.name), found.name
        # Live lookups take seconds at worst (bounded by dnscheck's deadline): off the loop.
        checks = await asyncio.to_thread(dnscheck.check_records, records)
        return show(
            request,
            account,
            "dns_check.html",
            {
                "domain": name,
                "shown": shown,
                "checks": checks,
                "summary": dnscheck.summary(checks),
            },
        )

    # -- alternatives (global administrators) --------------------------------------------

    @router.post("/alternative/create/{domain}")
    async def alternative_create(
        request: Request,
        domain: str,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        form = await form_of(request)
        try:
            with work.change(settings_of(request)) as db:
                found = find_domain(db, domain)
                name = found.name
                added = alternatives.add_alternative(db, form.get("name", ""), found.name)
                shown = show_domain(added.name)
        except ManageError as exc:
            extra = {"alternative_form": form, "alternative_error": str(exc)}
            return _details_page(request, account, domain, extra, status_code=400)
        say(request, f"Alternative domain {shown} added.")
        return redirect(f"{prefix}/domain/details/{name}")

    def alternative_deletion(db: Session, account: Account, name: str) -> Deletion:
        found = find_alternative(db, name)
        shown, stored, parent = show_domain(found.name), found.name, found.domain_name
        return Deletion(
            title=f"Delete {shown}",
            message=f"Stop receiving mail for {shown} as {show_domain(parent)}?",
            button="Delete the alternative",
            action=f"{prefix}/alternative/delete/{stored}",
            back=f"{prefix}/domain/details/{parent}",
            notice=f"Alternative domain {shown} deleted.",
            delete=lambda db: alternatives.delete_alternative(db, stored),
        )

    add_delete_pages(router, "/alternative/delete/{name}", admin_only, alternative_deletion)

    # -- managers (global administrators and the domain's managers) ----------------------

    @router.get("/manager/create/{domain}")
    async def manager_create_form(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        return _manager_page(request, account, domain, {})

    @router.post("/manager/create/{domain}")
    async def manager_create(
        request: Request,
        domain: str,
        account: Account = Depends(manager_only),  # noqa: B008
    ) -> Response:
        form = await form_of(request)
        # "email" from the list or the typed address; "localpart" from older forms and scripts.
        typed = (form.get("email") or form.get("localpart", "")).strip()
        with work.read(settings_of(request)) as db:
            name = managed_domain(db, account, domain).name
        try:
            with work.change(settings_of(request)) as db:
                user = _new_manager(db, name, typed)
                rights.require_user(account, rights.Target.of(user))
                shown = show_email(user.email)
                if any(d.name == name for d in user.manager_of):
                    raise ManageError(f"{shown} manages {show_domain(name)} already")
                add_manager(db, name, user.email)
        except ManageError as exc:
            return _manager_page(request, account, name, {"email": typed}, error=str(exc))
        say(request, f"{shown} now manages {show_domain(name)}.")
        return redirect(f"{prefix}/domain/details/{name}")

    def manager_deletion(db: Session, account: Account, domain: str, email: str) -> Deletion:
        found, user = _manager_target(db, account, domain, email)
        shown, who, name = show_domain(found.name), show_email(user.email), found.name
        target = user.email
        return Deletion(
            title="Remove a manager",
            message=f"{who} will no longer manage {shown}.",
            button="Remove the manager",
            action=f"{prefix}/manager/delete/{name}/{target}",
            back=f"{prefix}/domain/details/{name}",
            notice=f"{who} no longer manages {shown}.",
            delete=lambda db: remove_manager(db, name, target),
        )

    add_delete_pages(router, "/manager/delete/{domain}/{email}", manager_only, manager_deletion)

    # -- relays (global administrators) --------------------------------------------------

    @router.get("/relay")
    async def relay_list(
        request: Request,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        return show(request, account, "relays.html", _relays(request, {}))

    @router.post("/relay/create")
    async def relay_create(
        request: Request,
        account: Account = Depends(admin_only),  # noqa: B008
    ) -> Response:
        form = await form_of(request)
        try:
            with work.change(settings_of(request)) as db:
                relay = relays.add_relay(db, form.get("name", ""), form.get("smtp", ""))
                relay.comment = text(255)(form.get("comment", "").strip())
                shown = show_domain(relay.name)
        except (ManageError, ValueError) as exc:
            context = _relays(request, {"form": form, "error": str(exc)})
            return show(request, account, "relays.html", context, status_code=400)
        say(request, f"Mail for {shown} is relayed now.")
        return redirect(f"{prefix}/relay")

    def relay_deletion(db: Session, account: Account, name: str) -> Deletion:
        found = find_relay(db, name)
        shown, stored = show_domain(found.name), found.name
        return Deletion(
            title=f"Stop relaying {shown}",
            message=f"Mail for {shown} will no longer be relayed.",
            button="Delete the relay",
            action=f"{prefix}/relay/delete/{stored}",
            back=f"{prefix}/relay",
            notice=f"Relay for {shown} deleted.",
            delete=lambda db: relays.delete_relay(db, stored),
        )

    add_delete_pages(router, "/relay/delete/{name}", admin_only, relay_deletion)


def _details_page(
    request: Request,
    account: Account,
    domain: str,
    extra: dict[str, Any],
    status_code: int = 200,
) -> Response:
    """The domain's details page; ``extra`` carries a refused form back with its message."""
    with work.read(settings_of(request)) as db:
        context = _details(db, request, account, managed_domain(db, account, domain))
    context.update(extra)
    return show(request, account, "domain.html", context, status_code=status_code)


def _details(db: Any, request: Request, account: Account, found: Domain) -> dict[str, Any]:
    users = db.scalar(select(func.count()).where(User.domain_name == found.name)) or 0
    aliases = db.scalar(select(func.count()).where(Alias.domain_name == found.name)) or 0
    return {
        "domain": found.name,
        "shown": show_domain(found.name),
        "limits": {
            "max_users": found.max_users,
            "max_aliases": found.max_aliases,
            "max_quota_bytes": found.max_quota_bytes,
        },
        "comment": found.comment or "",
        "totp_required": found.totp_required,
        "anonmail_enabled": found.anonmail_enabled,
        "users": users,
        "aliases": aliases,
        "alternatives": [
            {"name": a.name, "shown": show_domain(a.name)}
            for a in sorted(found.alternatives, key=lambda a: a.name)
        ],
        "managers": [
            {"email": u.email, "shown": show_email(u.email)}
            for u in sorted(found.managers, key=lambda u: u.email)
        ],
        "records": _records(request, found),
        "omitted": dnsrecords.omitted(
            settings_of(request),
            found.name,
            dkim_keys=_dkim_keys(request, found.name),
            served=_served(request),
        ),
        "dkim_key": bool(_dkim_keys(request, found.name)),
        "alternative_form": {},
        "manager_choices": _manager_choices(db, account, found.name),
        "manager_form": {},
    }


def _manager_candidates(account: Account, domain: str) -> Select[str]:
    """The users ``account`` may make managers of ``domain``: Mailu offers the users of the
    domains the actor manages (a global administrator: everyone). Those who manage the
    domain already are left out, and so is anyone the rank rule (:mod:`rights`) would not
    let a manager act on: a global administrator, or a manager of a domain the actor does
    not manage. The POST checks the rank rule again on the one chosen."""
    query = select(User.email).where(~User.manager_of.any(Domain.name == domain))
    if account.global_admin:
        return query
    managed = sorted(account.managed_domains)
    return query.where(
        User.domain_name.in_(managed),
        User.global_admin.is_(False),
        ~User.manager_of.any(Domain.name.not_in(managed)),
    )


def _manager_choices(db: Any, account: Account, domain: str) -> list[dict[str, str]] | None:
    """The candidates as a list to choose from; None when there are more than
    :data:`MANAGER_CHOICES_MAX` (the form then asks for an address: a select of thousands
    of addresses helps nobody)."""
    query = _manager_candidates(account, domain)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    if total > MANAGER_CHOICES_MAX:
        return None
    emails = db.scalars(query.order_by(User.domain_name, User.localpart))
    return [{"email": email, "shown": show_email(email)} for email in emails]


def _new_manager(db: Any, domain: str, typed: str) -> User:
    """The user a manager form names: an address, or a name alone for a user of ``domain``."""
    if not typed:
        raise ManageError("choose a user or give an address")
    email = parse_email(typed) if "@" in typed else user_email(typed, domain)
    user = db.get(User, email)
    if user is None:
        raise ManageError(f"no user {show_email(email)}: create the user first")
    assert isinstance(user, User)
    return user


def _manager_page(
    request: Request,
    account: Account,
    domain: str,
    form: dict[str, str],
    *,
    error: str = "",
) -> Response:
    """Mailu's page for adding a manager; with an ``error``, the refused form again (400)."""
    with work.read(settings_of(request)) as db:
        name = managed_domain(db, account, domain).name
        choices = _manager_choices(db, account, name)
    context = {
        "domain": name,
        "shown": show_domain(name),
        "manager_choices": choices,
        "manager_form": form,
        "error": error,
    }
    return show(request, account, "manager_create.html", context, status_code=400 if error else 200)


def _manager_target(db: Any, account: Account, domain: str, email: str) -> tuple[Domain, User]:
    found = managed_domain(db, account, domain)
    user = find_user(db, email)
    rights.require_user(account, rights.Target.of(user))
    if found not in user.manager_of:
        raise HTTPException(status_code=404)
    return found, user


def _relays(request: Request, extra: dict[str, Any]) -> dict[str, Any]:
    with work.read(settings_of(request)) as db:
        listed = [
            {
                "name": r.name,
                "shown": show_domain(r.name),
                "smtp": r.smtp or "",
                "comment": r.comment or "",
            }
            for r in relays.list_relays(db)
        ]
    context: dict[str, Any] = {"relays": listed, "form": {}}
    context.update(extra)
    return context
