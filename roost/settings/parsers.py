"""Value parsers: each turns one raw string into a typed value or one line naming the variable.

A parser is called as ``parse(name, raw)``; the name is only for the message, so one parser
serves every setting of its kind. Messages read ``NAME='raw': accepts ...`` so that the user
sees the variable, what they wrote and what would do, on one line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roost.core.ratelimit import RateError, parse_rate

__all__ = [
    "Parser",
    "SettingsError",
    "absolute_path",
    "address",
    "boolean",
    "choice",
    "db_host",
    "dkim_path",
    "dkim_selector",
    "email_list",
    "header_name",
    "hostname",
    "hostnames",
    "items",
    "local_part",
    "message_text",
    "networks",
    "one_line",
    "optional",
    "ports",
    "proxy_ports",
    "rate",
    "recipient_delimiter",
    "relayhost",
    "resolver",
    "roundcube_url",
    "text",
    "url",
    "verbatim",
    "web_path",
    "web_redirect",
    "web_url",
    "whole",
]

#: ``parse(name, raw) -> value``
Parser = Callable[[str, str], Any]


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


def text(name: str, raw: str) -> str:
    """Any text, without the spaces around it."""
    return raw.strip()


def _controls(text: str, allowed: str = "") -> bool:
    return any(
        (ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or ch in "\u2028\u2029") and ch not in allowed
        for ch in text
    )


def one_line(name: str, raw: str) -> str:
    """Text of one line without control characters (a mail header such as a subject)."""
    value = raw.strip()
    if _controls(value):
        raise SettingsError(f"{name}={raw!r}: accepts one line of text, without control characters")
    return value


def message_text(name: str, raw: str) -> str:
    """The text of a message: line breaks and tabs are its only control characters."""
    value = raw.replace("\r\n", "\n").replace("\r", "\n").strip()
    if _controls(value, "\n\t"):
        raise SettingsError(f"{name}={raw!r}: accepts text without control characters")
    return value


def verbatim(name: str, raw: str) -> str:
    """Any text as given: a password may begin or end with a space."""
    return raw


def boolean(name: str, raw: str) -> bool:
    """Mailu's rule: only true/yes and false/no (any case) are booleans."""
    value = raw.strip().lower()
    if value in ("true", "yes"):
        return True
    if value in ("false", "no"):
        return False
    raise SettingsError(f"{name}={raw!r}: accepts true, yes, false or no")


def whole(minimum: int = 0, maximum: int | None = None, what: str = "") -> Parser:
    """A whole number from ``minimum``; ``what`` names the range when there is a maximum."""

    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: accepts a whole number") from None
        if maximum is not None and not minimum <= value <= maximum:
            raise SettingsError(f"{name}={raw!r}: accepts {what} from {minimum} to {maximum}")
        if value < minimum:
            raise SettingsError(f"{name}={raw!r}: accepts a whole number of at least {minimum}")
        return value

    return parse


