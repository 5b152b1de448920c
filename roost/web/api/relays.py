"""``/relay`` (Mailu's relay.py): relayed domains and their target."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from roost.store.entities import relay as relays
from roost.store.entities.names import check_domain_name_free, show_domain
from roost.store.models import Relay
from roost.web.api import schemas
from roost.web.api.backend import Backend, conflict, invalid, parsed
from roost.web.api.lookups import find_relay, stored_domain
from roost.web.api.responses import MailuJSON, PathText, answers, done

__all__ = ["router"]


def relay_out(relay: Relay) -> dict[str, Any]:
    return {
        "name": show_domain(relay.name),
        "smtp": relay.smtp or "",
        "comment": relay.comment or "",
    }


def _apply(relay: Relay, body: schemas.RelayUpdate) -> None:
    if body.smtp is not None:
        smtp = body.smtp.strip()
        relay.smtp = invalid(lambda: relays.check_target(relay.name, smtp))
    if body.comment is not None:
        relay.comment = parsed(relays.FIELDS, "comment", body.comment)


def router(backend: Backend) -> APIRouter:
    api = APIRouter(tags=["relay"])

    @api.get("/relay", response_model=list[schemas.RelayGet], responses=answers())
    def list_relays() -> Any:
        with backend.reading() as session:
            return MailuJSON([relay_out(r) for r in relays.list_relays(session)])

    @api.post("/relay", response_model=schemas.Result, responses=answers(409))
    def create_relay(body: schemas.RelayCreate) -> Any:
        with backend.changing() as session:
            name = stored_domain(body.name)
            conflict(lambda: check_domain_name_free(session, name))
            relay = invalid(lambda: relays.add_relay(session, name, (body.smtp or "").strip()))
            if body.comment is not None:
                _apply(relay, schemas.RelayUpdate(comment=body.comment))
        return done(f"Relayed domain {show_domain(name)} has been created")

    @api.get("/relay/{name}", response_model=schemas.RelayGet, responses=answers(404))
    def get_relay(name: PathText) -> Any:
        with backend.reading() as session:
            return MailuJSON(relay_out(find_relay(session, name)))

    @api.patch("/relay/{name}", response_model=schemas.Result, responses=answers(404))
    def update_relay(body: schemas.RelayUpdate, name: PathText) -> Any:
        with backend.changing() as session:
            relay = find_relay(session, name)
            _apply(relay, body)
            shown = show_domain(relay.name)
        return done(f"Relayed domain {shown} has been updated")

    @api.delete("/relay/{name}", response_model=schemas.Result, responses=answers(404))
    def delete_relay(name: PathText) -> Any:
        with backend.changing() as session:
            relay = find_relay(session, name)
            shown = show_domain(relay.name)
            relays.delete_relay(session, relay.name)
        return done(f"Relayed domain {shown} has been deleted")

    return api
