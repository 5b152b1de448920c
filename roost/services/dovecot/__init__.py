"""Dovecot: IMAP, POP3, ManageSieve, LMTP delivery and SASL for Postfix.

The service lives in :mod:`roost.services.dovecot.service`, its templates in `templates/`.
"""

from roost.services.dovecot.service import DovecotService

__all__ = ["DovecotService"]
