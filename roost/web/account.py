"""The "my account" page under WEB_ADMIN: address, quota and usage, password change.

Changing the password goes through the user entity's rule book and the unit of work
(:mod:`roost.store.work`), like ``roost passwd``; it needs the current password (checked
by the gate, with its rate limits), and then every session of the account ends, this one
included: the browser is sent to sign in with the new password.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response

from roost.web.auth import Account, current_user
from roost.web.csrf import html_router
from roost.web.sessions import get_session
from roost.web.sso.routes import PasswordForm, change_own_password, password_form
from roost.web.templating import render

__all__ = ["build_router"]


def _usage(account: Account) -> dict[str, object]:
    if account.quota_bytes <= 0:
        return {"limit": None, "percent": None}
    percent = min(100, round(100 * account.quota_bytes_used / account.quota_bytes))
    return {"limit": account.quota_bytes, "percent": percent}


def build_router(prefix: str) -> object:
    """The account pages at ``prefix`` (WEB_ADMIN): ``/`` and ``/account``."""
    router = html_router(prefix=prefix)

    @router.get("")
    @router.get("/")
    async def index(account: Account = Depends(current_user)) -> Response:  # noqa: B008
        """Managers and admins start at their domains, users at their account."""
        landing = "/domain" if account.has_role("manager") else "/account"
        return RedirectResponse(prefix + landing, status_code=303)

    @router.get("/account")
    async def account_page(
        request: Request,
        account: Account = Depends(current_user),  # noqa: B008
    ) -> Response:
        return render(request, "account.html", {"account": account, "usage": _usage(account)})

    @router.post("/account/password")
    async def change_password(
        request: Request,
        account: Account = Depends(current_user),  # noqa: B008
        form: PasswordForm = Depends(password_form),  # noqa: B008
    ) -> Response:
        failed = await change_own_password(request, account, form, "Password change")
        if failed is None:
            # Every session of the account ends, this one included.
            await request.app.state.sessions.delete_user(account.email)
            get_session(request).end()
            return RedirectResponse("/sso/login?msg=changed", status_code=303)
        error, status = failed
        return render(
            request,
            "account.html",
            {"account": account, "usage": _usage(account), "error": error},
            status_code=status,
        )

    # Two-factor login: /account/2fa (roost.web.account_2fa).
    from roost.web.account_2fa import build_router as two_factor_pages

    router.include_router(two_factor_pages(prefix))
    # Settings, app tokens, fetched accounts: /account/... (roost.web.selfservice).
    from roost.web.selfservice import build_router as self_service_pages

    router.include_router(self_service_pages(prefix))
    # Mailu's /webmail and /ui/ redirects (roost.web.redirects).
    from roost.web.redirects import build_router as redirects

    router.include_router(redirects(prefix))
    return router
