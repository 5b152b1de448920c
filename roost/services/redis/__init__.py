"""Redis: rate-limit state for the gate (and, later, web sessions and Rspamd).

The service lives in :mod:`roost.services.redis.service`, its templates in `templates/`.
"""

from roost.services.redis.service import RedisService

__all__ = ["RedisService"]
