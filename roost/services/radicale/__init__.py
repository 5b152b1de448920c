"""WEBDAV=radicale: Radicale serves every user's calendars and contacts behind nginx.

The service lives in :mod:`roost.services.radicale.service`, the Unix-socket server in
:mod:`~roost.services.radicale.server`, Radicale's configuration in `templates/`.
"""

from roost.services.radicale.service import RadicaleService, webdav_enabled

__all__ = ["RadicaleService", "webdav_enabled"]
