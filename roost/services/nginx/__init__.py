"""nginx: the SMTP front on port 25 and the HTTP(S) front on 80/443.

The service lives in :mod:`roost.services.nginx.service`, its templates in `templates/`.
"""

from roost.services.nginx.service import NginxService

__all__ = ["NginxService"]
