"""The settings table: every setting declared once, with its parser, default and meaning.

Each field of :class:`Settings` is one row: ``setting(default, parser, section, meaning)``.
The loader parses with that parser, the configuration reference (docs/configuration.md) is
generated from the same row, and a test fails when the two disagree. Mailu settings that
Roost accepts but does not act on yet are rows of :data:`MAILU_ONLY`, so a Mailu user's
``mailu.env`` loads as it is and a name in neither place is refused as a typo.

Names, defaults and meanings are Mailu's (https://mailu.io/master/configuration.html).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from roost.settings import parsers as p

__all__ = [
    "DB_FLAVORS",
    "HTTP_PORTS",
    "KNOWN_PORTS",
    "LOG_LEVELS",
    "MAILU_ONLY",
    "PROXY_PROTOCOL_GROUPS",
    "SECTIONS",
    "TLS_FLAVORS_AVAILABLE",
    "TLS_FLAVORS_LATER",
    "TLS_PORTS",
    "Setting",
    "Settings",
    "declarations",
    "declared",
]

TLS_FLAVORS_AVAILABLE = ("cert", "letsencrypt", "mail", "mail-letsencrypt", "notls")
TLS_FLAVORS_LATER: tuple[str, ...] = ()
#: the flavors whose certificate comes from an ACME server (Mailu's letsencrypt flavors)
ACME_FLAVORS = ("letsencrypt", "mail-letsencrypt")
#: the flavors meant for a TLS-terminating proxy in front: plain HTTP is served, not redirected
PLAIN_HTTP_FLAVORS = ("mail", "mail-letsencrypt")
#: Let's Encrypt's production directory (https://letsencrypt.org/docs/acme-protocol-updates/)
LETSENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
DB_FLAVORS = ("sqlite", "postgresql", "mysql")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
KNOWN_PORTS = (25, 80, 110, 143, 443, 465, 587, 993, 995, 4190)
TLS_PORTS = (443, 465, 993, 995)
HTTP_PORTS = (80, 443)
_MAIL_PORTS = (25, 110, 143, 465, 587, 993, 995, 4190)
#: PROXY_PROTOCOL's names for groups of ports (Mailu's).
PROXY_PROTOCOL_GROUPS = {
    "mail": _MAIL_PORTS,
    "all-but-http": (*_MAIL_PORTS, 443),
    "all": (*_MAIL_PORTS, *HTTP_PORTS),
}
ANTIVIRUS_CHOICES = ("none", "clamav")
WEBDAV_CHOICES = ("none", "radicale")
WEBMAIL_CHOICES = ("none", "roundcube")
#: Where WEBMAIL=roundcube serves Roundcube when WEB_WEBMAIL is empty (Mailu's default).
WEBMAIL_DEFAULT_PATH = "/webmail"
#: Where WEBDAV=radicale serves calendars and contacts (Mailu's fixed path).
WEBDAV_PATH = "/webdav"
MTA_STS_MODES = ("enforce", "testing", "none")
OUTBOUND_TLS_LEVELS = ("none", "may", "encrypt", "dane", "dane-only", "verify", "secure")

#: The reference's sections, in the order docs/configuration.md shows them.
SECTIONS = {
    "general": "General",
    "network": "Network and TLS",
    "mail": "Mail",
    "logins": "Logins and rate limits",
    "database": "Database",
    "admin": "First account",
    "web": "Web",
    "mailu-only": "Accepted, not acted on yet",
}


@dataclass(frozen=True)
class Setting:
    """One row of the table: what the loader and the reference need to know of a name."""

    name: str
    section: str
    meaning: str
    #: None for a Mailu name that is accepted and ignored.
    parse: p.Parser | None = None
    default: Any = ""
    #: False: read and checked, but Roost does not act on it yet.
    acts: bool = True
    #: A password or key: never shown, and kept out of the environment of other
    #: programs' daemons (roost.runner.stack).
    secret: bool = False


_META = "roost.setting"
T = TypeVar("T")


def setting(
    default: T,
    parse: p.Parser,
    section: str,
    meaning: str,
    *,
    acts: bool = True,
    secret: bool = False,
) -> T:
    """A field of :class:`Settings` that carries its row of the table.

    Typed as its default so that the field's annotation is checked against it.
    """
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}")
    row = {"section": section, "meaning": meaning, "parse": parse, "acts": acts, "secret": secret}
    return field(default=default, repr=not secret, metadata={_META: row})


def mailu_only(name: str, meaning: str) -> Setting:
    """A Mailu setting Roost accepts so that an existing mailu.env loads, and ignores."""
    return Setting(name=name, section="mailu-only", meaning=meaning, acts=False)


@dataclass(frozen=True)
class Settings:
    """Every setting Roost reads, with Mailu's names and defaults."""

    # -- general -------------------------------------------------------------------------
    # setting() returns a dataclasses.field (as field() does); ruff sees only a call.
    ROOT: Path = setting(  # noqa: RUF009
        Path("/var/lib/roost"),
        p.absolute_path,
        "general",
        "where all data lives (absolute path)",
    )
    DOMAIN: str = setting(
        "mailu.io",
        p.hostname,
        "general",
        "main mail domain: Postfix `mydomain`/`myorigin`, the postmaster address",
    )
    HOSTNAMES: tuple[str, ...] = setting(
        ("mail.mailu.io", "alternative.mailu.io", "yetanother.mailu.io"),
        p.hostnames,
        "general",
        "public host names; the first is the SMTP banner, Dovecot's hostname and the "
        "certificate's name",
    )
    POSTMASTER: str = setting(
        "postmaster", p.local_part, "general", "local part of the postmaster address"
    )
    SECRET_KEY: str = setting(
        "changeMe",
        p.text,
        "general",
        "master secret: SRS addresses (key derived as Mailu does, so SRS bounces keep "
        "working after a move), rate-limit fingerprints. The default, an empty or a key "
        "shorter than 16 characters stops `roost up`, `roost gate` and `roost init`; "
        "`setup.sh` writes a random one",
        secret=True,
    )
    LOG_LEVEL: str = setting(
        "INFO",
        p.choice(LOG_LEVELS, upper=True),
        "general",
        "`CRITICAL`, `ERROR`, `WARNING`, `INFO`, `DEBUG`",
    )

    # -- network and TLS -----------------------------------------------------------------
    TLS_FLAVOR: str = setting(
        "cert",
        p.choice(TLS_FLAVORS_AVAILABLE, later=TLS_FLAVORS_LATER, prose=True),
        "network",
        "`cert`: the certificate in `ROOT/certs` (`TLS_CERT_FILENAME`, "
        "`TLS_KEYPAIR_FILENAME`); when none is there a self-signed one for HOSTNAMES is "
        "made, and Roost says so. `letsencrypt`: certbot obtains and renews one for all "
        "HOSTNAMES from ACME_SERVER (HTTP-01 on port 80, contact POSTMASTER@DOMAIN); a "
        "self-signed one serves until then ([certificates.md](certificates.md)). `mail`: "
        "as `cert`, and port 80 serves the web as 443 does, without a redirect to HTTPS "
        "(for a TLS-terminating proxy in front). `mail-letsencrypt`: as `letsencrypt`, "
        "with port 80 as `mail`. `notls`: no TLS anywhere (443/465/993/995 off, plaintext "
        "logins allowed)",
    )
    ACME_SERVER: str = setting(
        LETSENCRYPT_DIRECTORY,
        p.https_url,
        "network",
        "the ACME directory URL for TLS_FLAVOR `letsencrypt` and `mail-letsencrypt` "
        "(Roost's own setting; e.g. Let's Encrypt's staging directory "
        "`https://acme-staging-v02.api.letsencrypt.org/directory` for trials)",
    )
    LETSENCRYPT_SHORTCHAIN: bool = setting(
        False,
        p.boolean,
        "network",
        "TLS_FLAVOR `letsencrypt`, `mail-letsencrypt`: leave the root out of the chain "
        "served on HTTPS, IMAP, POP3, submission and ManageSieve; port 25 always sends it, "
        "for DANE ([certificates.md](certificates.md#dane-and-the-chains))",
    )
    TLS_CERT_FILENAME: str = setting(
        "cert.pem", p.text, "network", "certificate file name under `ROOT/certs`"
    )
    TLS_KEYPAIR_FILENAME: str = setting(
        "key.pem", p.text, "network", "private key file name under `ROOT/certs`"
    )
    PORTS: tuple[int, ...] = setting(
        (25, 80, 443, 465, 993, 995, 4190),
        p.ports(KNOWN_PORTS),
        "network",
        "listeners to open; 25 is always on; choose from " + ", ".join(map(str, KNOWN_PORTS)),
    )
    BIND_ADDRESS4: str = setting(
        "0.0.0.0", p.address(4), "network", "the IPv4 address every listener binds"
    )
    BIND_ADDRESS6: str = setting(
        "",
        p.optional(p.address(6)),
        "network",
        "the IPv6 address every listener binds; empty: no IPv6 listeners",
    )
    TLS_PERMISSIVE: bool = setting(
        True,
        p.boolean,
        "network",
        "STARTTLS on port 25 allows old protocols and ciphers: any TLS beats the plain text "
        "a sender falls back to (RFC 7435)",
    )
    INBOUND_TLS_ENFORCE: bool = setting(
        False,
        p.boolean,
        "network",
        "refuse mail on port 25 from senders that did not start TLS (RFC 3207 forbids this "
        "for a public server)",
    )
    OUTBOUND_TLS_LEVEL: str = setting(
        "dane",
        p.choice(OUTBOUND_TLS_LEVELS),
        "network",
        "Postfix `smtp_tls_security_level` for outgoing mail: " + ", ".join(OUTBOUND_TLS_LEVELS),
    )
    REAL_IP_FROM: tuple[str, ...] = setting(
        (),
        p.networks,
        "network",
        "comma list of the addresses or networks of the proxies or load balancers in front "
        "of Roost: only a connection from one of them may name the client, by REAL_IP_HEADER "
        "or a PROXY protocol header (nginx `set_real_ip_from`, Dovecot "
        "`haproxy_trusted_networks`); empty: the client is always the connection's peer "
        "([proxy.md](proxy.md))",
    )
    REAL_IP_HEADER: str = setting(
        "",
        p.optional(p.header_name),
        "network",
        "the HTTP header in which a proxy of REAL_IP_FROM names the client (nginx "
        "`real_ip_header`, e.g. `X-Forwarded-For`; the rightmost address not in REAL_IP_FROM "
        "counts); empty: `X-Real-IP`. Needs REAL_IP_FROM; not with PROXY_PROTOCOL on 80 or 443",
    )
    PROXY_PROTOCOL: tuple[int, ...] = setting(
        (),
        p.proxy_ports(KNOWN_PORTS, PROXY_PROTOCOL_GROUPS),
        "network",
        "ports whose connections start with a PROXY protocol header (HAProxy's, v1 or v2): "
        "a comma list of ports, or `mail` (25,110,143,465,587,993,995,4190), `all-but-http` "
        "(mail and 443), `all` (and 80). A header is believed only from REAL_IP_FROM, which "
        "it needs; a connection without one is dropped",
    )
    DEFER_ON_TLS_ERROR: bool = setting(
        True,
        p.boolean,
        "network",
        "defer outgoing mail rather than weaken TLS: DANE for signed TLSA records behind "
        "an unsigned MX (Postfix `smtp_tls_dane_insecure_mx_policy` `dane`; false: `may`), "
        "MTA-STS `testing` policies enforced, and a failed DANE lookup never left to "
        "MTA-STS (docs/outbound-tls.md)",
    )

    DNS_RESOLVER: str = setting(
        "unbound",
        p.resolver,
        "network",
        "the DNS resolver of outgoing mail and of Rspamd's checks. `unbound`: Roost runs "
        "its own DNSSEC-validating resolver on the internal address, which DANE needs "
        "(docs/outbound-tls.md); "
        "`system`: the host's /etc/resolv.conf as it is (DANE works only if that resolver "
        "validates, over a path no one can tamper with); an IP address: an existing validating "
        "resolver",
    )

    # -- mail ----------------------------------------------------------------------------
    MESSAGE_SIZE_LIMIT: int = setting(
        50_000_000,
        p.whole(),
        "mail",
        "largest message in bytes; larger ones are refused with 552",
    )
    RECIPIENT_DELIMITER: str = setting(
        "",
        p.recipient_delimiter,
        "mail",
        "characters that start an address extension (`+` makes `joe+news@` reach `joe@`)",
    )
    RELAYNETS: tuple[str, ...] = setting(
        (),
        p.networks,
        "mail",
        "comma list of networks that may relay without authentication, besides 127.0.0.1 and ::1",
    )
    RELAYHOST: str = setting(
        "",
        p.relayhost,
        "mail",
        "smarthost for all outgoing mail, e.g. `[smtp.example.com]:587`",
    )
    RELAYUSER: str = setting(
        "", p.text, "mail", "login for `RELAYHOST` (sent only inside TLS); needs RELAYPASSWORD"
    )
    RELAYPASSWORD: str = setting(
        "", p.text, "mail", "password for `RELAYHOST`; needs RELAYUSER", secret=True
    )
    WILDCARD_SENDERS: tuple[str, ...] = setting(
        (), p.email_list, "mail", "logins allowed to send as any address"
    )
    MESSAGE_RATELIMIT: str = setting(
        "200/day",
        p.rate,
        "mail",
        "messages one authenticated login may send; over it: `450 4.2.1 ... You are sending "
        "too many emails too fast.`",
    )
    MESSAGE_RATELIMIT_EXEMPTION: tuple[str, ...] = setting(
        (), p.email_list, "mail", "logins exempt from `MESSAGE_RATELIMIT`"
    )
    SPAM_HOLD_RATE: str = setting(
        "10/hour",
        p.rate,
        "mail",
        "Roost's own: a login that submits this many messages Rspamd scores as spam within "
        "the period (see `SPAM_HOLD_RATIO`) is held: its further mail waits in Postfix's hold "
        "queue and the postmaster is told (`roost hold`; [filtering.md](filtering.md)); "
        "`0/hour` turns holding off",
    )
    SPAM_HOLD_RATIO: int = setting(
        50,
        p.whole(1, 100, "a percentage"),
        "mail",
        "Roost's own: `SPAM_HOLD_RATE` holds a login only when its spam is at least this "
        "many per cent of its messages Rspamd scored in the period",
    )
    REJECT_UNLISTED_RECIPIENT: bool = setting(
        False,
        p.boolean,
        "mail",
        "Postfix `smtpd_reject_unlisted_recipient`: refuse unknown recipients at RCPT time",
    )
    DKIM_SELECTOR: str = setting(
        "dkim",
        p.dkim_selector,
        "mail",
        "the DKIM selector: mail is signed with `s=` it, and each domain's key is published "
        "at `<selector>._domainkey.<domain>` ([dkim.md](dkim.md))",
    )
    DKIM_PATH: str = setting(
        "dkim/{domain}.{selector}.key",
        p.dkim_path,
        "mail",
        "each domain's DKIM private key file, relative to ROOT unless absolute; `{domain}` "
        "is the domain's punycode name, `{selector}` DKIM_SELECTOR (Mailu's default is "
        "`/dkim/{domain}.{selector}.key`, its container's volume)",
    )
    DMARC_RUA: str = setting(
        "",
        p.optional(p.local_part),
        "mail",
        "local part at DOMAIN that receives DMARC aggregate reports (the published `rua=`)",
    )
    DMARC_RUF: str = setting(
        "",
        p.optional(p.local_part),
        "mail",
        "local part at DOMAIN that receives DMARC failure reports (the published `ruf=`)",
    )
    DMARC_SEND_REPORTS: bool = setting(
        False,
        p.boolean,
        "mail",
        "send DMARC aggregate reports (RFC 7489 section 7.2) once a day, from "
        "POSTMASTER@DOMAIN, to the `rua=` addresses of the domains whose mail Roost "
        "received ([filtering.md](filtering.md#dmarc-reports))",
    )
    DMARC_REPORTS_PER_DAY: int = setting(
        1000,
        p.whole(1),
        "mail",
        "Roost's own: at most this many DMARC aggregate reports are sent in one day; the "
        "domains with the most messages go first",
    )
    MTA_STS_MODE: str = setting(
        "enforce",
        p.choice(MTA_STS_MODES, prose=True),
        "mail",
        "Roost's own: the MTA-STS policy (RFC 8461) served at "
        "`https://mta-sts.<domain>/.well-known/mta-sts.txt` for each domain whose "
        "`mta-sts.<domain>` is in HOSTNAMES: `enforce` (senders that know it deliver only "
        "over TLS to a host the policy lists, with a valid certificate), `testing` (they "
        "deliver anyway and report, see TLSRPT_RUA) or `none` (withdraws the policy) "
        "([dns.md](dns.md#mta-sts-and-tls-rpt))",
    )
    MTA_STS_MAX_AGE: int = setting(
        604800,
        p.whole(86400, 31557600, "seconds"),
        "mail",
        "Roost's own: how long senders keep the MTA-STS policy (its `max_age`), in seconds: "
        "from 86400 (a day) to 31557600 (a year, RFC 8461 section 3.2's most)",
    )
    TLSRPT_RUA: str = setting(
        "",
        p.optional(p.local_part),
        "mail",
        "Roost's own: local part at DOMAIN that receives TLS reports (RFC 8460, the "
        "`rua=` of the `_smtp._tls` record published with MTA-STS); empty: POSTMASTER",
    )
    DEFAULT_QUOTA: int = setting(
        1_000_000_000,
        p.whole(),
        "mail",
        "mailbox quota in bytes for new users (capped by the domain's `max_quota_bytes`)",
    )
    DEFAULT_SPAM_THRESHOLD: int = setting(
        80,
        p.whole(0, 100, "a percentage"),
        "mail",
        "spam threshold for new users (percent)",
    )

    ANTIVIRUS: str = setting(
        "none",
        p.choice(ANTIVIRUS_CHOICES),
        "mail",
        "`clamav`: Rspamd has every message scanned by ClamAV (Debian's clamd, run by Roost); "
        "`none`: no virus scanner",
    )
    ANTIVIRUS_ACTION: str = setting(
        "reject",
        p.choice(("reject", "discard")),
        "mail",
        "mail with a virus: `reject` it at SMTP time (the sender is told), or `discard` it "
        "(accepted and dropped). Mailu's default is `discard`, but its Rspamd rejects anyway",
    )
    ANTIVIRUS_DATABASE: Path = setting(  # noqa: RUF009
        Path("/var/lib/clamav"),
        p.absolute_path,
        "mail",
        "Roost's own: where ClamAV's signatures are (Debian's place by default)",
    )
    ANTIVIRUS_UPDATES: bool = setting(
        True,
        p.boolean,
        "mail",
        "Roost's own: run freshclam beside clamd to keep the signatures current (false: "
        "something else updates ANTIVIRUS_DATABASE)",
    )

    FETCHMAIL_ENABLED: bool = setting(
        False,
        p.boolean,
        "mail",
        "fetch the remote POP3/IMAP accounts users keep on their pages into their mailboxes, "
        "and show those pages (off as in Mailu's setup wizard; Mailu's code default is on; "
        "[mailboxes.md](mailboxes.md#fetched-accounts))",
    )
    FETCHMAIL_DELAY: int = setting(
        60,
        p.whole(1),
        "mail",
        "seconds between two rounds of fetching (Mailu's code default; its wizard writes 600)",
    )
    FETCHMAIL_OPTIONS: str = setting(
        "",
        p.one_line,
        "mail",
        "more fetchmail user options (fetchmail(1), e.g. `limit 20000000`), added after "
        "Roost's own on every account's `options` line, so they win",
    )

    SCAN_MACROS: bool = setting(
        False,
        p.boolean,
        "mail",
        "refuse Office documents with macros that run by themselves or write and execute "
        "(oletools' mraptor rules, as Mailu's `SCAN_MACROS`; [filtering.md](filtering.md))",
    )
    # -- logins and rate limits ----------------------------------------------------------
    AUTH_RATELIMIT_IP: str = setting(
        "5/hour",
        p.rate,
        "logins",
        "failed logins on distinct accounts allowed per client network",
    )
    AUTH_RATELIMIT_IP_V4_MASK: int = setting(
        24,
        p.whole(0, 32, "a prefix length"),
        "logins",
        'IPv4 prefix length that makes a "client network"',
    )
    AUTH_RATELIMIT_IP_V6_MASK: int = setting(
        48,
        p.whole(0, 128, "a prefix length"),
        "logins",
        'IPv6 prefix length that makes a "client network"',
    )
    AUTH_RATELIMIT_USER: str = setting(
        "50/day", p.rate, "logins", "distinct wrong passwords allowed per account"
    )
    AUTH_RATELIMIT_EXEMPTION: tuple[str, ...] = setting(
        (),
        p.networks,
        "logins",
        "networks never rate-limited (`0.0.0.0/0,::/0` turns limiting off)",
    )
    AUTH_RATELIMIT_EXEMPTION_LENGTH: int = setting(
        86400,
        p.whole(),
        "logins",
        "seconds a (client network, account) pair stays trusted after a successful login: "
        "the account's spent budget does not close that network to it",
    )
    AUTH_REQUIRE_TOKENS: bool = setting(
        False,
        p.boolean,
        "logins",
        "refuse passwords for IMAP, POP3, SMTP and ManageSieve: only app tokens log in "
        "(web sign-ins and WEBDAV keep passwords, as in Mailu)",
    )
    AUTH_REQUIRE_TOTP: bool = setting(
        False,
        p.boolean,
        "logins",
        "Roost's own (Mailu has no two-factor login): every user must enrol in two-factor "
        "login (TOTP) at the next web login, as a domain's `totp_required` asks of its "
        "users ([two-factor.md](two-factor.md))",
    )
    AUTH_TOTP_MAIL_PASSWORDS: bool = setting(
        False,
        p.boolean,
        "logins",
        "Roost's own: let users with two-factor login on still log in to IMAP, POP3, SMTP, "
        "ManageSieve and WEBDAV with their password; off, only app tokens open those for them",
    )
    CREDENTIAL_ROUNDS: int = setting(
        13,
        p.whole(4, 31, "a cost"),
        "logins",
        "bcrypt cost in Mailu; checked and kept for compatibility, new hashes are Argon2id",
        acts=False,
    )

    # -- database ------------------------------------------------------------------------
    DB_FLAVOR: str = setting(
        "sqlite",
        p.choice(DB_FLAVORS),
        "database",
        "`sqlite`, `postgresql` or `mysql` (MariaDB)",
    )
    SQLITE_DATABASE_FILE: str = setting("data/main.db", p.text, "database", "relative to ROOT")
    DB_HOST: str = setting("database", p.text, "database", "database server (server flavours)")
    DB_USER: str = setting("mailu", p.text, "database", "database user (server flavours)")
    DB_PW: str = setting("", p.text, "database", "database password (server flavours)", secret=True)
    DB_NAME: str = setting("mailu", p.text, "database", "database name (server flavours)")
    DB_APPENDIX: str = setting(
        "", p.text, "database", "appended to the database URL as is, e.g. `?sslmode=require`"
    )
    SQLALCHEMY_DATABASE_URI: str = setting(
        "", p.url, "database", "a full URL instead of the above", secret=True
    )
    ROUNDCUBE_DB_FLAVOR: str = setting(
        "",
        p.optional(p.choice(DB_FLAVORS)),
        "database",
        "WEBMAIL=roundcube: Roundcube's database, `sqlite` (`ROOT/webmail/roundcube.db`), "
        "`postgresql` or `mysql`; empty: SQLALCHEMY_DATABASE_URI_ROUNDCUBE when set, else "
        "the same flavour as DB_FLAVOR ([webmail.md](webmail.md#database))",
    )
    ROUNDCUBE_DB_HOST: str = setting(
        "",
        p.optional(p.db_host),
        "database",
        "Roundcube's database server, `host` or `host:port`; empty: DB_HOST",
    )
    ROUNDCUBE_DB_USER: str = setting(
        "roundcube", p.text, "database", "Roundcube's database user (server flavours)"
    )
    ROUNDCUBE_DB_PW: str = setting(
        "", p.text, "database", "its password (server flavours)", secret=True
    )
    ROUNDCUBE_DB_NAME: str = setting(
        "roundcube", p.text, "database", "Roundcube's database name (server flavours)"
    )
    SQLALCHEMY_DATABASE_URI_ROUNDCUBE: str = setting(
        "",
        p.roundcube_url,
        "database",
        "Roundcube's database as one URL in Roundcube's form, `pgsql://user:password@host/"
        "database` or `mysql://...`, used when ROUNDCUBE_DB_FLAVOR is empty",
        secret=True,
    )

    # -- first account -------------------------------------------------------------------
    INITIAL_ADMIN_ACCOUNT: str = setting(
        "", p.text, "admin", "local part of a global admin created at start"
    )
    INITIAL_ADMIN_DOMAIN: str = setting(
        "", p.optional(p.hostname), "admin", "its domain (created if missing)"
    )
    INITIAL_ADMIN_PW: str = setting("", p.verbatim, "admin", "its password", secret=True)
    INITIAL_ADMIN_MODE: str = setting(
        "ifmissing",
        p.choice(("create", "ifmissing", "update"), prose=True),
        "admin",
        "`create` (error if it exists), `ifmissing`, `update` (reset the password)",
    )

    # -- web -----------------------------------------------------------------------------
    WEB_ADMIN: str = setting(
        "/admin",
        p.web_path,
        "web",
        "path of the web administration and account pages; empty: no web pages (the web "
        "daemon still runs when API is true)",
    )
    WEBROOT_REDIRECT: str = setting(
        "",
        p.web_redirect,
        "web",
        "where a request for `/` (or any path nothing else serves) is redirected; empty: "
        "404; `none`: no `location /`, so an override may define one",
    )
    SITENAME: str = setting("Roost", p.text, "web", "the site's name in the web pages")
    SESSION_COOKIE_SECURE: str | bool = setting(
        "",
        p.optional(p.boolean),
        "web",
        "send the session cookie only over HTTPS; empty: yes unless TLS_FLAVOR=notls",
    )
    DOMAIN_REGISTRATION: bool = setting(
        False,
        p.boolean,
        "web",
        "let anyone register a domain at `WEB_ADMIN/domain/signup` (a visitor with its first "
        "account, a signed-in user as its manager); the domain's MX must name one of "
        "HOSTNAMES, and it gets 10 users, 10 aliases and DEFAULT_QUOTA per user",
    )
    WEBMAIL: str = setting(
        "none",
        p.choice(WEBMAIL_CHOICES),
        "web",
        "`roundcube`: Debian's Roundcube at WEB_WEBMAIL, behind Roost's nginx "
        "([webmail.md](webmail.md)); `none`: no webmail",
    )
    WEB_WEBMAIL: str = setting(
        "",
        p.web_url,
        "web",
        "WEBMAIL=roundcube: the path Roundcube is served under (empty: `/webmail`); "
        "WEBMAIL=none: where `WEB_ADMIN/webmail` sends the browser (the path or URL of a "
        "webmail served elsewhere), empty: 404",
    )
    ROUNDCUBE_PLUGINS: tuple[str, ...] = setting(
        ("archive", "zipdownload", "markasjunk", "managesieve", "enigma"),
        p.plugin_names,
        "web",
        "WEBMAIL=roundcube: Roundcube's plugins, a comma list of Debian's "
        "(`/usr/share/roundcube/plugins`); Roost's own single sign-on plugin `roost` is "
        "always added. The default is Mailu's without `carddav`, which Debian does not "
        "ship ([webmail.md](webmail.md#plugins))",
    )
    WEBDAV: str = setting(
        "none",
        p.choice(WEBDAV_CHOICES),
        "web",
        "`radicale`: calendars and contacts (CalDAV, CardDAV) at `/webdav/`, each user's own, "
        "signed in with the mail password or an app token ([webdav.md](webdav.md)); `none`: "
        "no such server",
    )
    PROXY_AUTH_WHITELIST: tuple[str, ...] = setting(
        (),
        p.networks,
        "web",
        "networks of the authenticating proxies whose PROXY_AUTH_HEADER signs a user in at "
        "`/sso/login`, matched against the address nginx sees (never a header); empty: "
        "header authentication is off ([web.md](web.md))",
    )
    PROXY_AUTH_HEADER: str = setting(
        "X-Auth-Email",
        p.header_name,
        "web",
        "the header in which such a proxy names the signed-in user's address",
    )
    PROXY_AUTH_CREATE: bool = setting(
        False,
        p.boolean,
        "web",
        "create a user the proxy names who does not exist yet (the domain must exist and "
        "have room; a random password)",
    )
    PROXY_AUTH_LOGOUT_URL: str = setting(
        "",
        p.web_url,
        "web",
        "where the browser goes after signing out (the proxy's own sign-out); empty: the "
        "sign-in page",
    )
    WELCOME: bool = setting(
        False,
        p.boolean,
        "web",
        "send a welcome message from POSTMASTER@DOMAIN to each user created on the admin "
        "pages, by sign-up or by PROXY_AUTH_CREATE (as Mailu: not to users made by the API, "
        "`roost user`, a domain registration or config-import; [web.md](web.md))",
    )
    WELCOME_SUBJECT: str = setting(
        "Dummy welcome topic", p.one_line, "web", "the welcome message's subject"
    )
    WELCOME_BODY: str = setting(
        "Dummy welcome body", p.message_text, "web", "the welcome message's text"
    )
    SESSION_TIMEOUT: int = setting(3600, p.whole(60), "web", "seconds an idle web session lasts")
    PERMANENT_SESSION_LIFETIME: int = setting(
        2_592_000, p.whole(60), "web", "seconds a web session lasts at most, however busy"
    )
    API: bool = setting(
        False,
        p.boolean,
        "web",
        "serve the REST API (Mailu's API v1, [api.md](api.md)) under `WEB_API`/v1",
    )
    API_TOKEN: str = setting(
        "",
        p.text,
        "web",
        "the token every API call carries (`Authorization: Bearer <token>` or the bare "
        "token); the API answers only when API is true and this is set, and the web "
        "server refuses a token under 16 characters (`openssl rand -hex 16` makes one)",
        secret=True,
    )
    WEB_API: str = setting("/api", p.web_path, "web", "path prefix of the REST API")
    ANONMAIL_MAX_RETRIES: int = setting(
        10,
        p.whole(1, 1000),
        "web",
        "random addresses tried for a new anonymous alias before giving up (a taken one "
        "is skipped)",
    )

    # -- derived values -------------------------------------------------------------------

    @property
    def hostname(self) -> str:
        """The first of HOSTNAMES: SMTP banner, Dovecot hostname, certificate name."""
        return self.HOSTNAMES[0]

    @property
    def postmaster_address(self) -> str:
        return f"{self.POSTMASTER}@{self.DOMAIN}"

    @property
    def tls(self) -> bool:
        return self.TLS_FLAVOR != "notls"

    @property
    def webdav_path(self) -> str:
        """Where CalDAV and CardDAV are served (WEBDAV_PATH); empty under WEBDAV=none."""
        return WEBDAV_PATH if self.WEBDAV == "radicale" else ""

    @property
    def webmail_path(self) -> str:
        """Where WEBMAIL=roundcube serves Roundcube; empty under WEBMAIL=none."""
        if self.WEBMAIL != "roundcube":
            return ""
        return self.WEB_WEBMAIL.rstrip("/") or WEBMAIL_DEFAULT_PATH

    @property
    def acme(self) -> bool:
        """Whether certbot obtains the certificate (TLS_FLAVOR letsencrypt, mail-letsencrypt)."""
        return self.TLS_FLAVOR in ACME_FLAVORS

    @property
    def http_redirect(self) -> bool:
        """Whether port 80 only sends browsers to HTTPS (TLS_FLAVOR cert, letsencrypt)."""
        return self.tls and self.TLS_FLAVOR not in PLAIN_HTTP_FLAVORS

    @property
    def session_cookie_secure(self) -> bool:
        """SESSION_COOKIE_SECURE, or Mailu's automatic value: secure unless notls."""
        if isinstance(self.SESSION_COOKIE_SECURE, bool):
            return self.SESSION_COOKIE_SECURE
        return self.tls

    def proxy_protocol(self, port: int) -> bool:
        """Whether connections to ``port`` start with a PROXY protocol header."""
        return port in self.PROXY_PROTOCOL and self.port_enabled(port)

    def port_enabled(self, port: int) -> bool:
        """Mailu's PORT_<n> flag: 25 is always on, TLS-only ports are off under notls."""
        if port == 25:
            return True
        if port in TLS_PORTS and not self.tls:
            return False
        return port in self.PORTS

    @property
    def database_uri(self) -> str:
        """SQLALCHEMY_DATABASE_URI, or one built from DB_FLAVOR and DB_* as Mailu does."""
        if self.SQLALCHEMY_DATABASE_URI:
            return self.SQLALCHEMY_DATABASE_URI
        if self.DB_FLAVOR == "sqlite":
            path = Path(self.SQLITE_DATABASE_FILE)
            if not path.is_absolute():
                path = self.ROOT / path
            return f"sqlite:///{path}"
        from urllib.parse import quote

        driver = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}[self.DB_FLAVOR]
        credentials = quote(self.DB_USER, safe="")
        if self.DB_PW:
            credentials += ":" + quote(self.DB_PW, safe="")
        return f"{driver}://{credentials}@{self.DB_HOST}/{self.DB_NAME}{self.DB_APPENDIX}"

    def to_environ(self) -> dict[str, str]:
        """The settings as environment variables, for Roost's own child processes."""
        return {f.name: to_text(getattr(self, f.name)) for f in fields(self)}

    @property
    def mynetworks(self) -> tuple[str, ...]:
        """Clients that may relay without authentication: loopback itself and RELAYNETS."""
        return ("127.0.0.1/32", "::1/128", *self.RELAYNETS)


