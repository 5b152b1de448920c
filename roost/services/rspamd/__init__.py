"""Rspamd: scans every message Postfix accepts, through its milter interface.

The service lives in :mod:`roost.services.rspamd.service`, its templates in `templates/`.
"""

from roost.services.rspamd.service import RspamdService

__all__ = ["RspamdService"]
