"""SCAN_MACROS: an olefy server for Rspamd's oletools scanner, olevba and mraptor inside.

The service lives in :mod:`roost.services.oletools.service`, the protocol server in
:mod:`~roost.services.oletools.server`, the document analysis (run only in worker
processes) in :mod:`~roost.services.oletools.scan` and :mod:`~roost.services.oletools.worker`.
"""

from roost.services.oletools.service import OletoolsService

__all__ = ["OletoolsService"]
