"""``/alias`` (Mailu's alias.py). A wildcard alias's local part is a LIKE pattern."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.store.entities import alias as aliases
from roost.store.entities.domain import check_room, list_domains
from roost.store.entities.names import (
    check_address_free,
    check_local,
    show_domain,
    show_email,
    user_email,
)
from roost.store.models import Alias
from roost.web.api import schemas
from roost.web.api.backend import ApiError, Backend, conflict, invalid, parsed
from roost.web.api.lookups import find_alias, find_domain
from roost.web.api.responses import MailuJSON, PathText, answers, done

__all__ = ["router"]


def alias_out(alias: Alias) -> dict[str, Any]:
    record = {
        "email": show_email(alias.email),
        "destination": [show_email(d) for d in alias.destination or []],
        "comment": alias.comment or "",
        "wildcard": alias.wildcard,
        "hostname": alias.hostname,
        "owner_email": None if alias.owner_email is None else show_email(alias.owner_email),
        "disabled": alias.disabled,
        "created_at": alias.created_at.isoformat() if alias.created_at else None,
    }
    return {k: v for k, v in record.items() if v is not None}


def _all(session: Session, domain: str | None = None) -> list[dict[str, Any]]:
    query = select(Alias).order_by(Alias.domain_name, Alias.localpart)
    if domain is not None:
        query = query.where(Alias.domain_name == domain)
    return [alias_out(a) for a in session.scalars(query)]


def router(backend: Backend) -> APIRouter:
    api = APIRouter(tags=["alias"])

    @api.get("/alias", response_model=list[schemas.AliasGet], responses=answers())
    def list_aliases() -> Any:
        with backend.reading() as session:
            return MailuJSON(_all(session))

    @api.post("/alias", response_model=schemas.Result, responses=answers(404, 409))
    def create_alias(body: schemas.AliasCreate) -> Any:
        local, at, domain_part = body.email.strip().rpartition("@")
        if not at or not local:
            raise ApiError(400, f"Invalid alias {body.email!r}: expected local@domain")
        wildcard = bool(body.wildcard)
        with backend.changing() as session:
            parent = find_domain(session, domain_part)
            email = invalid(lambda: user_email(local, parent.name, wildcard=wildcard))
            conflict(lambda: check_address_free(session, email))
            conflict(lambda: check_room(session, parent, Alias))
            alias = invalid(
                lambda: aliases.create_alias(
                    session, local, parent.name, body.destination or [], wildcard=wildcard
                )
            )
            if body.comment is not None:
                alias.comment = parsed(aliases.FIELDS, "comment", body.comment)
            shown = (show_email(alias.email), [show_email(d) for d in alias.destination])
        return done(f"Alias {shown[0]} to destination(s) {shown[1]} has been created")

    @api.get("/alias/domains/available", response_model=list[str], responses=answers())
    def available_domains() -> Any:
        with backend.reading() as session:
            return MailuJSON([show_domain(d.name) for d in list_domains(session)])

    @api.get(
        "/alias/destination/{domain}",
        response_model=list[schemas.AliasGet],
        responses=answers(404),
    )
    def domain_aliases(domain: PathText) -> Any:
        # Mailu answers every alias of the domain here, whatever the path's name says.
        with backend.reading() as session:
            return MailuJSON(_all(session, find_domain(session, domain).name))

    @api.get("/alias/{alias}", response_model=schemas.AliasGet, responses=answers(404))
    def get_alias(alias: PathText) -> Any:
        with backend.reading() as session:
            return MailuJSON(alias_out(find_alias(session, alias)))

    @api.patch("/alias/{alias}", response_model=schemas.Result, responses=answers(404))
    def update_alias(body: schemas.AliasUpdate, alias: PathText) -> Any:
        with backend.changing() as session:
            found = find_alias(session, alias)
            if body.wildcard is not None and body.wildcard != found.wildcard:
                # The stored local part must read as what the alias now is.
                invalid(lambda: check_local(found.localpart, wildcard=bool(body.wildcard)))
                found.wildcard = body.wildcard
            if body.destination is not None:
                targets = body.destination
                found.destination = invalid(lambda: aliases.parse_destinations(targets))
            if body.comment is not None:
                found.comment = parsed(aliases.FIELDS, "comment", body.comment)
            shown = show_email(found.email)
        return done(f"Alias {shown} has been updated")

    @api.delete("/alias/{alias}", response_model=schemas.Result, responses=answers(404))
    def delete_alias(alias: PathText) -> Any:
        with backend.changing() as session:
            found = find_alias(session, alias)
            shown = show_email(found.email)
            aliases.delete_alias(session, found.email)
        return done(f"Alias {shown} has been deleted")

    return api
