"""Redirects: where a sign-in may send the browser next (only to a page of this site), and
two fixed ones of Mailu's under WEB_ADMIN (:func:`build_router`).

``/sso/login?url=...`` comes from links anyone can craft, so the target is accepted only
when it is a path on this host (``/admin/...``), or a full URL naming one of HOSTNAMES (or
the Host the browser used), in which case only its path is kept. Anything else falls back
to the default page: other hosts, scheme-relative ``//evil.example``, back-slashes that
browsers read as slashes (``/\\evil.example``), user-info tricks (``https://mail@evil``),
other schemes (``javascript:``), control characters and white space.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

__all__ = ["build_router", "safe_target"]

_MAX = 2048


def _clean_path(path: str, query: str) -> str | None:
    if not path.startswith("/") or path.startswith("//"):
        return None
    return urlunsplit(("", "", path, query, ""))


def safe_target(url: str | None, hosts: tuple[str, ...]) -> str | None:
    """A same-site path to redirect to, or None when ``url`` is not one."""
    if not url or len(url) > _MAX:
        return None
    if "\\" in url or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme and not parts.netloc:
        return _clean_path(parts.path, parts.query)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    host = (parts.hostname or "").lower()
    allowed = {h.lower().split(":")[0] for h in hosts if h}
    if host not in allowed or (port is not None and port not in (80, 443)):
        return None
    return _clean_path(parts.path or "/", parts.query)


def build_router(admin: str) -> APIRouter:
    """Mailu's redirects under ``admin`` (WEB_ADMIN), for links and bookmarks made for it.

    ``/webmail`` goes to the webmail (302, as Mailu): Roost's own under WEBMAIL=roundcube,
    else WEB_WEBMAIL, or is not found when that is empty; ``/ui/``, the admin pages' old
    path, moved to WEB_ADMIN for good (301).
    """
    router = APIRouter(include_in_schema=False)  # the account router adds ``admin``

    @router.get("/webmail")
    async def webmail(request: Request) -> Response:
        settings = request.app.state.settings
        target = settings.webmail_path or settings.WEB_WEBMAIL
        if not target:
            raise HTTPException(status_code=404)
        return RedirectResponse(target, status_code=302)

    @router.get("/ui/")
    async def old_ui() -> Response:
        return RedirectResponse(admin, status_code=301)

    return router
