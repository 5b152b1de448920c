"""Postfix: the MTA behind nginx's port 25 and the submission server on 465/587.

The service lives in :mod:`roost.services.postfix.service`, its templates in `templates/`.
"""

from roost.services.postfix.service import PostfixService, system_prerequisites

__all__ = ["PostfixService", "system_prerequisites"]
