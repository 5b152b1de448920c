"""nginx: the SMTP front on port 25 and the HTTP(S) front on 80/443.

Port 25 is nginx's mail proxy rather than Postfix itself so that every SMTP session,
like every login on every other protocol, is decided by the gate through nginx's
``auth_http`` protocol (fail2ban lines and rate limits in one place, as in Mailu), and
Postfix sees the real client through XCLIENT. The HTTP side answers ``/health``, proxies
the web application's paths to its Unix socket (roost.services.web) with the security
headers Mailu's front adds, applies WEBROOT_REDIRECT, serves the MTA-STS policy on HTTPS
to the ``mta-sts.*`` names of HOSTNAMES (``mta-sts.conf.j2``), CalDAV and CardDAV under
``/webdav/`` after the gate's login decision (``webdav.conf.j2``, WEBDAV=radicale), and
under TLS_FLAVOR cert and letsencrypt sends everything but ``/.well-known/`` on port 80 to
HTTPS (the `mail` flavors serve port 80 as 443). Under the letsencrypt flavors port 80
serves certbot's HTTP-01 tokens (roost.tls.acme).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost import tls
from roost.core import mtasts
from roost.layout import PROXIED_SUBMISSION_PORTS
from roost.services.base import (
    Readiness,
    Service,
    ServiceConfigError,
    template_environment,
    write_file,
)
from roost.services.radicale import service as radicale
from roost.services.roundcube import service as roundcube
from roost.services.web.service import web_enabled
from roost.settings import Settings

__all__ = ["MAIL_MODULE", "STREAM_MODULE", "NginxService"]

_TEMPLATES = template_environment(__file__)

NGINX = "nginx"
# Debian's libnginx-mod-mail installs the mail proxy here (it is not built in).
MAIL_MODULE = Path("/usr/lib/nginx/modules/ngx_mail_module.so")
# ... and the TCP proxy in front of submission under PROXY_PROTOCOL (libnginx-mod-stream).
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
# Slack above MESSAGE_SIZE_LIMIT for uploads through the web (MIME encoding grows a
# message by a third; Mailu allows 8 MiB).
BODY_SLACK = 8 * 1024 * 1024
# Rspamd's web interface and its auth_request endpoint, under WEB_ADMIN
# (roost/web/admin/antispam.py answers the second).
ANTISPAM_UI = "/antispam/"
ANTISPAM_AUTH = "/antispam-auth"
# The webmail's auth_request endpoints (roost/web/sso/webmail.py answers them).
WEBMAIL_GUARD = "/sso/webmail/auth"
WEBMAIL_TOKEN = "/sso/webmail/token"
#: The interface's own scripts, styles, images and fonts, and its calls to the controller,
#: from this site only (CSP 3); its HTML uses style attributes, hence 'unsafe-inline' for
#: styles (never for scripts). {scripts} adds the hashes of the page's inline scripts.
ANTISPAM_CSP = (
    "default-src 'self'; script-src 'self'{scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)
#: The interface's page as Debian's rspamd package installs it (the controller's WWWDIR).
RSPAMD_PAGE = Path("/usr/share/rspamd/www/index.html")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
# The time, level and pid nginx puts before each message: "2024/01/31 12:00:00 [emerg] 7#7: ".
# The message itself names the file and line; the rest is noise in a one-line error.
_LOG_PREFIX = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[\w+\] \d+#\d+: ")


def antispam_csp(page: Path = RSPAMD_PAGE) -> str:
    """:data:`ANTISPAM_CSP` allowing, besides this site's files, exactly the inline scripts
    of the installed interface page, by their SHA-256 (CSP 3 hash sources): the one line
    that shows its loading indicator in Rspamd 3.4. Nothing else inline runs."""
    try:
        text = page.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    digests = (hashlib.sha256(body.encode()).digest() for body in _INLINE_SCRIPT.findall(text))
    hashes = "".join(f" 'sha256-{base64.b64encode(d).decode()}'" for d in digests)
    return ANTISPAM_CSP.format(scripts=hashes)


def _listen(address: str, port: int, extra: str = "") -> str:
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    return f"{host}:{port}{extra}"


def _proxied(settings: Settings, port: int, extra: str = "") -> str:
    """A listen directive's parameters: ``proxy_protocol`` for a port of PROXY_PROTOCOL."""
    return extra + (" proxy_protocol" if settings.proxy_protocol(port) else "")


