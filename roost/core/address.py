"""Mail address and domain syntax: parsing, IDNA conversion and local-part checks.

Everything that names a mailbox passes through here first, so the store, the gate and the
CLI agree on one canonical spelling: domains are lower-case punycode (IDNA 2008, UTS #46
mapping, as Mailu's ``IdnaDomain`` column in core/admin/mailu/models.py) and local parts are
lower-cased (Mailu lower-cases addresses since its pull request #2718).

Pure functions only; no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import idna

__all__ = [
    "ADDRESS_MAX",
    "DOMAIN_COLUMN_MAX",
    "DOMAIN_MAX",
    "LABEL_MAX",
    "LOCAL_MAX",
    "Address",
    "AddressError",
    "check_localpart",
    "check_wildcard_pattern",
    "domain_to_ascii",
    "domain_to_unicode",
    "forbidden_char",
    "normalize_localpart",
    "parse_address",
    "split_detail",
]

#: RFC 1035 §2.3.4: a label holds at most 63 octets.
LABEL_MAX = 63
#: RFC 1035 §2.3.4 / RFC 5321 §4.5.3.1.2: 255 octets on the wire, 253 in text form.
DOMAIN_MAX = 253
#: Mailu's ``IdnaDomain`` column is String(80); a longer name cannot be stored.
DOMAIN_COLUMN_MAX = 80
#: RFC 5321 §4.5.3.1.1: a local part holds at most 64 octets.
LOCAL_MAX = 64
#: RFC 5321 §4.5.3.1.3 (path of 256 octets incl. angle brackets) and RFC 3696 errata: an
#: address is at most 254 octets, which also fits Mailu's ``IdnaEmail`` String(255) column.
ADDRESS_MAX = 254


class AddressError(ValueError):
    """An address, domain or local part that Roost cannot accept; the message says why."""


# RFC 5321 §4.1.2 Ldh-str: letters, digits and hyphens, starting and ending with a letter or
# digit. Labels that match and are not "??--" (reserved for A-labels, RFC 5890 §2.3.1) need
# no IDNA processing, which keeps the gate's hot path free of the idna library.
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_IDNA_EXCEPTIONS = (idna.IDNAError, UnicodeError, ValueError)


def _fail_domain(domain: str, why: str) -> AddressError:
    return AddressError(f"domain {domain!r} is not valid: {why}")


@lru_cache(maxsize=4096)
def _to_ascii(domain: str, max_length: int) -> str:
    """Cached core of :func:`domain_to_ascii`: the gate sees the same few domains repeatedly."""
    name = domain[:-1] if domain.endswith(".") else domain  # RFC 1034 §3.1 absolute form
    if not name:
        raise AddressError("domain is empty")
    if name.startswith("[") or name.endswith("]"):
        raise _fail_domain(domain, "an address literal is not a domain name")
    lowered = name.lower()
    if lowered.isascii():
        labels = lowered.split(".")
        if "" in labels:
            raise _fail_domain(domain, "empty label")
        _check_label_lengths(domain, labels)
        if all(_LDH_LABEL.fullmatch(lb) and lb[2:4] != "--" for lb in labels):
            ascii_name = lowered
        else:
            ascii_name = _idna_encode(domain, name)
    else:
        ascii_name = _idna_encode(domain, name)
    labels = ascii_name.split(".")
    _check_label_lengths(domain, labels)
    if labels[-1].isdigit():
        # RFC 3696 §2: a top-level label is never all-numeric; "1.2.3.4" is an IP, not a name.
        raise _fail_domain(domain, "the last label is numeric (use a host name, not an IP)")
    if len(ascii_name) > max_length:
        raise AddressError(
            f"domain {domain!r} is too long ({len(ascii_name)} characters, at most {max_length})"
        )
    return ascii_name


def _check_label_lengths(domain: str, labels: list[str]) -> None:
    for label in labels:
        if len(label) > LABEL_MAX:
            raise _fail_domain(domain, f"label {label!r} is longer than {LABEL_MAX} characters")


def _idna_encode(original: str, name: str) -> str:
    """IDNA 2008 via UTS #46, non-transitional: 'straße' is not folded to 'strasse'."""
    if any(ch.isspace() for ch in name):
        raise _fail_domain(original, "contains white space")
    try:
        encoded = idna.encode(name, uts46=True, std3_rules=True, transitional=False)
    except _IDNA_EXCEPTIONS as exc:
        raise _fail_domain(original, str(exc) or type(exc).__name__) from None
    return encoded.decode("ascii")


