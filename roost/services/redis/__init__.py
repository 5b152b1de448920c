"""Redis: the gate's rate limits and the web's sessions; a second instance is Rspamd's.

The service lives in :mod:`roost.services.redis.service`, its templates in `templates/`.
"""

from roost.services.redis.service import RedisService, RspamdRedisService

__all__ = ["RedisService", "RspamdRedisService"]
