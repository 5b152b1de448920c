"""WEBMAIL=roundcube: Debian's Roundcube on php-fpm, served by nginx under WEB_WEBMAIL.

The service lives in :mod:`roost.services.roundcube.service`, php-fpm's and Roundcube's
configuration in `templates/`.
"""

from roost.services.roundcube.service import RoundcubeService, webmail_enabled

__all__ = ["RoundcubeService", "webmail_enabled"]
