"""DKIM keys (RFC 6376): make one, read one given by a person, and what DNS publishes.

Pure functions (no files, no network): :mod:`roost.store.dkimkeys` keeps the keys on disk
and the gate hands them to Rspamd, which signs. A key is RSA (RFC 8301: at least 1024
bits to be accepted, 2048 made, as Mailu makes them), kept as an unencrypted PKCS#8 PEM,
the form Mailu writes and Rspamd reads.

The public half is published as Mailu shows it (RFC 6376 §3.6.1):
``<selector>._domainkey.<domain>. TXT "v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>"``.
"""

from __future__ import annotations

import base64
import re
import string
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "GENERATE",
    "KEY_BITS",
    "MIN_BITS",
    "DkimKeyError",
    "check_path_template",
    "check_selector",
    "generate_key",
    "key_path",
    "normalise_key",
    "public_key",
    "record_name",
    "record_text",
    "rotation_selectors",
    "stored_key",
]

#: The size of the keys Roost makes (Mailu's; RFC 8301 §3.2 asks for at least 1024).
KEY_BITS = 2048
#: Keys given to Roost (config-import) must have at least this many bits (RFC 8301 §3.2).
MIN_BITS = 1024
#: config-import's value that asks for a new key, as in Mailu.
GENERATE = "-generate-"

_PEM = re.compile(r"-----(BEGIN|END) ((?:RSA )?PRIVATE KEY)-----")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]+")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


class DkimKeyError(ValueError):
    """A key, selector or path template that cannot be used; the message says why."""


def generate_key(bits: int = KEY_BITS) -> str:
    """A new RSA private key (public exponent 65537) as an unencrypted PKCS#8 PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _pem(key)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _load(pem: str, validate: bool = True) -> rsa.RSAPrivateKey:
    """The key in ``pem``; ``validate=False`` skips the RSA consistency check (tens of
    milliseconds) for a key that was checked when it was stored."""
    try:
        key = serialization.load_pem_private_key(
            pem.encode("ascii"), password=None, unsafe_skip_rsa_key_validation=not validate
        )
    except (ValueError, TypeError, UnicodeEncodeError):
        raise DkimKeyError("not a readable unencrypted private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimKeyError("not an RSA private key (DKIM's k=rsa)")
    if key.key_size < MIN_BITS:
        raise DkimKeyError(f"an RSA key of {key.key_size} bits; DKIM needs at least {MIN_BITS}")
    return key


def normalise_key(value: str | list[str]) -> str:
    """A private key as a person or an export gives it, as a checked PKCS#8 PEM.

    As Mailu's import: a PEM text or a list of its lines; white space anywhere is dropped
    and the base64 re-wrapped, and a body without its BEGIN/END lines is taken as PKCS#8.
    A PKCS#1 ``RSA PRIVATE KEY`` is accepted too. Raises DkimKeyError naming the problem.
    """
    text = "".join(value) if isinstance(value, list) else value
    if not isinstance(text, str):
        raise DkimKeyError("expected the key's PEM text or a list of its lines")
    kinds = {match.group(2) for match in _PEM.finditer(text)}
    if len(kinds) > 1:
        raise DkimKeyError("the BEGIN and END lines name different kinds of key")
    kind = kinds.pop() if kinds else "PRIVATE KEY"
    body = "".join(_PEM.sub("", text).split())
    if not body:
        raise DkimKeyError("the key is empty")
    if not _BASE64.fullmatch(body):
        raise DkimKeyError("the key holds characters that are not base64")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    pem = "\n".join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----", ""])
    return _pem(_load(pem))


def stored_key(text: str) -> str:
    """A key file's text, as Roost wrote it (a PKCS#8 PEM), read quickly: parsed, an RSA
    key of at least MIN_BITS, without the full consistency check :func:`normalise_key`
    makes on a key a person gives. Any other form is normalised as a given key would be.
    """
    if text.startswith("-----BEGIN PRIVATE KEY-----\n"):
        _load(text, validate=False)
        return text
    return normalise_key(text)


def public_key(pem: str) -> str:
    """The base64 DER SubjectPublicKeyInfo of a private key: the record's ``p=`` value."""
    der = (
        _load(pem, validate=False)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(der).decode("ascii")


def record_text(public: str) -> str:
    """The TXT record's text for a public key in base64 (RFC 6376 §3.6.1)."""
    return f"v=DKIM1; k=rsa; p={public}"


def record_name(selector: str, domain: str) -> str:
    """Where receivers look the key up (RFC 6376 §3.6.2.1), without the trailing dot."""
    return f"{selector}._domainkey.{domain}"


def check_selector(selector: str) -> str:
    """A selector is one or more DNS labels (RFC 6376 §3.1); returned lower-case."""
    value = selector.strip().lower()
    if not value or not all(_LABEL.fullmatch(label) for label in value.split(".")):
        raise DkimKeyError(
            f"{selector!r} is not a DKIM selector (DNS labels of letters, digits and "
            "hyphens, separated by dots)"
        )
    return value


def rotation_selectors(selector: str) -> tuple[str, str]:
    """The two selectors a domain's keys take turns under: DKIM_SELECTOR and the same
    with ``2`` (so that a rotation publishes the new key beside the old, RFC 6376 §3.1)."""
    return selector, f"{selector}2"


def check_path_template(template: str) -> str:
    """DKIM_PATH: a file name holding ``{domain}`` and optionally ``{selector}``.

    Without ``{domain}`` every domain would share one key file.
    """
    try:
        names = {field for _, field, _, _ in string.Formatter().parse(template) if field}
    except ValueError:
        raise DkimKeyError(f"{template!r} is not a valid template (braces)") from None
    if "{domain}" not in template:
        raise DkimKeyError(f"{template!r} must hold {{domain}}, or all domains share one file")
    unknown = names - {"domain", "selector"}
    if unknown:
        raise DkimKeyError(
            f"{template!r}: only {{domain}} and {{selector}} may be named, not "
            + ", ".join(sorted(unknown))
        )
    if template.endswith("/"):
        raise DkimKeyError(f"{template!r} names a directory, not a file")
    return template


def key_path(template: str, root: Path, domain: str, selector: str) -> Path:
    """The file of ``domain``'s key: the template filled in, relative to ``root``.

    ``domain`` is the stored (punycode) name, which holds no ``/``: it cannot leave the
    directory the template names.
    """
    if "/" in domain or domain.startswith("."):
        raise DkimKeyError(f"{domain!r} is not a stored domain name")
    path = Path(template.format(domain=domain, selector=selector))
    return path if path.is_absolute() else root / path
