"""``python -m roost.services.radicale.server``: Radicale's application on a Unix socket.

Radicale's own server listens on TCP only, where any local process could connect and name
any user in ``X-Remote-User``. Here uvicorn serves Radicale's WSGI application (through
a2wsgi's adapter) on a Unix socket in a directory only nginx's workers may enter
(:mod:`roost.services.radicale.service`), and :func:`signed_in_only` refuses a request
that names no user, so Radicale's ``http_x_remote_user`` backend can never fall back to
taking a user name from an ``Authorization`` header (it would accept any).

Started by the runner as the ``_radicale`` user with nothing but its config file and
socket path: it reads no settings and opens nothing of Roost's but ``ROOT/dav``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import uvicorn
from a2wsgi import WSGIMiddleware
from radicale import config, log
from radicale.app import Application

__all__ = ["main", "signed_in_only"]

#: The header nginx sets from the gate's answer, as WSGI names it.
REMOTE_USER = "HTTP_X_REMOTE_USER"
#: Headers Radicale would read that only nginx may decide: the credentials (the gate has
#: checked them; Radicale must not see the password) and the path prefix (config's).
_DROPPED = ("HTTP_AUTHORIZATION", "HTTP_X_SCRIPT_NAME")

WSGIApp = Any


def signed_in_only(app: WSGIApp) -> WSGIApp:
    """Radicale behind a check that nginx named exactly one user."""

    def guarded(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        for name in _DROPPED:
            environ.pop(name, None)
        user = environ.get(REMOTE_USER, "")
        # Two X-Remote-User headers arrive joined by a comma: refuse rather than guess.
        if not user or "," in user:
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"no signed-in user: only nginx, after a login, reaches Radicale\n"]
        return app(environ, start_response)

    return guarded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roost.services.radicale.server")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--socket", type=Path, required=True)
    args = parser.parse_args(argv)
    # Calendars and contacts are the user's alone: files 0600, folders 0700.
    os.umask(0o077)
    log.setup()
    # Only Roost's file: never /etc/radicale/config or ~/.config/radicale.
    configuration = config.load([(str(args.config), False)])
    log.set_level(
        configuration.get("logging", "level"),
        configuration.get("logging", "backtrace_on_debug"),
        configuration.get("logging", "trace_filter"),
    )
    application = signed_in_only(Application(configuration))
    args.socket.unlink(missing_ok=True)
    uvicorn.run(
        WSGIMiddleware(application),
        uds=str(args.socket),
        # nginx is the only client; Radicale logs the address nginx forwards.
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=5,
        # asyncio's own loop: uvicorn would take uvloop (installed for the gate) by itself.
        loop="asyncio",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