def domain_to_ascii(domain: str, *, max_length: int = DOMAIN_COLUMN_MAX) -> str:
    """Return the lower-case punycode (A-label) form of ``domain``.

    This is the one spelling stored and compared everywhere (Mailu's IdnaDomain). One
    trailing dot is dropped. Raises :class:`AddressError` for an empty or invalid name, a label
    over 63 characters, or a name over ``max_length`` characters: by default 80, the store's
    domain column width; pass ``max_length=DOMAIN_MAX`` (253) for names that are not stored as
    domains, such as the domain of an external forward destination.
    """
    if not isinstance(domain, str):
        raise AddressError(f"domain {domain!r} is not text")
    return _to_ascii(domain, max_length)


def domain_to_unicode(domain: str) -> str:
    """Return the Unicode (U-label) form of ``domain``, for display only.

    Raises :class:`AddressError` when ``domain`` is not a valid name, e.g. a bad ``xn--`` label.
    """
    ascii_name = domain_to_ascii(domain, max_length=DOMAIN_MAX)
    if "xn--" not in ascii_name:
        return ascii_name
    try:
        return idna.decode(ascii_name)
    except _IDNA_EXCEPTIONS as exc:
        raise _fail_domain(domain, str(exc) or type(exc).__name__) from None


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed address: lower-cased local part and punycode domain (Mailu's IdnaEmail)."""

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"


# Characters that never appear in an address Roost accepts: white space and controls (header
# and protocol injection), ',' (the store's list separator, Mailu's CommaSeparatedList
# column), '<' '>' (path delimiters), '"' and '\' (quoted-string syntax, refused since
# Mailu #3252).
_FORBIDDEN = frozenset(',<>"\\')
_FORBIDDEN_ASCII = re.compile(r'[\s,<>"\\\x00-\x1f\x7f]')


def forbidden_char(text: str) -> str | None:
    """Return the first character an address may never contain (see above), else None."""
    if text.isascii():
        found = _FORBIDDEN_ASCII.search(text)
        return found.group() if found else None
    for ch in text:
        if ch in _FORBIDDEN:
            return ch
        if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            return ch
    return None


def normalize_localpart(local: str) -> str:
    """Lower-case a local part the way every stored address is (Mailu #2718)."""
    return local.lower()


def parse_address(text: str) -> Address:
    """Parse ``local@domain`` into an :class:`Address` or raise :class:`AddressError`.

    Deliberately stricter than RFC 5321 where the extra syntax only ever served attacks or
    confusion: no quoted local part (Mailu #3252), no white space, control characters, commas
    or angle brackets. The local part is otherwise taken as is (Mailu's CLI stores whatever
    it is given, e.g. ``user/with/slash``); use :func:`check_localpart` for the stricter
    rule every new user and alias follows. The domain may be up to 253 characters here
    because external addresses (forward destinations) are parsed too; a stored domain is at
    most 80 anyway.
    """
    if not isinstance(text, str):
        raise AddressError(f"{text!r}: an address is text")
    if not text:
        raise AddressError("address is empty")
    if text.startswith('"'):
        raise AddressError(f"{text!r}: local part is quoted")
    count = text.count("@")
    if count == 0:
        raise AddressError(f"{text!r}: no @")
    if count > 1:
        raise AddressError(f"{text!r}: more than one @")
    local, _, domain = text.partition("@")
    if not local:
        raise AddressError(f"{text!r}: empty local part")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # Bytes that were not UTF-8, kept as lone surrogates by the gate's decoding.
            raise AddressError(f"{text!r}: is not UTF-8 text") from None
    bad = forbidden_char(text)
    if bad is not None:
        raise AddressError(f"{text!r}: contains the character {bad!r}")
    local = normalize_localpart(local)
    if len(local.encode("utf-8")) > LOCAL_MAX:
        raise AddressError(f"{text!r}: local part is longer than {LOCAL_MAX} octets")
    ascii_domain = domain_to_ascii(domain, max_length=DOMAIN_MAX)
    if len(local.encode("utf-8")) + 1 + len(ascii_domain) > ADDRESS_MAX:
        raise AddressError(f"{text!r}: address is longer than {ADDRESS_MAX} octets")
    return Address(local, ascii_domain)


def split_detail(local: str, delimiters: str) -> tuple[str, str]:
    """Cut ``local`` at the first character that belongs to ``delimiters``.

    Returns ``(stripped, detail)`` with the delimiter kept at the start of ``detail``:
    ``('joe+x', '+') -> ('joe', '+x')`` (RECIPIENT_DELIMITER may list several characters, as
    Postfix's recipient_delimiter does). A delimiter in the first position does not split,
    because an empty local part names nobody: ``'+x'`` stays ``('+x', '')``.
    """
    if delimiters:
        for index, ch in enumerate(local):
            if ch in delimiters:
                if index == 0:
                    break
                return local[:index], local[index:]
    return local, ""


# RFC 5322 §3.2.3 atext; Mailu's admin UI accepts exactly this dot-atom (LOCALPART_REGEX in
# core/admin/mailu/ui/forms.py). check_localpart refuses '/' on top, see there.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
# SQL LIKE wildcards: '%' any run, '_' one character (both are also atext). Dots may sit
# anywhere, since a pattern such as '%.' is a legitimate way to say "ends with a dot-part".
_LIKE_PATTERN = re.compile(rf"[{_ATEXT}.]+")


def check_localpart(local: str) -> str:
    """Validate a local part for a new user or alias and return its stored (lower-case) form.

    Dot-atom of RFC 5322 atext, as Mailu's admin UI accepts: no leading or trailing dot, no
    '..', at most 64 octets. Less one character: '/' is atext, but each mailbox is the
    directory ``ROOT/mail/<address>`` (Dovecot's ``mail_home = .../%u``), where a '/' makes
    nested directories and a leading '/' an absolute path outside ROOT. Raises
    :class:`AddressError` naming the problem.
    """
    if not local:
        raise AddressError("local part is empty")
    if local.startswith('"'):
        raise AddressError(f"{local!r}: local part is quoted")
    if "@" in local:
        raise AddressError(f"{local!r}: a local part cannot contain @")
    if local.startswith(".") or local.endswith("."):
        raise AddressError(f"{local!r}: local part starts or ends with a dot")
    if ".." in local:
        raise AddressError(f"{local!r}: local part contains '..'")
    if "/" in local:
        raise AddressError(
            f"{local!r}: local part contains '/', which Roost refuses "
            "(each mailbox is a directory named after its address)"
        )
    if not _DOT_ATOM.fullmatch(local):
        bad = next(ch for ch in local if ch != "." and not re.fullmatch(f"[{_ATEXT}]", ch))
        raise AddressError(f"{local!r}: local part contains the character {bad!r}")
    if len(local.encode("utf-8")) > LOCAL_MAX:
        raise AddressError(f"{local!r}: local part is longer than {LOCAL_MAX} octets")
    return normalize_localpart(local)


def check_wildcard_pattern(pattern: str) -> str:
    """Validate a wildcard alias local part (an SQL LIKE pattern) and return it lower-cased.

    Mailu stores a wildcard alias's local part as a LIKE pattern: ``%`` matches any run of
    characters and ``_`` exactly one; the catch-all is ``%`` (Mailu's ``Alias.wildcard``). The
    pattern may use atext, dots and the two wildcards; a backslash (LIKE's escape character
    on PostgreSQL) and anything else are refused so the pattern means the same on every
    database and in :class:`roost.core.directory.Directory`.
    """
    if not pattern:
        raise AddressError("wildcard pattern is empty")
    if "@" in pattern:
        raise AddressError(f"{pattern!r}: a wildcard pattern cannot contain @")
    if not _LIKE_PATTERN.fullmatch(pattern):
        bad = next(ch for ch in pattern if not re.fullmatch(f"[{_ATEXT}.]", ch))
        raise AddressError(f"{pattern!r}: wildcard pattern contains the character {bad!r}")
    if len(pattern.encode("utf-8")) > LOCAL_MAX:
        raise AddressError(f"{pattern!r}: wildcard pattern is longer than {LOCAL_MAX} octets")
    return normalize_localpart(pattern)
