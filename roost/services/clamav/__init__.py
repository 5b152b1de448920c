"""ClamAV: clamd scans what Rspamd hands it; freshclam keeps the signatures current.

The services live in :mod:`roost.services.clamav.service`, their templates in `templates/`.
"""

from roost.services.clamav.service import ClamdService, FreshclamService

__all__ = ["ClamdService", "FreshclamService"]
