"""Jinja2 pages: one environment, and what every page gets without asking.

Every template receives ``site`` (SITENAME), ``paths`` (the admin, SSO and static
prefixes), ``account`` (the signed-in :class:`~roost.web.auth.Account` or None) and
``csrf_field()``, which writes the hidden input every form must carry (:mod:`csrf`).
Autoescaping is on for every template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse

from roost.web.csrf import FIELD, token_for
from roost.web.sessions import get_session

__all__ = ["TEMPLATES", "format_bytes", "render"]

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def format_bytes(value: int | float | None) -> str:
    """1536 -> '1.5 KB' (decimal units, as mail quotas are given in Mailu's forms)."""
    amount = float(value or 0)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if amount < 1000 or unit == "TB":
            return f"{amount:.0f} {unit}" if unit == "bytes" else f"{amount:.1f} {unit}"
        amount /= 1000
    return f"{amount:.1f} TB"


TEMPLATES.env.filters["bytes"] = format_bytes


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render ``name`` with the common context; pages are never cached by the browser."""
    settings = request.app.state.settings
    session = get_session(request)

    def csrf_field() -> Markup:
        token = token_for(session)
        return Markup('<input type="hidden" name="{}" value="{}">').format(FIELD, escape(token))

    values: dict[str, Any] = {
        "site": settings.SITENAME,
        "paths": request.app.state.paths,
        "account": None,
        "csrf_field": csrf_field,
    }
    values.update(context or {})
    response = TEMPLATES.TemplateResponse(request, name, values, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response
