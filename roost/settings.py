"""Typed settings read from the environment and a ``mailu.env``-style file.

Names, defaults and boolean rules follow Mailu's ``mailu.env`` so that a user moving from
Mailu recognises every variable. Roost is stricter in one way: a value that does not parse
stops the command with one line that names the variable and what it accepts, instead of
being carried along as a string.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["Settings", "SettingsError", "load_settings", "read_env_file"]

TLS_FLAVORS_AVAILABLE = ("cert", "notls")
TLS_FLAVORS_LATER = ("letsencrypt", "mail", "mail-letsencrypt")
DB_FLAVORS = ("sqlite", "postgresql", "mysql")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
KNOWN_PORTS = (25, 80, 110, 143, 443, 465, 587, 993, 995, 4190)
TLS_PORTS = (443, 465, 993, 995)

# Mailu variables Roost reads but does not act on yet, so that an existing mailu.env
# loads without error. Anything not in this list and not a field below is a typo.
ACCEPTED_MAILU_NAMES = frozenset(
    {
        "ADMIN",
        "ANTIVIRUS",
        "ANTIVIRUS_ACTION",
        "API",
        "API_TOKEN",
        "BABEL_DEFAULT_LOCALE",
        "BABEL_DEFAULT_TIMEZONE",
        "COMPOSE_PROJECT_NAME",
        "COMPRESSION",
        "COMPRESSION_LEVEL",
        "CPU_COUNT",
        "DEBUG",
        "DISABLE_STATISTICS",
        "DKIM_PATH",
        "DKIM_SELECTOR",
        "DMARC_RUA",
        "DMARC_RUF",
        "DMARC_SEND_REPORTS",
        "DOMAIN_REGISTRATION",
        "FETCHMAIL_DELAY",
        "FETCHMAIL_ENABLED",
        "FETCHMAIL_OPTIONS",
        "FULL_TEXT_SEARCH",
        "FULL_TEXT_SEARCH_ATTACHMENTS",
        "LETSENCRYPT_SHORTCHAIN",
        "LOGO_BACKGROUND",
        "LOGO_URL",
        "MEMORY_SESSIONS",
        "PERMANENT_SESSION_LIFETIME",
        "POSTFIX_LOG_FILE",
        "PROXY_AUTH_CREATE",
        "PROXY_AUTH_HEADER",
        "PROXY_AUTH_LOGOUT_URL",
        "PROXY_AUTH_WHITELIST",
        "PROXY_PROTOCOL",
        "REAL_IP_FROM",
        "REAL_IP_HEADER",
        "RECAPTCHA_PRIVATE_KEY",
        "RECAPTCHA_PUBLIC_KEY",
        "ROUNDCUBE_PLUGINS",
        "SCAN_MACROS",
        "SESSION_COOKIE_SECURE",
        "SESSION_KEY_BITS",
        "SESSION_TIMEOUT",
        "SITENAME",
        "SUBNET",
        "SUBNET6",
        "TLS",
        "TZ",
        "WEBDAV",
        "WEBMAIL",
        "WEBROOT_REDIRECT",
        "WEBSITE",
        "WEB_ADMIN",
        "WEB_API",
        "WEB_WEBMAIL",
        "WELCOME",
        "WELCOME_BODY",
        "WELCOME_SUBJECT",
        "AUTH_REQUIRE_TOKENS",
        "ANONMAIL_MAX_RETRIES",
    }
)


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


def _bool(name: str, raw: str) -> bool:
    # Mailu's rule: only true/yes and false/no (any case) are booleans.
    value = raw.strip().lower()
    if value in ("true", "yes"):
        return True
    if value in ("false", "no"):
        return False
    raise SettingsError(f"{name}={raw!r}: accepts true, yes, false or no")


def _int(name: str, raw: str, minimum: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: accepts a whole number") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name}={raw!r}: accepts a whole number of at least {minimum}")
    return value


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


_RATE = re.compile(
    r"^\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*(second|minute|hour|day|month|year)s?\s*$", re.I
)


def _rate(name: str, raw: str) -> str:
    """Check the ``limits`` library syntax Mailu uses (``5/hour``, ``50 per day``)."""
    if not _RATE.match(raw):
        raise SettingsError(f"{name}={raw!r}: accepts a rate such as 5/hour, 50/day or 10/minute")
    return raw.strip()


_NO_BRACKETS = str.maketrans("", "", "[]")


def _networks(name: str, raw: str) -> tuple[str, ...]:
    nets = []
    for item in _list(raw):
        try:
            nets.append(str(ipaddress.ip_network(item.translate(_NO_BRACKETS), strict=False)))
        except ValueError:
            raise SettingsError(
                f"{name}={raw!r}: {item!r} is not a network; accepts a comma list of "
                "addresses or CIDR networks such as 192.0.2.0/24,2001:db8::/32"
            ) from None
    return tuple(nets)


def _address(name: str, raw: str, version: int) -> str:
    try:
        addr = ipaddress.ip_address(raw.strip().strip("[]"))
    except ValueError:
        addr = None
    if addr is None or addr.version != version:
        raise SettingsError(f"{name}={raw!r}: accepts one IPv{version} address")
    return str(addr)


_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _hostname(name: str, raw: str) -> str:
    from roost.core.address import AddressError, domain_to_ascii

    try:
        host = domain_to_ascii(raw.strip())
    except AddressError:
        host = ""
    if not host or not all(_HOST_LABEL.match(label) for label in host.split(".")):
        raise SettingsError(f"{name}={raw!r}: accepts a host name such as mail.example.com")
    return host


@dataclass(frozen=True)
class Settings:
    """Every setting Roost acts on, with Mailu's names and defaults."""

    ROOT: Path = Path("/var/lib/roost")
    DOMAIN: str = "mailu.io"
    HOSTNAMES: tuple[str, ...] = ("mail.mailu.io", "alternative.mailu.io", "yetanother.mailu.io")
    POSTMASTER: str = "postmaster"
    SECRET_KEY: str = "changeMe"
    TLS_FLAVOR: str = "cert"
    TLS_CERT_FILENAME: str = "cert.pem"
    TLS_KEYPAIR_FILENAME: str = "key.pem"
    PORTS: tuple[int, ...] = (25, 80, 443, 465, 993, 995, 4190)
    BIND_ADDRESS4: str = "0.0.0.0"
    BIND_ADDRESS6: str = ""
    MESSAGE_SIZE_LIMIT: int = 50_000_000
    MESSAGE_RATELIMIT: str = "200/day"
    MESSAGE_RATELIMIT_EXEMPTION: tuple[str, ...] = ()
    RECIPIENT_DELIMITER: str = ""
    RELAYNETS: tuple[str, ...] = ()
    RELAYHOST: str = ""
    RELAYUSER: str = ""
    RELAYPASSWORD: str = ""
    WILDCARD_SENDERS: tuple[str, ...] = ()
    AUTH_RATELIMIT_IP: str = "5/hour"
    AUTH_RATELIMIT_IP_V4_MASK: int = 24
    AUTH_RATELIMIT_IP_V6_MASK: int = 48
    AUTH_RATELIMIT_USER: str = "50/day"
    AUTH_RATELIMIT_EXEMPTION: tuple[str, ...] = ()
    AUTH_RATELIMIT_EXEMPTION_LENGTH: int = 86400
    DEFAULT_QUOTA: int = 1_000_000_000
    DEFAULT_SPAM_THRESHOLD: int = 80
    CREDENTIAL_ROUNDS: int = 13
    REJECT_UNLISTED_RECIPIENT: bool = False
    OUTBOUND_TLS_LEVEL: str = "dane"
    DEFER_ON_TLS_ERROR: bool = True
    INBOUND_TLS_ENFORCE: bool = False
    TLS_PERMISSIVE: bool = True
    DB_FLAVOR: str = "sqlite"
    DB_USER: str = "mailu"
    DB_PW: str = ""
    DB_HOST: str = "database"
    DB_NAME: str = "mailu"
    DB_APPENDIX: str = ""
    SQLITE_DATABASE_FILE: str = "data/main.db"
    SQLALCHEMY_DATABASE_URI: str = ""
    LOG_LEVEL: str = "INFO"
    INITIAL_ADMIN_ACCOUNT: str = ""
    INITIAL_ADMIN_DOMAIN: str = ""
    INITIAL_ADMIN_PW: str = field(default="", repr=False)
    INITIAL_ADMIN_MODE: str = "ifmissing"

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
        env: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = ",".join(map(str, value))
            elif isinstance(value, bool):
                value = "true" if value else "false"
            env[f.name] = str(value)
        return env

    @property
    def mynetworks(self) -> tuple[str, ...]:
        """Clients that may relay without authentication: loopback itself and RELAYNETS."""
        return ("127.0.0.1/32", "::1/128", *self.RELAYNETS)


