"""The administration pages under WEB_ADMIN: domains (with their DNS records,
alternatives and managers), users, aliases and relays, for global administrators and
domain managers, as Mailu's admin UI has them. Rights: :mod:`roost.web.admin.rights`.
"""

from __future__ import annotations

from fastapi import APIRouter

from roost.settings import Settings
from roost.web.admin import (
    access,
    admins,
    aliases,
    announcement,
    anonaliases,
    antispam,
    client_setup,
    domains,
    users,
)
from roost.web.csrf import html_router

__all__ = ["build_router"]


def build_router(settings: Settings) -> APIRouter:
    """Every administration page at ``settings.WEB_ADMIN``; each POST is CSRF-checked."""
    prefix = settings.WEB_ADMIN
    router = html_router(prefix=prefix)
    domains.add_routes(router, prefix)
    users.add_routes(router, prefix)
    aliases.add_routes(router, prefix)
    admins.add_routes(router, prefix)
    announcement.add_routes(router, prefix)
    client_setup.add_routes(router, prefix)
    access.add_routes(router, prefix)
    anonaliases.add_routes(router, prefix)
    antispam.add_routes(router, prefix)
    return router
