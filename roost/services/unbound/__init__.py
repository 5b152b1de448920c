"""Unbound: the DNSSEC-validating resolver of outgoing mail (DNS_RESOLVER=unbound).

The service lives in :mod:`roost.services.unbound.service`, its template in `templates/`.
"""

from roost.services.unbound.service import UnboundService

__all__ = ["UnboundService"]
