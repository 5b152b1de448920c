"""Who is signed in, and what they may see: the dependencies every page uses.

``current_user`` reads the account from the store at each request (not from the session),
so an account disabled or demoted a moment ago loses its rights at its next click. Pages
that need a role add ``Depends(require_role("admin"))`` (global admin) or
``require_role("manager")`` (manager of at least one domain, or global admin); the rank
rule for acting on a given user or domain belongs to the page that acts.

Not signed in: a redirect to ``/sso/login?url=<this page>`` (Mailu's). Signed in with
``change_pw_next_login``: a redirect to ``/sso/pw_change`` before any other page. A session
whose account has had its password changed since the sign-in (from the CLI, the API, an
import or any page: the stored hash no longer matches the session's fingerprint of it,
:func:`roost.web.sessions.password_fingerprint`) is ended, and the browser must sign in.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy.orm import Session as DbSession

from roost.settings import Settings
from roost.store import work
from roost.store.models import User
from roost.web.sessions import get_session, password_fingerprint

__all__ = [
    "Account",
    "LoginRequired",
    "PasswordChangeRequired",
    "current_user",
    "load_account",
    "require_role",
    "settings_of",
    "signed_in_user",
]

ROLES = ("user", "manager", "admin")


class LoginRequired(Exception):
    """Handled by the app: redirect to the sign-in page, back here afterwards."""

    def __init__(self, back_to: str) -> None:
        super().__init__(back_to)
        self.back_to = back_to


class PasswordChangeRequired(Exception):
    """Handled by the app: redirect to the forced password change."""


class Forbidden(Exception):
    """Handled by the app: 403 with a page that says so."""


@dataclass(frozen=True, slots=True)
class Account:
    """The signed-in account as the pages need it."""

    email: str
    displayed_name: str
    global_admin: bool
    change_pw_next_login: bool
    quota_bytes: int
    quota_bytes_used: int
    managed_domains: tuple[str, ...]

    @property
    def role(self) -> str:
        if self.global_admin:
            return "admin"
        return "manager" if self.managed_domains else "user"

    def has_role(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def settings_of(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


def account_from(user: User) -> Account:
    return Account(
        email=user.email,
        displayed_name=user.displayed_name or "",
        global_admin=bool(user.global_admin),
        change_pw_next_login=bool(user.change_pw_next_login),
        quota_bytes=int(user.quota_bytes or 0),
        quota_bytes_used=int(user.quota_bytes_used or 0),
        managed_domains=tuple(sorted(d.name for d in user.manager_of)),
    )


def _find(session: DbSession, email: str) -> Account | None:
    user = session.get(User, email)
    if user is None or not user.enabled:
        return None
    return account_from(user)


def load_account(settings: Settings, email: str) -> Account | None:
    """The enabled account ``email``, or None."""
    with work.read(settings) as session:
        return _find(session, email)


def _signed_in(settings: Settings, email: str) -> tuple[Account, str] | None:
    """The enabled account ``email`` and its password fingerprint, in one read."""
    with work.read(settings) as session:
        user = session.get(User, email)
        if user is None or not user.enabled:
            return None
        return account_from(user), password_fingerprint(settings, user.password)


def _back_to(request: Request) -> str:
    path = request.url.path
    return path + ("?" + request.url.query if request.url.query else "")


async def signed_in_user(request: Request) -> Account:
    """The signed-in account, even one that must change its password first."""
    session = get_session(request)
    email = session.user
    if email is None:
        raise LoginRequired(_back_to(request))
    found = _signed_in(settings_of(request), email)
    if found is None or not hmac.compare_digest(found[1], session.password_mark or ""):
        # Deleted, disabled or given a new password since the sign-in: the session is
        # worth nothing now.
        session.end()
        raise LoginRequired(_back_to(request))
    return found[0]


async def current_user(account: Account = Depends(signed_in_user)) -> Account:  # noqa: B008
    """The signed-in account, once it has no password change pending."""
    if account.change_pw_next_login:
        raise PasswordChangeRequired()
    return account


def require_role(role: str) -> Callable[..., Awaitable[Account]]:
    """A dependency that admits ``role`` (``user``, ``manager``, ``admin``) and above."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {ROLES}")

    async def dependency(account: Account = Depends(current_user)) -> Account:  # noqa: B008
        if not account.has_role(role):
            raise Forbidden()
        return account

    return dependency


def login_url(settings: Settings, back_to: str | None = None) -> str:
    return "/sso/login" + (f"?url={quote(back_to, safe='/')}" if back_to else "")
