"""``python -m roost.web``: serve the web application on the stack's Unix socket.

Started by the runner (:mod:`roost.services.web`) with every setting in its environment,
as the system user ``_roost-web`` with no capabilities and ``no_new_privs`` (setpriv(1)):
what it opens (the store, the DKIM keys, Redis's and the gate's sockets, its own socket's
directory) is given to its groups, so it needs nothing of root's. Started by hand as root,
it drops every capability itself before serving (capabilities(7)).
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from roost.gate.privileges import drop_capabilities
from roost.layout import Layout
from roost.process import settings_or_exit
from roost.web.app import create_app

log = logging.getLogger("roost.web")


def main() -> int:
    settings = settings_or_exit("web")
    layout = Layout(settings)
    socket = layout.web_socket
    if drop_capabilities(()):
        log.warning("started as root: every capability dropped, uid 0 kept")
    socket.unlink(missing_ok=True)
    uvicorn.run(
        create_app(settings),
        uds=str(socket),
        # nginx is the only client; the app itself decides which headers to believe.
        proxy_headers=False,
        server_header=False,
        # nginx logs every request; uvicorn's access log would repeat it.
        access_log=False,
        log_config=None,
        log_level=settings.LOG_LEVEL.lower(),
        timeout_graceful_shutdown=5,
        # asyncio's own loop: uvicorn would take uvloop (installed for the gate) by itself.
        loop="asyncio",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