def choice(
    accepted: tuple[str, ...], later: tuple[str, ...] = (), upper: bool = False, prose: bool = False
) -> Parser:
    """One word of ``accepted`` (any case); ``later`` are Mailu's words Roost lacks yet.

    ``prose`` lists the words as a sentence ("a, b or c") rather than as a list ("a, b, c").
    """
    listed = ", ".join(accepted)
    if prose and len(accepted) > 1:
        listed = ", ".join(accepted[:-1]) + " or " + accepted[-1]

    def parse(name: str, raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value in later:
            raise SettingsError(f"{name}={raw!r}: not available in Roost yet; accepts {listed}")
        if value not in accepted:
            raise SettingsError(f"{name}={raw!r}: accepts {listed}")
        return value

    return parse


def items(raw: str) -> tuple[str, ...]:
    """A comma list, spaces around each item and empty items dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


_PLUGIN_NAME = re.compile(r"[a-z0-9_]+")


def plugin_names(name: str, raw: str) -> tuple[str, ...]:
    """A comma list of Roundcube plugin names (its directory names: a-z, 0-9, _)."""
    names = tuple(item.lower() for item in items(raw))
    for plugin in names:
        if not _PLUGIN_NAME.fullmatch(plugin):
            raise SettingsError(
                f"{name}={raw!r}: {plugin!r} is not a plugin name (letters, digits and _)"
            )
    return tuple(dict.fromkeys(names))


def rate(name: str, raw: str) -> str:
    """The ``limits`` library's syntax that Mailu uses (``5/hour``, ``50 per day``), checked
    by the parser the rate limits themselves use, so a value that loads also works."""
    try:
        parse_rate(raw)
    except RateError as exc:
        # RateError's text starts with the value: "'five' is not a rate such as 5/hour".
        raise SettingsError(f"{name}={exc}") from None
    return raw.strip()


_NO_BRACKETS = str.maketrans("", "", "[]")


def networks(name: str, raw: str) -> tuple[str, ...]:
    """A comma list of addresses or CIDR networks, IPv6 ones optionally in brackets."""
    nets = []
    for item in items(raw):
        try:
            nets.append(str(ipaddress.ip_network(item.translate(_NO_BRACKETS), strict=False)))
        except ValueError:
            raise SettingsError(
                f"{name}={raw!r}: {item!r} is not a network; accepts a comma list of "
                "addresses or CIDR networks such as 192.0.2.0/24,2001:db8::/32"
            ) from None
    return tuple(nets)


def address(version: int) -> Parser:
    """One IPv4 or IPv6 address (an IPv6 one optionally in brackets)."""

    def parse(name: str, raw: str) -> str:
        try:
            addr = ipaddress.ip_address(raw.strip().strip("[]"))
        except ValueError:
            addr = None
        if addr is None or addr.version != version:
            raise SettingsError(f"{name}={raw!r}: accepts one IPv{version} address")
        return str(addr)

    return parse


def resolver(name: str, raw: str) -> str:
    """``unbound``, ``system`` or the IP address of a DNSSEC-validating resolver."""
    value = raw.strip().strip("[]").lower()
    if value in ("unbound", "system"):
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise SettingsError(
            f"{name}={raw!r}: accepts unbound (Roost runs its own validating resolver), "
            "system (the host's /etc/resolv.conf) or the IP address of a validating resolver"
        ) from None


def optional(parser: Parser) -> Parser:
    """``parser``, or the empty string for an empty value."""

    def parse(name: str, raw: str) -> Any:
        return parser(name, raw) if raw.strip() else ""

    return parse


_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def hostname(name: str, raw: str) -> str:
    """A DNS name, stored in its ASCII (IDNA) form."""
    from roost.core.address import AddressError, domain_to_ascii

    try:
        host = domain_to_ascii(raw.strip())
    except AddressError:
        host = ""
    if not host or not all(_HOST_LABEL.match(label) for label in host.split(".")):
        raise SettingsError(f"{name}={raw!r}: accepts a host name such as mail.example.com")
    return host


def hostnames(name: str, raw: str) -> tuple[str, ...]:
    """A comma list of at least one host name."""
    hosts = tuple(hostname(name, host) for host in items(raw))
    if not hosts:
        raise SettingsError(f"{name}={raw!r}: accepts a comma list of host names")
    return hosts


def absolute_path(name: str, raw: str) -> Path:
    """An absolute directory path."""
    path = Path(raw.strip())
    if not raw.strip() or not path.is_absolute():
        raise SettingsError(f"{name}={raw!r}: accepts an absolute directory path")
    return path


def local_part(name: str, raw: str) -> str:
    """The local part of an address (RFC 5322 dot-atom characters), lower case."""
    local = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+", local):
        raise SettingsError(f"{name}={raw!r}: accepts a local part such as postmaster")
    return local.lower()


def ports(known: tuple[int, ...]) -> Parser:
    """A comma list of ports Roost can open, sorted, each once."""

    def parse(name: str, raw: str) -> tuple[int, ...]:
        found = set()
        for item in items(raw):
            if not item.isdigit() or int(item) not in known:
                raise SettingsError(
                    f"{name}={raw!r}: {item!r} is not a mail or web port; accepts a comma list of "
                    + ",".join(map(str, known))
                )
            found.add(int(item))
        return tuple(sorted(found))

    return parse


def proxy_ports(known: tuple[int, ...], groups: dict[str, tuple[int, ...]]) -> Parser:
    """Mailu's PROXY_PROTOCOL: a comma list of ports, each item a port of ``known`` or the
    name of a group of them (``mail``, ``all``...), sorted, each once."""
    names = ", ".join(groups)

    def parse(name: str, raw: str) -> tuple[int, ...]:
        found: set[int] = set()
        for item in items(raw):
            if item.lower() in groups:
                found.update(groups[item.lower()])
            elif item.isdigit() and int(item) in known:
                found.add(int(item))
            else:
                raise SettingsError(
                    f"{name}={raw!r}: {item!r} is not a port Roost opens; accepts {names}, "
                    "or a comma list of " + ",".join(map(str, known))
                )
        return tuple(sorted(found))

    return parse


def email_list(name: str, raw: str) -> tuple[str, ...]:
    """A comma list of logins (addresses), lower case, spaces removed."""
    return tuple(item.replace(" ", "").lower() for item in items(raw))


def recipient_delimiter(name: str, raw: str) -> str:
    """Characters that start an address extension; none that would break an address."""
    value = raw.strip()
    if any(ch.isspace() or ch in '@,"\\' for ch in value):
        raise SettingsError(
            f"{name}={raw!r}: accepts characters such as + or -, without @, comma, quote or space"
        )
    return value


def db_host(name: str, raw: str) -> str:
    """A database server: a host name or IPv4 address, optionally ``:port``."""
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d{1,5})?", value):
        raise SettingsError(
            f"{name}={raw!r}: accepts a host name or address, optionally with :port, "
            "such as db.example.com:5432"
        )
    return value


def relayhost(name: str, raw: str) -> str:
    """Postfix's ``relayhost`` syntax: a host or ``[host]``, optionally ``:port``."""
    value = raw.strip()
    if value and not re.fullmatch(r"\[?[A-Za-z0-9.:-]+\]?(:\d{1,5})?", value):
        raise SettingsError(f"{name}={raw!r}: accepts a host such as [smtp.example.com]:587")
    return value


def url(name: str, raw: str) -> str:
    """An SQLAlchemy database URL of a flavour Roost supports, or empty."""
    value = raw.strip()
    if value and not re.match(r"^(sqlite|postgresql|mysql)(\+\w+)?://", value):
        raise SettingsError(f"{name}={raw!r}: accepts a sqlite://, postgresql:// or mysql:// URL")
    return value


#: Mailu's default SQLALCHEMY_DATABASE_URI_ROUNDCUBE: SQLite in the webmail's own data.
MAILU_ROUNDCUBE_SQLITE = "sqlite:////data/roundcube.db"
#: The URL schemes Roundcube's rcube_db::factory() knows for PostgreSQL and MySQL/MariaDB,
#: and SQLAlchemy's spellings of the same, each to Roundcube's.
_ROUNDCUBE_DRIVERS = {
    "pgsql": "pgsql",
    "postgres": "pgsql",
    "postgresql": "pgsql",
    "mysql": "mysql",
    "mysqli": "mysql",
}


def roundcube_url(name: str, raw: str) -> str:
    """A Roundcube database URL (``db_dsnw``: ``pgsql://`` or ``mysql://``), or empty.

    SQLAlchemy's scheme spellings (``postgresql+psycopg://``) become Roundcube's. The
    message never repeats the value: it may hold a password.
    """
    value = raw.strip()
    if not value or value == MAILU_ROUNDCUBE_SQLITE:
        return value
    scheme, sep, rest = value.partition("://")
    if scheme.lower().startswith("sqlite"):
        raise SettingsError(
            f"{name}: a sqlite URL is not used; Roundcube's SQLite database is always "
            "ROOT/webmail/roundcube.db: set ROUNDCUBE_DB_FLAVOR=sqlite instead"
        )
    driver = _ROUNDCUBE_DRIVERS.get(scheme.lower().split("+")[0])
    if not sep or driver is None or "/" not in rest:
        raise SettingsError(
            f"{name}: accepts a URL such as pgsql://user:password@host/database or "
            "mysql://user:password@host:3306/database (the value is not shown: it may hold "
            "a password)"
        )
    return f"{driver}://{rest}"


def https_url(name: str, raw: str) -> str:
    """An https:// URL (ACME servers speak only HTTPS, RFC 8555 section 6.1)."""
    value = raw.strip()
    if not re.fullmatch(r"https://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/%+-]*)?", value):
        raise SettingsError(
            f"{name}={raw!r}: accepts an https:// URL such as "
            "https://acme-v02.api.letsencrypt.org/directory"
        )
    return value


# Segments of URL-safe characters (RFC 3986 unreserved), none of them "." or "..".
_WEB_PATH = re.compile(r"(/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)+")


def web_path(name: str, raw: str) -> str:
    """A URL path prefix such as ``/admin`` (no trailing slash, no query), or empty."""
    value = raw.strip()
    if value and not _WEB_PATH.fullmatch(value):
        raise SettingsError(f"{name}={raw!r}: accepts a path such as /admin, or nothing")
    return value


def web_redirect(name: str, raw: str) -> str:
    """WEBROOT_REDIRECT: a path, an http(s) URL, ``none`` or empty (Mailu's meanings)."""
    value = raw.strip()
    if value in ("", "none") or _WEB_PATH.fullmatch(value):
        return value
    if re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9._~/-]*)?", value):
        return value
    raise SettingsError(f"{name}={raw!r}: accepts a path such as /admin, a URL, none or nothing")