@dataclass
class NginxService(Service):
    """Renders nginx.conf and checks it with ``nginx -t``."""

    name: str = field(init=False, default="nginx")
    # The gate answers auth_http; Postfix takes the proxied sessions; the web app answers
    # HTTP (ignored when it is not enabled).
    after: Sequence[str] = field(
        init=False, default=("gate", "postfix", "web", "radicale", "roundcube")
    )

    @property
    def conf(self) -> Path:
        return self.etc / "nginx.conf"

    @property
    def run_directory(self) -> Path:
        """pid file and temporary files."""
        return self.layout.run / "nginx"

    @property
    def no_web_root(self) -> Path:
        """The main server's document root, which is never created (see the template)."""
        return self.run_directory / "no-web-root"

    def _http_servers(self) -> list[dict[str, Any]]:
        settings = self.layout.settings
        addresses = self.layout.listen_addresses()
        servers = []
        if settings.port_enabled(80):
            # Port 80 only redirects to HTTPS, except under notls and the `mail` flavors
            # (a TLS-terminating proxy in front speaks plain HTTP to it).
            plain = "" if settings.http_redirect else f" (TLS_FLAVOR={settings.TLS_FLAVOR})"
            servers.append(
                {
                    "comment": "HTTP" + plain,
                    "listen": [_listen(a, 80, _proxied(settings, 80)) for a in addresses],
                    "tls": False,
                    "main": not settings.http_redirect,
                    "acme": settings.acme,
                    "real_ip_header": self._real_ip_header(80),
                }
            )
        if settings.tls and settings.port_enabled(443):
            servers.append(
                {
                    "comment": "HTTPS, the main server",
                    "listen": [
                        _listen(a, 443, _proxied(settings, 443, " ssl http2")) for a in addresses
                    ],
                    "tls": True,
                    "main": True,
                    "acme": False,
                    "real_ip_header": self._real_ip_header(443),
                }
            )
        return servers

    def _real_ip_header(self, port: int) -> str:
        """Where nginx's realip module reads the client's address on an HTTP port (only
        from REAL_IP_FROM): the PROXY header, REAL_IP_HEADER, or nginx's default."""
        settings = self.layout.settings
        if settings.proxy_protocol(port):
            return "proxy_protocol"
        return settings.REAL_IP_HEADER or "X-Real-IP"

    def _stream_servers(self) -> list[dict[str, Any]]:
        """nginx's TCP proxy on the submission ports of PROXY_PROTOCOL: it takes the PROXY
        header only from REAL_IP_FROM (stream realip) and passes each connection, TLS
        untouched, to Postfix's internal listener with a header of its own."""
        settings = self.layout.settings
        return [
            {
                "port": port,
                "listen": [
                    _listen(a, port, " proxy_protocol") for a in self.layout.listen_addresses()
                ],
                "backend": _listen(self.layout.internal_address, internal),
            }
            for port, internal in PROXIED_SUBMISSION_PORTS.items()
            if settings.proxy_protocol(port)
        ]

    def context(self) -> dict[str, Any]:
        settings = self.layout.settings
        limit = settings.MESSAGE_SIZE_LIMIT
        pair = tls.served_pair(self.layout)
        return {
            "conf": self.conf,
            "run": self.run_directory,
            "overrides": self.overrides,
            "no_web_root": self.no_web_root,
            "mail_module": MAIL_MODULE,
            "stream_module": STREAM_MODULE,
            "stream_servers": self._stream_servers(),
            "real_ip_from": settings.REAL_IP_FROM,
            "hostname": settings.hostname,
            "server_names": " ".join(settings.HOSTNAMES),
            "auth_http": self.layout.gate_auth_http,
            "tls": settings.tls,
            "tls_permissive": settings.TLS_PERMISSIVE,
            "strict_ciphers": tls.policy.CIPHERS,
            # The pair tls checked before any daemon starts; None under notls.
            "cert_file": pair.cert_file if pair else None,
            "key_file": pair.key_file if pair else None,
            # Port 25's chain: with its root under the letsencrypt flavors (DANE-TA).
            "mx_cert_file": pair.mx_cert_file if pair else None,
            "message_size_limit": limit,
            # 0 keeps nginx's meaning "no limit", as MESSAGE_SIZE_LIMIT=0 does for Postfix.
            "client_max_body_size": limit + BODY_SLACK if limit else 0,
            "http_servers": self._http_servers(),
            "http_redirect": settings.http_redirect,
            "acme_webroot": self.layout.acme_webroot,
            "mail_proxy_protocol": settings.proxy_protocol(25),
            "mail_listen": [
                _listen(a, 25, _proxied(settings, 25)) for a in self.layout.listen_addresses()
            ],
            "mta_sts": self._mta_sts_context(),
            "webdav": self._webdav_context(),
            "webmail": self._webmail_context(),
            **self._web_context(),
        }

    def _mta_sts_context(self) -> dict[str, Any] | None:
        """The MTA-STS policy and the hosts it is served for (RFC 8461 §3.3), or None."""
        settings = self.layout.settings
        hosts = mtasts.policy_hosts(settings)
        if not hosts:
            return None
        text = mtasts.policy_text(settings)
        return {
            "path": mtasts.POLICY_PATH,
            "hosts": "|".join(re.escape(host) for host in hosts),
            # An nginx string: its own escapes for CR and LF (the text has no quotes).
            "policy": text.replace("\r", "\\r").replace("\n", "\\n"),
        }

    def _webdav_context(self) -> dict[str, Any] | None:
        """WEBDAV=radicale: Radicale's path, its socket and the gate's Basic endpoint."""
        if not radicale.webdav_enabled(self.layout.settings):
            return None
        return {
            "path": radicale.SCRIPT_NAME,
            "socket": self.layout.radicale_socket,
            "auth": f"unix:{self.layout.gate_http_socket}:/auth/basic",
        }

    def _webmail_context(self) -> dict[str, Any] | None:
        """WEBMAIL=roundcube: where Roundcube is served, its files and php-fpm's socket."""
        path = self.layout.settings.webmail_path
        if not path:
            return None
        return {
            "path": path,
            "path_pattern": re.escape(path),
            "root": roundcube.PUBLIC_HTML,
            "socket": self.layout.roundcube_socket,
            "guard": WEBMAIL_GUARD,
            "token": WEBMAIL_TOKEN,
            "tls": self.layout.settings.tls,
        }

    def _web_context(self) -> dict[str, Any]:
        """Which paths go to the web application (none when it is not enabled)."""
        settings = self.layout.settings
        web = web_enabled(settings)
        exact: list[str] = []
        prefixes: list[str] = []
        if web:
            if settings.WEB_ADMIN:
                exact.append(settings.WEB_ADMIN)
                prefixes.append(settings.WEB_ADMIN + "/")
            if settings.WEB_ADMIN or settings.webmail_path:
                # The sign-in pages, for the admin pages and the webmail's single sign-on.
                prefixes += ["/sso/", "/static/"]
            if getattr(settings, "API", False):
                exact.append(settings.WEB_API)
                prefixes.append(settings.WEB_API + "/")
            exact += ["/mail/config-v1.1.xml", "/apple", "/apple.mobileconfig", "/mobileconfig"]
            prefixes.append("/.well-known/autoconfig/")
        redirect = settings.WEBROOT_REDIRECT
        antispam = None
        if web and settings.WEB_ADMIN:
            antispam = {
                "ui": settings.WEB_ADMIN + ANTISPAM_UI,
                "auth": settings.WEB_ADMIN + ANTISPAM_AUTH,
                "socket": self.layout.rspamd_web_socket,
                "csp": antispam_csp(),
            }
        return {
            "antispam": antispam,
            "web": web,
            "web_socket": self.layout.web_socket,
            "web_exact": exact,
            "web_prefixes": prefixes,
            "webroot_redirect": "" if redirect in ("", "none") else redirect,
        }

    def render(self) -> None:
        """Write nginx.conf and have nginx check it (syntax, certificate, includes)."""
        self.run_directory.mkdir(parents=True, exist_ok=True)
        self.run_directory.chmod(0o755)  # workers (www-data) use the temp dirs inside
        context = self.context()
        if context["stream_servers"] and not Path(context["stream_module"]).is_file():
            raise ServiceConfigError(
                f"PROXY_PROTOCOL with 465 or 587 needs nginx's stream module "
                f"({context['stream_module']}): install the Debian package libnginx-mod-stream"
            )
        text = _TEMPLATES.get_template("nginx.conf.j2").render(context)
        write_file(self.conf, text)
        self.check()

    def check(self) -> None:
        """``nginx -t``: its message names the file and line of any problem."""
        try:
            result = subprocess.run(
                [NGINX, "-t", "-q", "-c", str(self.conf)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except FileNotFoundError:
            raise ServiceConfigError(
                "nginx: not found; install the Debian packages nginx and libnginx-mod-mail"
            ) from None
        if result.returncode != 0:
            lines = [
                _LOG_PREFIX.sub("", line.removeprefix("nginx: "))
                for line in (result.stderr + result.stdout).splitlines()
                if line.strip() and "test failed" not in line
            ]
            raise ServiceConfigError(f"nginx -t -c {self.conf}: " + "; ".join(lines))

    def command(self) -> list[str]:
        # "daemon off" keeps the master in the foreground under the runner; the error log
        # (with info level, for the AUTH-on-port-25 line) goes to its stderr.
        return [NGINX, "-c", str(self.conf), "-g", "daemon off; error_log stderr info;"]

    def reload_command(self) -> list[str]:
        """``nginx -s reload``: the master re-reads its configuration and certificate and
        replaces its workers gracefully (https://nginx.org/en/docs/control.html)."""
        return [NGINX, "-c", str(self.conf), "-s", "reload"]

    def reload_on(self) -> frozenset[str]:
        return frozenset({tls.CERTIFICATE_CHANGED}) if self.layout.settings.tls else frozenset()

    def readiness(self) -> Readiness:
        """Port 25 accepts; a wildcard bind is reached through the internal address."""
        address = self.layout.settings.BIND_ADDRESS4
        if ipaddress.ip_address(address).is_unspecified:
            address = self.layout.internal_address
        return Readiness(tcp=((address, 25),))
