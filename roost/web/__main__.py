"""``python -m roost.web``: serve the web application on the stack's Unix socket.

Started by the runner (:mod:`roost.services.web`) with every setting in its environment.
The process keeps root's uid, because the store and the gate's sockets are root's, but
only ``CAP_DAC_OVERRIDE`` of root's capabilities (to open Redis's socket, ``0700 redis``),
with ``no_new_privs`` set (capabilities(7)): it cannot bind ports, change users, signal
or trace other processes. docs/web.md says what would let it run as its own user.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from roost.gate.privileges import CAP_DAC_OVERRIDE, drop_capabilities
from roost.layout import Layout
from roost.process import settings_or_exit
from roost.web.app import create_app

log = logging.getLogger("roost.web")


def main() -> int:
    settings = settings_or_exit("web")
    layout = Layout(settings)
    socket = layout.web_socket
    if drop_capabilities((CAP_DAC_OVERRIDE,)):
        log.info("capabilities dropped to dac_override")
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
