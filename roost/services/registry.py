"""Every daemon Roost knows, in the order it lists them.

A new daemon (Rspamd, clamd, the web application, Roundcube, Radicale) joins the stack by
a service module with its :class:`~roost.services.base.Service` subclass and one line
here. Whether a stack runs it is the class's own ``enabled(settings)``; the start order
comes from each service's ``after`` (roost.runner.stack), so the order of this tuple only
breaks ties between daemons that do not wait for each other.
"""

from __future__ import annotations

from roost.services.acme import AcmeService
from roost.services.base import Service
from roost.services.clamav import ClamdService, FreshclamService
from roost.services.dmarcreport import DmarcReportService
from roost.services.dovecot import DovecotService
from roost.services.fetchmail import FetchmailService
from roost.services.gate import GateService
from roost.services.mtasts import MtaStsService
from roost.services.nginx import NginxService
from roost.services.oletools import OletoolsService
from roost.services.postfix import PostfixService
from roost.services.radicale import RadicaleService
from roost.services.redis import RedisService, RspamdRedisService
from roost.services.roundcube import RoundcubeService
from roost.services.rspamd import RspamdService
from roost.services.unbound import UnboundService
from roost.services.web import WebService

__all__ = ["SERVICES"]

SERVICES: tuple[type[Service], ...] = (
    RedisService,
    GateService,
    RspamdRedisService,
    FreshclamService,
    ClamdService,
    OletoolsService,
    RspamdService,
    DovecotService,
    UnboundService,
    MtaStsService,
    PostfixService,
    WebService,
    RadicaleService,
    RoundcubeService,
    NginxService,
    DmarcReportService,
    AcmeService,
    FetchmailService,
)