def _parse(name: str, raw: str) -> Any:
    """Turn one raw string into the typed value of setting ``name``."""
    if name == "ROOT":
        if not raw.strip():
            raise SettingsError("ROOT='': accepts an absolute directory path")
        path = Path(raw.strip())
        if not path.is_absolute():
            raise SettingsError(f"ROOT={raw!r}: accepts an absolute directory path")
        return path
    if name == "DOMAIN":
        return _hostname(name, raw)
    if name == "HOSTNAMES":
        hosts = tuple(_hostname(name, host) for host in _list(raw))
        if not hosts:
            raise SettingsError("HOSTNAMES='': accepts a comma list of host names")
        return hosts
    if name == "POSTMASTER":
        local = raw.strip()
        if not re.fullmatch(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+", local):
            raise SettingsError(f"POSTMASTER={raw!r}: accepts a local part such as postmaster")
        return local.lower()
    if name == "TLS_FLAVOR":
        flavor = raw.strip().lower()
        if flavor in TLS_FLAVORS_LATER:
            raise SettingsError(
                f"TLS_FLAVOR={raw!r}: not available in Roost yet; accepts "
                + " or ".join(TLS_FLAVORS_AVAILABLE)
            )
        if flavor not in TLS_FLAVORS_AVAILABLE:
            raise SettingsError(
                f"TLS_FLAVOR={raw!r}: accepts " + " or ".join(TLS_FLAVORS_AVAILABLE)
            )
        return flavor
    if name == "PORTS":
        ports = []
        for item in _list(raw):
            if not item.isdigit() or int(item) not in KNOWN_PORTS:
                raise SettingsError(
                    f"PORTS={raw!r}: {item!r} is not a mail or web port; accepts a comma list of "
                    + ",".join(map(str, KNOWN_PORTS))
                )
            ports.append(int(item))
        return tuple(sorted(set(ports)))
    if name == "BIND_ADDRESS4":
        return _address(name, raw, 4)
    if name == "BIND_ADDRESS6":
        return _address(name, raw, 6) if raw.strip() else ""
    if name in ("MESSAGE_SIZE_LIMIT", "DEFAULT_QUOTA", "AUTH_RATELIMIT_EXEMPTION_LENGTH"):
        return _int(name, raw, minimum=0)
    if name == "AUTH_RATELIMIT_IP_V4_MASK":
        value = _int(name, raw, minimum=0)
        if value > 32:
            raise SettingsError(f"{name}={raw!r}: accepts a prefix length from 0 to 32")
        return value
    if name == "AUTH_RATELIMIT_IP_V6_MASK":
        value = _int(name, raw, minimum=0)
        if value > 128:
            raise SettingsError(f"{name}={raw!r}: accepts a prefix length from 0 to 128")
        return value
    if name == "DEFAULT_SPAM_THRESHOLD":
        value = _int(name, raw, minimum=0)
        if value > 100:
            raise SettingsError(f"{name}={raw!r}: accepts a percentage from 0 to 100")
        return value
    if name == "CREDENTIAL_ROUNDS":
        value = _int(name, raw, minimum=4)
        if value > 31:
            raise SettingsError(f"{name}={raw!r}: accepts a cost from 4 to 31")
        return value
    if name in ("MESSAGE_RATELIMIT", "AUTH_RATELIMIT_IP", "AUTH_RATELIMIT_USER"):
        return _rate(name, raw)
    if name in ("RELAYNETS", "AUTH_RATELIMIT_EXEMPTION"):
        return _networks(name, raw)
    if name in ("WILDCARD_SENDERS", "MESSAGE_RATELIMIT_EXEMPTION"):
        return tuple(item.replace(" ", "").lower() for item in _list(raw))
    if name == "RECIPIENT_DELIMITER":
        value = raw.strip()
        if any(ch.isspace() or ch in '@,"\\' for ch in value):
            raise SettingsError(
                f"RECIPIENT_DELIMITER={raw!r}: accepts characters such as + or -, "
                "without @, comma, quote or space"
            )
        return value
    if name in (
        "REJECT_UNLISTED_RECIPIENT",
        "DEFER_ON_TLS_ERROR",
        "INBOUND_TLS_ENFORCE",
        "TLS_PERMISSIVE",
    ):
        return _bool(name, raw)
    if name == "OUTBOUND_TLS_LEVEL":
        level = raw.strip().lower()
        accepted = ("none", "may", "encrypt", "dane", "dane-only", "verify", "secure")
        if level not in accepted:
            raise SettingsError(f"{name}={raw!r}: accepts " + ", ".join(accepted))
        return level
    if name == "DB_FLAVOR":
        flavor = raw.strip().lower()
        if flavor not in DB_FLAVORS:
            raise SettingsError(f"DB_FLAVOR={raw!r}: accepts " + ", ".join(DB_FLAVORS))
        return flavor
    if name == "SQLALCHEMY_DATABASE_URI":
        uri = raw.strip()
        if uri and not re.match(r"^(sqlite|postgresql|mysql)(\+\w+)?://", uri):
            raise SettingsError(
                f"SQLALCHEMY_DATABASE_URI={raw!r}: accepts a sqlite://, postgresql:// "
                "or mysql:// URL"
            )
        return uri
    if name == "LOG_LEVEL":
        level = raw.strip().upper()
        if level not in LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL={raw!r}: accepts " + ", ".join(LOG_LEVELS))
        return level
    if name == "INITIAL_ADMIN_MODE":
        mode = raw.strip().lower()
        if mode not in ("create", "ifmissing", "update"):
            raise SettingsError(f"{name}={raw!r}: accepts create, ifmissing or update")
        return mode
    if name == "INITIAL_ADMIN_DOMAIN":
        return _hostname(name, raw) if raw.strip() else ""
    if name == "RELAYHOST":
        value = raw.strip()
        if value and not re.fullmatch(r"\[?[A-Za-z0-9.:-]+\]?(:\d{1,5})?", value):
            raise SettingsError(f"RELAYHOST={raw!r}: accepts a host such as [smtp.example.com]:587")
        return value
    return raw.strip() if name != "INITIAL_ADMIN_PW" else raw


_FIELDS = {f.name for f in fields(Settings)}


def read_env_file(path: Path) -> dict[str, str]:
    """Read a ``mailu.env`` file: KEY=VALUE lines, ``#`` comments, optional quotes."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"settings file {path}: does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"settings file {path}: cannot be read ({exc})") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        name, sep, value = stripped.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SettingsError(f"settings file {path}, line {number}: expected NAME=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name] = value
    return values


def _recognised(name: str) -> bool:
    base = name[:-5] if name.endswith("_FILE") else name
    return base in _FIELDS or base in ACCEPTED_MAILU_NAMES or name.endswith("_ADDRESS")


def load_settings(
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings: the file first, then the environment, then explicit overrides.

    Every setting ``X`` may be read from the file named by ``X_FILE`` (as Mailu's admin
    does for all of its settings). Unknown names in the file are refused: they are typos.
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, str] = {}
    if env_file is not None:
        file_values = read_env_file(env_file)
        for name in file_values:
            if not _recognised(name):
                raise SettingsError(
                    f"settings file {env_file}: unknown setting {name} "
                    "(see docs/configuration.md for the names Roost reads)"
                )
        raw.update(file_values)
    for name in _FIELDS:
        if name in environ:
            raw[name] = environ[name]
        file_name = f"{name}_FILE"
        if file_name in environ:
            raw[file_name] = environ[file_name]
    raw.update(overrides or {})

    for name in list(raw):
        if name.endswith("_FILE") and name[:-5] in _FIELDS:
            secret_path = Path(raw[name])
            try:
                raw[name[:-5]] = secret_path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SettingsError(
                    f"{name}={raw[name]!r}: cannot be read ({exc.strerror})"
                ) from None

    values = {name: _parse(name, raw[name]) for name in sorted(raw) if name in _FIELDS}
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _check_consistency(settings: Settings) -> None:
    server = settings.DB_FLAVOR != "sqlite" and not settings.SQLALCHEMY_DATABASE_URI
    if server and not settings.DB_HOST:
        raise SettingsError("DB_HOST='': accepts the database server's host name")
    if bool(settings.RELAYUSER) != bool(settings.RELAYPASSWORD):
        raise SettingsError("RELAYUSER/RELAYPASSWORD: set both or neither")
    if settings.RELAYUSER and not settings.RELAYHOST:
        raise SettingsError("RELAYUSER: needs RELAYHOST, the smarthost to log in to")
    if settings.INITIAL_ADMIN_ACCOUNT and not settings.INITIAL_ADMIN_DOMAIN:
        raise SettingsError("INITIAL_ADMIN_DOMAIN='': needed with INITIAL_ADMIN_ACCOUNT")
