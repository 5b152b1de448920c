"""``/domain``, its managers and users, and ``/alternative`` (Mailu's domain.py)."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter

from roost.store.entities import alternative as alternatives
from roost.store.entities import domain as domains
from roost.store.entities import manager as managers
from roost.store.entities.names import check_domain_name_free, show_domain, show_email
from roost.store.models import Domain, User
from roost.web.api import dns, schemas
from roost.web.api.backend import ApiError, Backend, conflict, invalid, parsed
from roost.web.api.lookups import find_alternative, find_domain, find_user, stored_domain
from roost.web.api.responses import MailuJSON, PathText, answers, done
from roost.web.api.users import user_rows

__all__ = ["router"]


def domain_out(backend: Backend, domain: Domain) -> dict[str, Any]:
    settings = backend.settings
    return {
        "name": show_domain(domain.name),
        "comment": domain.comment or "",
        "managers": sorted(show_email(u.email) for u in domain.managers),
        "max_users": domain.max_users,
        "max_aliases": domain.max_aliases,
        "max_quota_bytes": domain.max_quota_bytes,
        "signup_enabled": domain.signup_enabled,
        "alternatives": sorted(show_domain(a.name) for a in domain.alternatives),
        **dns.dns_fields(settings, domain.name),
    }


def _add_alternatives(session: Any, domain: Domain, names: list[str]) -> None:
    """Mailu adds the listed alternatives (PATCH never removes one); each is refused with
    409 when listed twice or when the name space already holds it."""
    stored = [stored_domain(n) for n in names]
    if len(set(stored)) != len(stored):
        raise ApiError(409, "Duplicate alternative domain names in the request")
    current = {a.name for a in domain.alternatives}
    for name in stored:
        if name in current:
            continue
        conflict(partial(check_domain_name_free, session, name))
        session.flush()
        alternatives.add_alternative(session, name, domain.name)


def _apply(session: Any, domain: Domain, body: schemas.DomainUpdate) -> None:
    if (
        body.max_users is not None
        or body.max_aliases is not None
        or body.max_quota_bytes is not None
    ):
        invalid(
            lambda: domains.set_limits(
                session, domain.name, body.max_users, body.max_aliases, body.max_quota_bytes
            )
        )
    for name in ("comment", "signup_enabled"):
        value = getattr(body, name)
        if value is not None:
            setattr(domain, name, parsed(domains.FIELDS, name, value))
    if body.alternatives is not None:
        _add_alternatives(session, domain, body.alternatives)


def _manager(session: Any, domain: str, email: str) -> tuple[Domain, User, str, str]:
    """The domain and its manager named by a path, with both names as shown; a 404 (with
    Mailu's text) when the user does not manage the domain."""
    found = find_domain(session, domain)
    user = find_user(session, email)
    who, name = show_email(user.email), show_domain(found.name)
    if found not in user.manager_of:
        raise ApiError(404, f"User {who} is not a manager of the domain {name}")
    return found, user, who, name


def router(backend: Backend) -> APIRouter:
    api = APIRouter(tags=["domain"])

    @api.get("/domain", response_model=list[schemas.DomainGet], responses=answers())
    def list_domains() -> Any:
        with backend.reading() as session:
            return MailuJSON([domain_out(backend, d) for d in domains.list_domains(session)])

    @api.post("/domain", response_model=schemas.Result, responses=answers(409))
    def create_domain(body: schemas.DomainCreate) -> Any:
        with backend.changing() as session:
            name = stored_domain(body.name)
            conflict(lambda: check_domain_name_free(session, name))
            domain = invalid(lambda: domains.create_domain(session, name))
            session.flush()
            _apply(session, domain, body)
        return done(f"Domain {show_domain(name)} has been created")

    @api.get("/domain/{domain}", response_model=schemas.DomainGet, responses=answers(404))
    def get_domain(domain: PathText) -> Any:
        with backend.reading() as session:
            return MailuJSON(domain_out(backend, find_domain(session, domain)))

    @api.patch("/domain/{domain}", response_model=schemas.Result, responses=answers(404, 409))
    def update_domain(body: schemas.DomainUpdate, domain: PathText) -> Any:
        with backend.changing() as session:
            found = find_domain(session, domain)
            _apply(session, found, body)
            name = found.name
        return done(f"Domain {show_domain(name)} has been updated")

    @api.delete("/domain/{domain}", response_model=schemas.Result, responses=answers(404))
    def delete_domain(domain: PathText) -> Any:
        with backend.changing() as session:
            name = find_domain(session, domain).name
            # Mailu's API deletes a domain with its users and aliases.
            domains.delete_domain(session, name, really=True)
        return done(f"Domain {show_domain(name)} has been deleted")

    @api.post("/domain/{domain}/dkim", response_model=schemas.Result, responses=answers(404))
    def generate_dkim(domain: PathText) -> Any:
        """Mailu's: a new DKIM key for the domain (the records are in ``dns_dkim``)."""
        with backend.changing() as session:
            name = find_domain(session, domain).name
            domains.generate_dkim_key(session, backend.settings, name)
        return done(f"DKIM/DMARC keys have been generated for domain {show_domain(name)}")

    @api.get("/domain/{domain}/users", response_model=list[schemas.UserGet], responses=answers(404))
    def domain_users(domain: PathText) -> Any:
        with backend.reading() as session:
            name = find_domain(session, domain).name
            return user_rows(session, name)

    # -- managers ------------------------------------------------------------------------

    @api.get("/domain/{domain}/manager", response_model=schemas.Managers, responses=answers(404))
    def list_managers(domain: PathText) -> Any:
        with backend.reading() as session:
            found = find_domain(session, domain)
            return MailuJSON({"managers": sorted(show_email(u.email) for u in found.managers)})

    @api.post(
        "/domain/{domain}/manager", response_model=schemas.Result, responses=answers(404, 409)
    )
    def add_manager(body: schemas.ManagerCreate, domain: PathText) -> Any:
        with backend.changing() as session:
            found = find_domain(session, domain)
            user = find_user(session, body.user_email)
            if found in user.manager_of:
                raise ApiError(
                    409,
                    f"User {show_email(user.email)} is already manager of the domain "
                    f"{show_domain(found.name)}",
                )
            managers.add_manager(session, found.name, user.email)
            email, name = user.email, found.name
        return done(
            f"User {show_email(email)} has been added as manager of the domain {show_domain(name)} "
        )

    @api.get(
        "/domain/{domain}/manager/{email}", response_model=schemas.Result, responses=answers(404)
    )
    def get_manager(domain: PathText, email: PathText) -> Any:
        with backend.reading() as session:
            _, _, who, name = _manager(session, domain, email)
        return done(f"User {who} is a manager of the domain {name}")

    @api.delete(
        "/domain/{domain}/manager/{email}", response_model=schemas.Result, responses=answers(404)
    )
    def delete_manager(domain: PathText, email: PathText) -> Any:
        with backend.changing() as session:
            found, user, who, name = _manager(session, domain, email)
            managers.remove_manager(session, found.name, user.email)
        return done(f"User {who} has been removed as a manager of the domain {name} ")

    # -- alternatives --------------------------------------------------------------------

    @api.get(
        "/alternative",
        response_model=list[schemas.AlternativeGet],
        responses=answers(),
        tags=["alternative"],
    )
    def list_alternatives() -> Any:
        with backend.reading() as session:
            return MailuJSON(
                [
                    {"name": show_domain(a.name), "domain": show_domain(a.domain_name)}
                    for a in alternatives.list_alternatives(session)
                ]
            )

    @api.post(
        "/alternative",
        response_model=schemas.Result,
        responses=answers(404, 409),
        tags=["alternative"],
    )
    def create_alternative(body: schemas.AlternativeGet) -> Any:
        with backend.changing() as session:
            name = stored_domain(body.name)
            parent = find_domain(session, body.domain)
            conflict(lambda: check_domain_name_free(session, name))
            alternatives.add_alternative(session, name, parent.name)
            shown = (show_domain(name), show_domain(parent.name))
        return done(f"Alternative {shown[0]} for domain {shown[1]} has been created")

    @api.get(
        "/alternative/{alt}",
        response_model=schemas.AlternativeGet,
        responses=answers(404),
        tags=["alternative"],
    )
    def get_alternative(alt: PathText) -> Any:
        with backend.reading() as session:
            found = find_alternative(session, alt)
            return MailuJSON(
                {"name": show_domain(found.name), "domain": show_domain(found.domain_name)}
            )

    @api.delete(
        "/alternative/{alt}",
        response_model=schemas.Result,
        responses=answers(404),
        tags=["alternative"],
    )
    def delete_alternative(alt: PathText) -> Any:
        with backend.changing() as session:
            found = find_alternative(session, alt)
            shown = (show_domain(found.name), show_domain(found.domain_name))
            alternatives.delete_alternative(session, found.name)
        return done(f"Alternative {shown[0]} for domain {shown[1]} has been deleted")

    return api