# An HTTP field name: a token (RFC 9110, section 5.1).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def header_name(name: str, raw: str) -> str:
    """The name of an HTTP header such as ``X-Auth-Email``."""
    value = raw.strip()
    if not _HEADER_NAME.fullmatch(value):
        raise SettingsError(f"{name}={raw!r}: accepts a header name such as X-Auth-Email")
    return value


def web_url(name: str, raw: str) -> str:
    """A path on this site or an http(s) URL (query allowed), or empty."""
    value = raw.strip()
    if not value:
        return value
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F or ch in '\\"<>' for ch in value) or (
        not re.match(r"https?://[A-Za-z0-9.-]+(:\d+)?([/?#]|$)|/(?![/\\])", value)
    ):
        raise SettingsError(
            f"{name}={raw!r}: accepts a path such as /bye or a URL such as "
            "https://sso.example.com/logout, or nothing"
        )
    return value


def dkim_selector(name: str, raw: str) -> str:
    """A DKIM selector (RFC 6376 section 3.1: DNS labels), lower case."""
    from roost.core.dkim import DkimKeyError, check_selector

    try:
        return check_selector(raw)
    except DkimKeyError as exc:
        # RateError's text starts with the value: "'five' is not a rate such as 5/hour".
        raise SettingsError(f"{name}={exc}") from None


def dkim_path(name: str, raw: str) -> str:
    """A key file name template holding ``{domain}`` (and ``{selector}``), as Mailu's."""
    from roost.core.dkim import DkimKeyError, check_path_template

    try:
        return check_path_template(raw.strip())
    except DkimKeyError as exc:
        # RateError's text starts with the value: "'five' is not a rate such as 5/hour".
        raise SettingsError(f"{name}={exc}") from None
