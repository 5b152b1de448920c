"""The API's bodies, with Mailu's field names (core/admin/mailu/api/v1/*.py models).

Inputs are strict, as Mailu's JSON-schema validation is: ``"1"`` is no number and
``"true"`` no boolean. Numbers are bounded by the columns that store them, so a too large
value is a 400 rather than a database error. Fields a client may leave out default to
None, which means "keep" on update and the rule book's default on create.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AliasCreate",
    "AliasGet",
    "AliasUpdate",
    "AlternativeGet",
    "DomainCreate",
    "DomainGet",
    "DomainUpdate",
    "Invalid",
    "ManagerCreate",
    "Managers",
    "Message",
    "RelayCreate",
    "RelayGet",
    "RelayUpdate",
    "Result",
    "TokenCreate",
    "TokenCreated",
    "TokenGet",
    "TokenUpdate",
    "UserCreate",
    "UserGet",
    "UserUpdate",
    "ValidationFailed",
]

INT32 = 2**31 - 1
INT64 = 2**63 - 1

Count = Annotated[int, Field(ge=-1, le=INT32)]
Bytes = Annotated[int, Field(ge=0, le=INT64)]
Comment = Annotated[str, Field(max_length=255)]
Name = Annotated[str, Field(min_length=1, max_length=255)]
Address = Annotated[str, Field(min_length=1, max_length=255)]
Day = Annotated[str, Field(max_length=10, examples=["2025-07-31"])]


class _In(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


# -- answers -------------------------------------------------------------------------------


class Result(_Out):
    """Mailu's handler answer, for success and for refusals alike."""

    code: int
    message: str


class Invalid(_Out):
    """A refused input: the rule book's message (``code`` 400), or for a body that does not
    match the declared model, which field and why (``errors``)."""

    code: int | None = None
    message: str
    errors: dict[str, str] | None = None


class Message(_Out):
    """Mailu's answer to a refused token."""

    message: str


class ValidationFailed(_Out):
    """A body that does not match the declared model: which field, and why."""

    errors: dict[str, str]
    message: str = "Input payload validation failed"


# -- domains -------------------------------------------------------------------------------


class DomainGet(_Out):
    name: str
    comment: str | None = None
    managers: list[str] = []
    max_users: int
    max_aliases: int
    max_quota_bytes: int
    signup_enabled: bool
    alternatives: list[str] = []
    dns_autoconfig: list[str] | None = None
    dns_mx: str | None = None
    dns_spf: str | None = None
    dns_dkim: str | None = None
    dns_dmarc: str | None = None
    dns_dmarc_report: str | None = None
    dns_tlsa: list[str] | None = None


class DomainUpdate(_In):
    comment: Comment | None = None
    max_users: Count | None = None
    max_aliases: Count | None = None
    max_quota_bytes: Bytes | None = None
    signup_enabled: bool | None = None
    alternatives: Annotated[list[Name], Field(max_length=1000)] | None = None


class DomainCreate(DomainUpdate):
    name: Name


class ManagerCreate(_In):
    user_email: Address


class Managers(_Out):
    managers: list[str]


class AlternativeGet(_In):
    name: Name
    domain: Name


# -- users ---------------------------------------------------------------------------------


class UserGet(_Out):
    email: str
    comment: str | None = None
    quota_bytes: int
    quota_bytes_used: int
    global_admin: bool
    enabled: bool
    change_pw_next_login: bool
    enable_imap: bool
    enable_pop: bool
    allow_spoofing: bool
    forward_enabled: bool
    forward_destination: list[str] = []
    forward_keep: bool
    reply_enabled: bool
    reply_subject: str | None = None
    reply_body: str | None = None
    reply_startdate: str
    reply_enddate: str
    displayed_name: str | None = None
    spam_enabled: bool
    spam_mark_as_read: bool
    spam_threshold: int


class UserUpdate(_In):
    raw_password: Annotated[str, Field(max_length=1024)] | None = None
    comment: Comment | None = None
    quota_bytes: Bytes | None = None
    global_admin: bool | None = None
    enabled: bool | None = None
    change_pw_next_login: bool | None = None
    enable_imap: bool | None = None
    enable_pop: bool | None = None
    allow_spoofing: bool | None = None
    forward_enabled: bool | None = None
    forward_destination: Annotated[list[Address], Field(max_length=100)] | None = None
    forward_keep: bool | None = None
    reply_enabled: bool | None = None
    reply_subject: Annotated[str, Field(max_length=255)] | None = None
    reply_body: Annotated[str, Field(max_length=100_000)] | None = None
    reply_startdate: Day | None = None
    reply_enddate: Day | None = None
    displayed_name: Annotated[str, Field(max_length=160)] | None = None
    spam_enabled: bool | None = None
    spam_mark_as_read: bool | None = None
    spam_threshold: Annotated[int, Field(ge=0, le=100)] | None = None


class UserCreate(UserUpdate):
    email: Address
    raw_password: Annotated[str, Field(min_length=1, max_length=1024)]


# -- aliases -------------------------------------------------------------------------------


class AliasGet(_Out):
    email: str
    destination: list[str] = []
    comment: str | None = None
    wildcard: bool
    hostname: str | None = None
    owner_email: str | None = None
    disabled: bool
    created_at: str | None = None


class AliasUpdate(_In):
    comment: Comment | None = None
    destination: Annotated[list[Address], Field(max_length=100)] | None = None
    wildcard: bool | None = None


class AliasCreate(AliasUpdate):
    email: Address


# -- relays --------------------------------------------------------------------------------


class RelayGet(_Out):
    name: str
    smtp: str | None = None
    comment: str | None = None


class RelayUpdate(_In):
    smtp: Annotated[str, Field(max_length=80)] | None = None
    comment: Comment | None = None


class RelayCreate(RelayUpdate):
    name: Name


# -- tokens --------------------------------------------------------------------------------

Networks = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=100)]


class TokenUpdate(_In):
    comment: Comment | None = None
    AuthorizedIP: Networks | None = None


class TokenCreate(TokenUpdate):
    email: Address


class TokenGet(_Out):
    id: int | str
    email: str
    comment: str | None = None
    AuthorizedIP: list[str] = []
    Created: str
    last_edit: str = Field(alias="Last edit")


class TokenCreated(_Out):
    id: int
    token: str
    email: str
    comment: str | None = None
    AuthorizedIP: list[str] = []
    Created: str