def to_text(value: Any) -> str:
    """A typed value as the string that parses back to it."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


#: Mailu settings read and ignored (https://mailu.io/master/configuration.html): an
#: existing mailu.env loads without error. Moving one into :class:`Settings` makes it act.
MAILU_ONLY: tuple[Setting, ...] = (
    mailu_only("ADMIN", "run Mailu's web administration (Roost has the `roost` command)"),
    mailu_only("BABEL_DEFAULT_LOCALE", "language of the web interfaces"),
    mailu_only("BABEL_DEFAULT_TIMEZONE", "time zone of the web interfaces"),
    mailu_only("COMPOSE_PROJECT_NAME", "Docker Compose's project name"),
    mailu_only("COMPRESSION", "compress stored mail (`gz`, `bz2`, `lz4`, `zstd`)"),
    mailu_only("COMPRESSION_LEVEL", "the compression level for `COMPRESSION`"),
    mailu_only("CPU_COUNT", "worker processes for the admin container"),
    mailu_only("DEBUG", "Flask's debug mode for the admin"),
    mailu_only("DISABLE_STATISTICS", "do not send Mailu's anonymous usage statistics"),
    mailu_only(
        "FULL_TEXT_SEARCH",
        "Dovecot full-text search; see [mailboxes.md](mailboxes.md) for why Roost has none",
    ),
    mailu_only("FULL_TEXT_SEARCH_ATTACHMENTS", "index attachments for full-text search"),
    mailu_only("LOGO_BACKGROUND", "background colour of the web interfaces' logo"),
    mailu_only("LOGO_URL", "logo of the web interfaces"),
    mailu_only("MEMORY_SESSIONS", "keep web sessions in memory instead of Redis"),
    mailu_only("POSTFIX_LOG_FILE", "also write Postfix's log to this file"),
    replace(mailu_only("RECAPTCHA_PRIVATE_KEY", "reCAPTCHA key for the sign-up page"), secret=True),
    mailu_only("RECAPTCHA_PUBLIC_KEY", "reCAPTCHA site key for the sign-up page"),
    mailu_only(
        "ROUNDCUBE_DB_PORT",
        "named in some of Mailu's documentation, never read by Mailu: give "
        "ROUNDCUBE_DB_HOST as `host:port`",
    ),
    mailu_only("SESSION_KEY_BITS", "strength of web session keys"),
    mailu_only("SUBNET", "the Docker network of Mailu's containers"),
    mailu_only("SUBNET6", "the IPv6 Docker network of Mailu's containers"),
    mailu_only("TLS", "a TLS setting of old mailu.env files"),
    mailu_only("TZ", "the containers' time zone"),
    mailu_only("WEBSITE", "the site linked from the web interfaces"),
)


def declarations() -> tuple[Setting, ...]:
    """Every row: the fields of :class:`Settings`, then :data:`MAILU_ONLY`."""
    rows = []
    for f in fields(Settings):
        row = f.metadata[_META]
        rows.append(
            Setting(
                name=f.name,
                section=row["section"],
                meaning=row["meaning"],
                parse=row["parse"],
                default=f.default,
                acts=row["acts"],
                secret=row["secret"],
            )
        )
    return (*rows, *MAILU_ONLY)


#: The names of secret settings (passwords, keys, URLs that may hold a password).
SECRET_SETTINGS = frozenset(row.name for row in declarations() if row.secret)


def declared() -> dict[str, Setting]:
    """The rows by name."""
    return {row.name: row for row in declarations()}
