"""The MTA-STS resolver (postfix-mta-sts-resolver) that Postfix asks for each destination.

The service lives in :mod:`roost.services.mtasts.service`.
"""

from roost.services.mtasts.service import MtaStsService

__all__ = ["MtaStsService"]
