"""``/token`` and ``/tokenuser/<email>`` (Mailu's token.py): app tokens of users.

The raw token is shown once, in the answer that creates it; only its hash is stored
(roost/store/entities/token.py). ``/tokenuser`` has no slash before ``user`` in Mailu,
and clients use that path, so it is kept.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.store.entities import token as tokens
from roost.store.entities.names import show_email
from roost.store.models import Token
from roost.web.api import schemas
from roost.web.api.backend import ApiError, Backend, invalid, parsed
from roost.web.api.lookups import find_user
from roost.web.api.responses import MailuJSON, PathText, answers, done

__all__ = ["router"]

TokenId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def token_out(token: Token, id_as_text: bool) -> dict[str, Any]:
    return {
        "id": str(token.id) if id_as_text else token.id,
        "email": show_email(token.user_email),
        "comment": token.comment or "",
        "AuthorizedIP": list(token.ip or []),
        "Created": str(token.created_at),
        "Last edit": str(token.updated_at),
    }


def _find(session: Session, token_id: int) -> Token:
    token = session.get(Token, token_id)
    if token is None:
        raise ApiError(404, f"Record cannot be found for id {token_id} or invalid id provided")
    return token


def _create(backend: Backend, email: str, body: schemas.TokenUpdate) -> MailuJSON:
    with backend.changing() as session:
        user = find_user(session, email)
        comment = parsed(tokens.FIELDS, "comment", body.comment or "")
        token, raw = invalid(
            lambda: tokens.add_token(session, user.email, comment, body.AuthorizedIP or [])
        )
        session.flush()
        answer = token_out(token, id_as_text=False)
    del answer["Last edit"]
    return MailuJSON({**answer, "token": raw})


def router(backend: Backend) -> APIRouter:
    api = APIRouter(tags=["token"])

    @api.get("/token", response_model=list[schemas.TokenGet], responses=answers())
    def list_tokens() -> Any:
        with backend.reading() as session:
            found = session.scalars(select(Token).order_by(Token.id))
            return MailuJSON([token_out(t, id_as_text=True) for t in found])

    @api.post("/token", response_model=schemas.TokenCreated, responses=answers(404))
    def create_token(body: schemas.TokenCreate) -> Any:
        return _create(backend, body.email, body)

    @api.get("/tokenuser/{email}", response_model=list[schemas.TokenGet], responses=answers(404))
    def user_tokens(email: PathText) -> Any:
        with backend.reading() as session:
            user = find_user(session, email)
            found = tokens.list_tokens(session, user.email)
            return MailuJSON([token_out(t, id_as_text=True) for t in found])

    @api.post("/tokenuser/{email}", response_model=schemas.TokenCreated, responses=answers(404))
    def create_user_token(body: schemas.TokenUpdate, email: PathText) -> Any:
        return _create(backend, email, body)

    @api.get("/token/{token_id}", response_model=schemas.TokenGet, responses=answers(404))
    def get_token(token_id: TokenId) -> Any:
        with backend.reading() as session:
            return MailuJSON(token_out(_find(session, token_id), id_as_text=False))

    @api.patch("/token/{token_id}", response_model=schemas.Result, responses=answers(404))
    def update_token(body: schemas.TokenUpdate, token_id: TokenId) -> Any:
        with backend.changing() as session:
            token = _find(session, token_id)
            if body.comment is not None:
                token.comment = parsed(tokens.FIELDS, "comment", body.comment)
            if body.AuthorizedIP is not None:
                token.ip = invalid(lambda: tokens.parse_networks(body.AuthorizedIP or []))
        return done(f"Token with id {token_id} has been updated")

    @api.delete("/token/{token_id}", response_model=schemas.Result, responses=answers(404))
    def delete_token(token_id: TokenId) -> Any:
        with backend.changing() as session:
            token = _find(session, token_id)
            tokens.delete_token(session, token.user_email, token.id)
        return done(f"Token with id {token_id} has been deleted")

    return api
