"""Where every file, socket and internal port of one Roost stack lives.

Everything is under ROOT, so that several stacks with different ROOTs and bind addresses run
side by side on one host. Hops between Roost's own processes use Unix sockets where both ends
support them; where a daemon can only reach a TCP address they use ``internal_address``, a
loopback address of this stack alone, never a public one. Two hops need TCP:

* nginx mail -> Postfix (``POSTFIX_FRONT_PORT``): nginx's mail proxy takes its backend from
  the auth_http answer's ``Auth-Server`` and ``Auth-Port`` headers, and ``Auth-Server`` must
  be an IP address (https://nginx.org/en/docs/mail/ngx_mail_auth_http_module.html); there is
  no way to name a Unix socket.
* Dovecot's Lua passdb/userdb -> gate (``GATE_HTTP_PORT``): ``dovecot.http.client`` parses
  its URL with lib-http's ``http_url_parse`` and connects over TCP only (Dovecot 2.3
  src/lib-lua/dlua-dovecot-http.c). The gate refuses any request there without the stack's
  secret header (``gate_http_secret``).
* nginx stream -> Postfix submission (``PROXIED_SUBMISSION_PORTS``), when 465 or 587 is in
  PROXY_PROTOCOL: Postfix's ``smtpd_upstream_proxy_protocol`` believes a PROXY header from
  anyone (postconf(5) has no list of trusted senders), so the public port is nginx's,
  which takes the header only from REAL_IP_FROM, and Postfix hears it only here.

nginx's ``auth_http`` itself accepts ``unix:`` URLs, so it reaches the gate over
``gate_http_socket``, which only root and nginx's workers may open.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from roost.settings import Settings

# Internal TCP ports on ``internal_address``; none of them is reachable from outside.
POSTFIX_FRONT_PORT = 10025  # Postfix smtpd behind nginx's port 25 (XCLIENT from nginx)
POSTFIX_SIEVE_PORT = 10026  # Postfix smtpd for mail Dovecot sends (Sieve redirect, vacation)
GATE_HTTP_PORT = 10080  # the gate's HTTP side for Dovecot's Lua (with the secret header)
#: Postfix submission behind nginx's stream proxy (PROXY protocol from nginx only), by the
#: public port nginx takes for it.
PROXIED_SUBMISSION_PORTS = {465: 10465, 587: 10587}
#: The webmail's own listeners (WEBMAIL=roundcube): Dovecot's IMAP and ManageSieve and
#: Postfix's submission, where the gate takes the webmail's single sign-on tokens and
#: nothing else (roost.core.webmailtoken). Mailu's webmail ports are 10143, 14190 and
#: 10025; 10025 is Roost's nginx -> Postfix hop, hence 10027.
WEBMAIL_IMAP_PORT = 10143
WEBMAIL_SIEVE_PORT = 14190
WEBMAIL_SUBMISSION_PORT = 10027
#: The SASL service name Postfix's webmail listener gives Dovecot (smtpd_sasl_service).
WEBMAIL_SASL_SERVICE = "smtp-webmail"
#: (Auth-Protocol, Auth-Port) of a login on one of them, as the gate is asked.
WEBMAIL_LISTENERS = frozenset(
    {("imap", WEBMAIL_IMAP_PORT), ("sieve", WEBMAIL_SIEVE_PORT), ("smtp", WEBMAIL_SUBMISSION_PORT)}
)
#: Roost's unbound (DNS_RESOLVER=unbound) on ``internal_address``: resolv.conf names no port.
DNS_PORT = 53
#: The system user that owns every mailbox (Dovecot's mail_uid/mail_gid).
MAIL_OWNER = "mail"
#: The user nginx's workers run as (nginx.conf ``user``); its group alone may open
#: ``gate_http_socket``.
NGINX_USER = "www-data"
#: The system user the web application runs as (roost.services.web); its group alone (and
#: root) may use the store's directory, the DKIM keys and the gate's sockets for the web.
WEB_USER = "_roost-web"


class UnsafeHome(ValueError):
    """An address whose home would not be a directory inside the mail directory."""


def home_path(mail_root: Path, email: str) -> Path:
    """``mail_root/<email>``, resolved, and refused unless it lies strictly inside mail_root.

    ``Path("/srv/mail") / "/etc/cron.d/x@example.com"`` is ``/etc/cron.d/x@example.com``: a
    join with an absolute part drops what came before, and ``..`` or a symbolic link can
    climb out as well. The check is on the resolved path, so each of these is caught.
    """
    if not email or "\0" in email:
        raise UnsafeHome(f"no home for the address {email!r}")
    root = Path(os.path.realpath(mail_root))
    home = Path(os.path.realpath(os.path.join(root, email)))
    if home == root or not home.is_relative_to(root):
        raise UnsafeHome(f"the home of {email!r} would be {home}, outside {root}")
    return home


@dataclass(frozen=True)
class Layout:
    settings: Settings

    @property
    def root(self) -> Path:
        return self.settings.ROOT

    # -- persistent data ------------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    def mail_home(self, email: str) -> Path:
        """A user's home and Maildir: Dovecot's ``mail_home`` with %u = the address.

        Raises :class:`UnsafeHome` for an address whose home would leave ``mail``.
        """
        return home_path(self.mail, email)

    @property
    def queue(self) -> Path:
        return self.root / "queue"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def dkim(self) -> Path:
        return self.root / "dkim"

    @property
    def overrides(self) -> Path:
        return self.root / "overrides"

    @property
    def redis_data(self) -> Path:
        return self.root / "redis"

    @property
    def rspamd_redis_data(self) -> Path:
        return self.root / "rspamd-redis"

    @property
    def rspamd_data(self) -> Path:
        """Rspamd's statistics and caches, ``_rspamd``'s (``data`` is closed to it)."""
        return self.root / "rspamd"

    @property
    def dav(self) -> Path:
        """WEBDAV=radicale: every user's calendars and address books (Radicale's
        ``filesystem_folder``), ``0700`` of Radicale's own user."""
        return self.root / "dav"

    @property
    def fetchmail_home(self) -> Path:
        """FETCHMAIL_ENABLED: fetchmail's home (its lock file) and each fetched account's
        ``<id>.ids`` (the UIDs it has seen, so a message is fetched once); ``0700``, owned
        by the account fetchmail runs as."""
        return self.root / "fetchmail"

    def fetchmail_idfile(self, fetch_id: int) -> Path:
        return self.fetchmail_home / f"{int(fetch_id)}.ids"

    @property
    def webmail(self) -> Path:
        """WEBMAIL=roundcube: Roundcube's SQLite database and temporary files, ``0700`` of
        its own user."""
        return self.root / "webmail"

    @property
    def cert_file(self) -> Path:
        return self.certs / self.settings.TLS_CERT_FILENAME

    @property
    def key_file(self) -> Path:
        return self.certs / self.settings.TLS_KEYPAIR_FILENAME

    @property
    def acme(self) -> Path:
        """TLS_FLAVOR letsencrypt and mail-letsencrypt: certbot's directories, the pair
        the daemons serve (``cert.pem``, ``key.pem``) and the last run's ``status.json``."""
        return self.certs / "letsencrypt"

    @property
    def acme_webroot(self) -> Path:
        """certbot writes HTTP-01 tokens below it; nginx serves them on port 80."""
        return self.run / "acme-challenge"

    # -- generated, rebuilt at every start ---------------------------------------------------
    @property
    def etc(self) -> Path:
        """Rendered daemon configuration: ``etc/<service>/...``."""
        return self.root / "etc"

    def service_etc(self, service: str) -> Path:
        return self.etc / service

    @property
    def run(self) -> Path:
        """Sockets and pid files."""
        return self.root / "run"

    @property
    def gate_socketmap(self) -> Path:
        """Postfix socketmap lookups (``socketmap:unix:...:<map>``)."""
        return self.run / "gate" / "socketmap.sock"

    @property
    def gate_control(self) -> Path:
        """Reload requests from the CLI after it changes the store, and ``roost hold``;
        ``0600`` root (the web has its own, ``gate_web_control``)."""
        return self.run / "gate" / "control.sock"

    @property
    def gate_dict(self) -> Path:
        """Dovecot's dict lookups (``proxy:...``): the Sieve before script, quota usage.

        In a directory of its own: Dovecot's mail processes (the mail user) open it, and
        must not reach the socketmap beside the others.
        """
        return self.run / "gate-dict" / "dict.sock"

    @property
    def gate_http_socket(self) -> Path:
        """nginx's ``auth_http unix:...``: the directory is ``0750 root:<nginx group>``.

        Only root and nginx's workers can open it, so whoever asks here is nginx.
        """
        return self.run / "gate-http" / "http.sock"

    @property
    def gate_http_secret(self) -> Path:
        """The header value Dovecot's Lua client proves itself with on ``GATE_HTTP_PORT``.

        Written afresh at every ``roost up`` (``0640 root:dovecot``), read by the gate at its
        start and by the Lua script at each request.
        """
        return self.run / "gate-secret" / "dovecot-http.secret"

    @property
    def gate_web_http_socket(self) -> Path:
        """The gate's HTTP side for the web application (its sign-ins): the same routes as
        ``gate_http_socket``, in a directory ``0750 root:<web group>``, as the web does not
        belong to nginx's group (which reaches Radicale, Roundcube and Rspamd's controller)."""
        return self.run / "gate-web" / "http.sock"

    @property
    def gate_web_control(self) -> Path:
        """The gate's control socket for the web, beside ``gate_web_http_socket``: it takes
        ``reload`` only (the held senders are root's ``roost hold``)."""
        return self.run / "gate-web" / "control.sock"

    @property
    def web_socket(self) -> Path:
        """The web application (uvicorn) for nginx: directory ``0750 <web user>:<nginx group>``.

        Only root and nginx's workers can open it, so the client address nginx puts in
        ``X-Real-IP`` is the only one a request here can carry.
        """
        return self.run / "web" / "web.sock"

    @property
    def redis_socket(self) -> Path:
        return self.run / "redis" / "redis.sock"

    @property
    def rspamd_run(self) -> Path:
        """Rspamd's sockets: ``milter.sock`` for Postfix, ``controller.sock`` for root."""
        return self.run / "rspamd"

    @property
    def rspamd_redis_socket(self) -> Path:
        """Rspamd's own Redis, ``0700 _rspamd``."""
        return self.run / "rspamd-redis" / "redis.sock"

    @property
    def clamd_socket(self) -> Path:
        """clamd, for Rspamd only (``clamav:_rspamd``)."""
        return self.run / "clamav" / "clamd.sock"

    @property
    def oletools_socket(self) -> Path:
        """Roost's olefy server (SCAN_MACROS), for Rspamd only (``nobody:_rspamd``)."""
        return self.run / "oletools" / "olefy.sock"

    @property
    def radicale_socket(self) -> Path:
        """Radicale (WEBDAV), for nginx only: directory ``0750 _radicale:<nginx group>``.

        Radicale believes the user nginx names in ``X-Remote-User``, so nobody but nginx's
        workers (and root) may connect.
        """
        return self.run / "radicale" / "radicale.sock"

    @property
    def roundcube_socket(self) -> Path:
        """Roundcube's php-fpm (WEBMAIL), for nginx only: ``0750 _roundcube:<nginx group>``."""
        return self.run / "roundcube" / "php-fpm.sock"

    @property
    def mta_sts_socket(self) -> Path:
        """The MTA-STS resolver's socketmap, for Postfix only (``nobody:postfix``)."""
        return self.run / "mta-sts" / "mta-sts.sock"

    @property
    def rspamd_learn_socket(self) -> Path:
        """Rspamd's controller for Dovecot's learning scripts (they run as ``mail``)."""
        return self.run / "rspamd-learn" / "controller.sock"

    @property
    def rspamd_web_socket(self) -> Path:
        """Rspamd's controller for nginx, which serves its web interface to signed-in
        global administrators: directory ``0750 root:<nginx group>``, socket ``0660``."""
        return self.run / "rspamd-web" / "controller.sock"

    @property
    def rspamd_milter_socket(self) -> Path:
        return self.rspamd_run / "milter.sock"

    @property
    def rspamd_controller_socket(self) -> Path:
        return self.rspamd_run / "controller.sock"

    @property
    def gate_userdb(self) -> Path:
        """Dovecot's userdb, a passwd-file the gate writes (``0640 root:dovecot`` in a
        ``0750`` directory; ``roost/gate/userdbfile.py``)."""
        return self.run / "gate-userdb" / "users"

    @property
    def dovecot_run(self) -> Path:
        """Dovecot's base_dir: its auth and LMTP sockets."""
        return self.run / "dovecot"

    @property
    def lmtp_socket(self) -> Path:
        return self.dovecot_run / "lmtp"

    @property
    def dovecot_auth_socket(self) -> Path:
        """SASL for Postfix submission (``smtpd_sasl_type = dovecot``)."""
        return self.dovecot_run / "auth-client"

    @property
    def runner_status(self) -> Path:
        """Written by ``roost up``, read by ``roost status``."""
        return self.run / "status.json"

    @property
    def log(self) -> Path:
        return self.root / "log"

    # -- addresses --------------------------------------------------------------------------
    @property
    def internal_address(self) -> str:
        """The loopback address of this stack's internal TCP hops (see the module's doc).

        A stack bound to a loopback address (as every test stack is) keeps them on that
        same address. Any other stack gets an address in 127.224.0.0/11 derived from its
        ROOT: the stack's own address is public or the wildcard, where an internal port
        would face the network, while a fixed 127.0.0.1 lets only one stack start per host.
        Linux routes all of 127.0.0.0/8 to ``lo`` without configuration, so the derived
        address needs no setup, and it stays the same across restarts.
        """
        bind = ipaddress.ip_address(self.settings.BIND_ADDRESS4)
        if bind.is_loopback:
            return str(bind)
        return derived_loopback(self.root)

    @property
    def validating_resolver(self) -> str | None:
        """The address of the DNSSEC-validating resolver outgoing mail asks (DNS_RESOLVER):
        Roost's unbound on the internal address, the one the setting names, or None for the
        host's own resolver."""
        chosen = self.settings.DNS_RESOLVER
        if chosen == "system":
            return None
        return self.internal_address if chosen == "unbound" else chosen

    @property
    def gate_http_url(self) -> str:
        """Dovecot's Lua client's base URL of the gate."""
        return f"http://{self.internal_address}:{GATE_HTTP_PORT}"

    @property
    def gate_auth_http(self) -> str:
        """nginx's ``auth_http`` value: the gate's login decision over its Unix socket."""
        return f"unix:{self.gate_http_socket}:/auth/email"

    def listen_addresses(self) -> list[str]:
        """Addresses the public listeners bind, IPv6 in brackets-free form."""
        addresses = [self.settings.BIND_ADDRESS4]
        if self.settings.BIND_ADDRESS6:
            addresses.append(self.settings.BIND_ADDRESS6)
        return addresses


def derived_loopback(root: Path) -> str:
    """A stable loopback address for ROOT, inside 127.224.0.0/11.

    The range stays clear of 127.0.0.0/16 (127.0.0.1, Debian's 127.0.1.1 for the host
    name, systemd-resolved's 127.0.0.53) and of other low test ranges; about two million
    addresses make two stacks' meeting on one a 1-in-a-million chance.
    """
    digest = hashlib.sha256(str(root).encode("utf-8")).digest()
    second = 224 + digest[0] % 31  # 224..254, never 255 (127.255.255.255 is broadcast)
    return f"127.{second}.{digest[1]}.{1 + digest[2] % 254}"
