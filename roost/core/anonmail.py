"""Anonymous aliases ("anonmail"): the local part of a new random alias.

Mailu's anonymous aliases are made per web site: given the site's host name (or a URL),
the local part is the site's registrable label plus a random English word,
``github.banana`` for ``https://github.com/login``; without a usable host name it is a
random token of 16 characters. The registrable label is the label left of the public
suffix (the Public Suffix List, https://publicsuffix.org/, as bundled by the
``publicsuffixlist`` package, so no download is needed): ``subdomain.test.co.uk`` gives
``test``. Everything that is not a letter or digit is removed and the rest lower-cased
(``test-site.co.uk`` gives ``testsite``).

Pure: no store, no network. Randomness comes from :mod:`secrets`; callers may pass their
own chooser to test.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import secrets
import string
from collections.abc import Callable
from importlib import resources
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

__all__ = [
    "TOKEN_LENGTH",
    "WORD_MAX",
    "WORD_MIN",
    "local_part_for",
    "random_token",
    "random_word",
    "site_label",
    "words",
]

#: Length of the random local part used when there is no usable host name.
TOKEN_LENGTH = 16
#: Length of the random words (in letters).
WORD_MIN, WORD_MAX = 5, 10
#: RFC 5321's limit on a local part, less the dot and the longest word.
LABEL_MAX = 64 - 1 - WORD_MAX
#: Stored addresses are lower-case, so the token uses lower-case letters and digits only
#: (36**16, about 2**82 names).
TOKEN_ALPHABET = string.ascii_lowercase + string.digits
#: Longest host name or URL looked at (a DNS name is at most 253 octets).
INPUT_MAX = 2048

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_WORDS_FILE = "anonmail_words.txt"


@functools.cache
def words() -> tuple[str, ...]:
    """The word list shipped with Roost: lower-case ASCII words of 5 to 10 letters."""
    text = resources.files("roost.core").joinpath(_WORDS_FILE).read_text("utf-8")
    found = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    for word in found:
        if not (word.isascii() and word.isalpha() and word.islower()):
            raise ValueError(f"{_WORDS_FILE}: {word!r} is not a lower-case ASCII word")
        if not WORD_MIN <= len(word) <= WORD_MAX:
            raise ValueError(f"{_WORDS_FILE}: {word!r} is not {WORD_MIN} to {WORD_MAX} letters")
    return found


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def _host_of(text: str) -> str | None:
    """The host name in ``text``: a bare name, ``name:port`` or any URL; None if none."""
    value = text.strip()
    if not value or len(value) > INPUT_MAX:
        return None
    if "://" not in value:
        value = "//" + value
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return None
    if not host:
        return None
    host = host.rstrip(".")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None  # an IP address has no registrable name


def site_label(hostname: str | None) -> str | None:
    """The registrable label of the site ``hostname`` names (letters and digits, lower-case).

    None when there is none: no host name, an IP address, a name that is only a public
    suffix or has a single label (``localhost``), or nothing left after cleaning.
    """
    if not hostname:
        return None
    host = _host_of(hostname)
    if host is None or "." not in host:
        return None
    registrable = _suffixes().privatesuffix(host.lower())
    if not registrable:
        return None
    label = _NOT_ALNUM.sub("", registrable.split(".", 1)[0].lower())
    return label[:LABEL_MAX] or None


def random_word(choose: Callable[[tuple[str, ...]], str] = secrets.choice) -> str:
    return choose(words())


def random_token(choose: Callable[[str], str] = secrets.choice) -> str:
    return "".join(choose(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def local_part_for(
    hostname: str | None,
    *,
    word: Callable[[], str] = random_word,
    token: Callable[[], str] = random_token,
) -> str:
    """A new random local part: ``<label>.<word>`` for a site, else a 16-character token."""
    label = site_label(hostname)
    if label is None:
        return token()
    return f"{label}.{word()}"
